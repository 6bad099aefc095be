"""python -m pcv.prepare, the tfds builder, PreparedPanoptic, make_datasets."""

import json
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest

from pcv.config import DataConfig
from pcv.data.coco_panoptic import PanopticDataError, custom
from pcv.data.datasets import make_datasets
from pcv.data.tfds_panoptic import PreparedPanoptic, find_prepared, prepare_panoptic, read_stats
from pcv.errors import ConfigError
from pcv.prepare import main

from test_coco_panoptic import (
    FIRST_PNG,
    SAMPLE,
    _png_extra_id,
    assert_same_examples,
    copy_sample,
    empty_and_crowd_entries,
    fake_coco_zips,
    load_json,
    write_tiny,
)

pytestmark = pytest.mark.photos  # reads the sample photographs (real or stand-in)


def sample_args(split="val", root=SAMPLE):
    return [
        f"--{split}_json={root}/panoptic.json",
        f"--{split}_png_dir={root}/panoptic",
        f"--{split}_image_dir={root}/images",
    ]


def prepared_path(out: str) -> str:
    return next(line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("prepared: "))


def test_prepare_custom_and_read_back(tmp_path, capsys):
    assert main(["--dataset=custom", "--name=sample", f"--data_dir={tmp_path}"] + sample_args()) == 0
    out = capsys.readouterr().out
    assert "val: 2 examples, 0 skipped" in out
    path = prepared_path(out)
    assert "tensorflow" not in sys.modules  # built without TensorFlow
    ds = PreparedPanoptic(path, "val")
    ref = custom(SAMPLE / "panoptic.json", SAMPLE / "panoptic", SAMPLE / "images")
    assert_same_examples(ds, ref)
    gt = load_json()
    for ex, ann in zip(ds, gt["annotations"]):
        assert ex["image_id"] == ann["image_id"] and isinstance(ex["image_id"], int)
        assert [(s["id"], s["category_id"], s["iscrowd"], s["area"], s["bbox"]) for s in ex["segments_info"]] == [
            (s["id"], s["category_id"], s["iscrowd"], s["area"], s["bbox"]) for s in ann["segments_info"]
        ]
    # Categories and the train-id mapping live beside the data.
    stored = json.loads((find_prepared(path) / "categories.json").read_text())
    assert [c["id"] for c in stored["categories"]] == [c["id"] for c in gt["categories"]]
    assert stored["category_ids"] == list(ds.category_ids) == list(ref.category_ids)
    assert ds.num_classes == 133 and ds.thing_mask.sum() == 80
    # Picklable for grain workers; reads the same after the round trip.
    again = pickle.loads(pickle.dumps(ds))
    np.testing.assert_array_equal(again[1]["segment_ids"], ref[1]["segment_ids"])
    assert find_prepared(tmp_path, "sample") == find_prepared(path)
    with pytest.raises(ConfigError, match="split 'train' is not in"):
        PreparedPanoptic(path, "train")
    assert main(["--dataset=custom", "--name=sample", f"--data_dir={tmp_path}"] + sample_args()) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "--overwrite" in err and err.count("\n") == 1
    # The dataset's statistics, kept beside it, against the annotations counted here.
    stats = read_stats(path)["val"]
    things = {c["id"] for c in gt["categories"] if c["isthing"]}
    segs = [(a, s) for a in gt["annotations"] for s in a["segments_info"]]
    instances = [s for _, s in segs if s["category_id"] in things and not s.get("iscrowd")]
    crowd = [s for _, s in segs if s["category_id"] in things and s.get("iscrowd")]
    images = {im["id"]: im for im in gt["images"]}
    assert stats["images"] == 2 and stats["instances"]["count"] == len(instances) and crowd
    assert stats["crowd"]["segments"] == len(crowd)
    assert stats["crowd"]["share_of_things"] == round(len(crowd) / (len(crowd) + len(instances)), 4)
    assert stats["instances"]["extent"]["p100"] == max(max(s["bbox"][2:]) for s in instances)
    assert stats["stuff"]["regions"] == sum(s["category_id"] not in things for _, s in segs)
    pixels = sum(im["height"] * im["width"] for im in images.values())
    assert stats["void_pixel_share"] == round(1 - sum(s["area"] for _, s in segs) / pixels, 4)
    person = stats["per_class"]["person"]
    assert person["segments"] == sum(s["category_id"] == 1 for _, s in segs) and person["isthing"]
    assert main([f"--stats={path}"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("val: 2 images, ") and any(line.strip().startswith("person ") for line in printed)
    (Path(path) / "stats.json").write_text('{"val": ')  # damaged: one line naming it
    assert main([f"--stats={path}"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {Path(path) / 'stats.json'} is not valid JSON") and err.count("\n") == 1


def test_prepare_coco_zips_and_make_datasets(tmp_path, capsys):
    fake_coco_zips(tmp_path / "coco", ("train", "val"))
    assert main(["--dataset=coco", f"--manual_dir={tmp_path / 'coco'}", f"--data_dir={tmp_path / 'out'}"]) == 0
    out = capsys.readouterr().out
    assert "train: 2 examples" in out and "val: 2 examples" in out
    data = DataConfig(name="panoptic", data_dir=str(tmp_path / "out" / "pcv_panoptic" / "coco"))
    splits = make_datasets(data)
    assert len(splits.train) == len(splits.val) == 2 and splits.val[0]["segment_ids"].shape == (427, 640)
    held = make_datasets(DataConfig(name="panoptic", data_dir=prepared_path(out), calibration_images=1))
    assert len(held.train) == len(held.calibration) == 1  # the last training image, held out
    assert held.calibration[0]["image_id"] == splits.train[1]["image_id"]
    with pytest.raises(ConfigError, match="config.data.data_dir=.*split 'test' is not in"):
        make_datasets(DataConfig(name="panoptic", data_dir=prepared_path(out), val_split="test"))
    with pytest.raises(ConfigError, match="config.data.data_dir=.*no prepared dataset"):
        make_datasets(DataConfig(name="panoptic", data_dir=str(tmp_path / "nowhere")))
    with pytest.raises(ConfigError, match="calibration_images=5"):
        make_datasets(DataConfig(name="panoptic", data_dir=prepared_path(out), calibration_images=5))


def test_prepare_skip_counts_and_reports(tmp_path, capsys):
    j, p, i = copy_sample(tmp_path / "src")
    _png_extra_id(j, p, i)
    args = ["--dataset=custom", "--name=bad", f"--data_dir={tmp_path / 'out'}"] + sample_args("train", tmp_path / "src")
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{FIRST_PNG}: segment id 777" in err  # one line, naming file and segment
    assert main(args + ["--on_error=skip", "--overwrite"]) == 0
    out = capsys.readouterr().out
    assert "train: 1 examples, 1 skipped" in out and f"{FIRST_PNG}: segment id 777" in out
    path = prepared_path(out)
    skipped = json.loads((find_prepared(path) / "skipped.json").read_text())
    assert len(skipped["train"]) == 1 and "777" in skipped["train"][0]["reason"]
    assert PreparedPanoptic(path, "train")[0]["image_id"] == 439180


def test_all_skipped_is_an_error(tmp_path):
    j, p, i = copy_sample(tmp_path / "src")
    for png in p.iterdir():
        png.write_bytes(b"not a png")
    with pytest.raises(PanopticDataError, match="all 2 examples were skipped: .*corrupt or unreadable panoptic PNG"):
        prepare_panoptic("bad", {"train": custom(j, p, i, on_error="skip")}, tmp_path / "out")


def test_empty_and_crowd_only_images_build_and_read(tmp_path):
    src = custom(*write_tiny(tmp_path / "src", empty_and_crowd_entries()))
    report = prepare_panoptic("tiny", {"train": src}, tmp_path / "out")
    ds = PreparedPanoptic(report["path"], "train")
    assert_same_examples(ds, src)
    assert ds[0]["segments_info"] == [] and ds[1]["segments_info"][0]["iscrowd"] == 1


def test_prepare_rejects_bad_names_and_mismatched_categories(tmp_path, capsys):
    a = custom(SAMPLE / "panoptic.json", SAMPLE / "panoptic", SAMPLE / "images")
    b = custom(*write_tiny(tmp_path / "src", empty_and_crowd_entries()))
    with pytest.raises(ConfigError, match="dataset name"):
        prepare_panoptic("a/b", {"train": a}, tmp_path / "out")
    with pytest.raises(PanopticDataError, match="other categories"):
        prepare_panoptic("mixed", {"train": a, "val": b}, tmp_path / "out")
    assert (
        main(
            [
                "--dataset=custom",
                "--name=x",
                f"--data_dir={tmp_path}",
                f"--val_json={SAMPLE}/panoptic.json",
                f"--val_png_dir={SAMPLE}/panoptic",
            ]
        )
        == 1
    )
    assert capsys.readouterr().err == "error: split val: missing --val_image_dir\n"
    assert main(["--dataset=imagenet", f"--data_dir={tmp_path}"]) == 1
    assert "imagenet" in capsys.readouterr().err
    assert (
        main(
            [
                "--dataset=custom",
                "--name=x",
                f"--data_dir={tmp_path}",
                f"--train_json={tmp_path}/no.json",
                f"--train_png_dir={tmp_path}",
                f"--train_image_dir={tmp_path}",
            ]
        )
        == 1
    )
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no.json does not exist" in err

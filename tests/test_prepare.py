"""python -m pcv.data.prepare, the tfds builder, PreparedPanoptic, make_datasets, the official-tfds adapter."""

import json
import pickle
import sys

import ml_collections
import numpy as np
import pytest

from pcv.data import make_datasets
from pcv.data.coco_panoptic import PanopticDataError, custom
from pcv.data.prepare import main
from pcv.data.tfds_coco import official_to_example
from pcv.data.tfds_panoptic import PreparedPanoptic, find_prepared, prepare_panoptic
from pcv.evaluation.pq import id2rgb
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
    return [f"--{split}_json={root}/panoptic.json", f"--{split}_png_dir={root}/panoptic",
            f"--{split}_image_dir={root}/images"]


def test_prepare_custom_and_read_back(tmp_path, capsys):
    report = main(["--dataset=custom", "--name=sample", f"--data_dir={tmp_path}"] + sample_args())
    out = capsys.readouterr().out
    assert "val: 2 examples, 0 skipped" in out and f"prepared: {report['path']}" in out
    assert "tensorflow" not in sys.modules  # built without TensorFlow
    ds = PreparedPanoptic(report["path"], "val")
    ref = custom(SAMPLE / "panoptic.json", SAMPLE / "panoptic", SAMPLE / "images")
    assert_same_examples(ds, ref)
    gt = load_json()
    for ex, ann in zip(ds, gt["annotations"]):
        assert ex["image_id"] == ann["image_id"] and isinstance(ex["image_id"], int)
        assert [(s["id"], s["category_id"], s["iscrowd"], s["area"], s["bbox"]) for s in ex["segments_info"]] == \
            [(s["id"], s["category_id"], s["iscrowd"], s["area"], s["bbox"]) for s in ann["segments_info"]]
    # Categories and the train-id mapping live beside the data.
    stored = json.loads((find_prepared(report["path"]) / "categories.json").read_text())
    assert [c["id"] for c in stored["categories"]] == [c["id"] for c in gt["categories"]]
    assert stored["category_ids"] == list(ds.category_ids) == list(ref.category_ids)
    assert ds.num_classes == 133 and ds.thing_mask.sum() == 80
    # Picklable for grain workers; reads the same after the round trip.
    again = pickle.loads(pickle.dumps(ds))
    np.testing.assert_array_equal(again[1]["segment_ids"], ref[1]["segment_ids"])
    assert find_prepared(tmp_path, "sample") == find_prepared(report["path"])
    with pytest.raises(ValueError, match="split 'train' is not in"):
        PreparedPanoptic(report["path"], "train")
    with pytest.raises(FileExistsError, match="--overwrite"):
        main(["--dataset=custom", "--name=sample", f"--data_dir={tmp_path}"] + sample_args())


def test_prepare_coco_zips_and_make_datasets(tmp_path, capsys):
    fake_coco_zips(tmp_path / "coco", ("train", "val"))
    report = main(["--dataset=coco", f"--manual_dir={tmp_path / 'coco'}", f"--data_dir={tmp_path / 'out'}"])
    assert set(report["splits"]) == {"train", "val"}
    config = ml_collections.ConfigDict({"seed": 0, "data": {"name": "panoptic", "data_dir": str(tmp_path / "out"),
                                                             "dataset": "coco"}})
    train, val = make_datasets(config)
    assert len(train) == len(val) == 2 and val[0]["segment_ids"].shape == (427, 640)
    config.data.val_split = "test"
    with pytest.raises(ValueError, match="config.data.data_dir=.*split 'test' is not in"):
        make_datasets(config)
    config.data.data_dir = str(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="config.data.data_dir"):
        make_datasets(config)


def test_prepare_skip_counts_and_reports(tmp_path, capsys):
    j, p, i = copy_sample(tmp_path / "src")
    _png_extra_id(j, p, i)
    with pytest.raises(PanopticDataError, match=f"{FIRST_PNG}: segment id 777"):
        main(["--dataset=custom", "--name=bad", f"--data_dir={tmp_path / 'out'}"] + sample_args("train", tmp_path / "src"))
    report = main(["--dataset=custom", "--name=bad", f"--data_dir={tmp_path / 'out'}", "--on_error=skip",
                   "--overwrite"] + sample_args("train", tmp_path / "src"))
    out = capsys.readouterr().out
    assert "train: 1 examples, 1 skipped" in out and f"{FIRST_PNG}: segment id 777" in out
    assert report["splits"]["train"]["examples"] == 1
    skipped = json.loads((find_prepared(report["path"]) / "skipped.json").read_text())
    assert len(skipped["train"]) == 1 and "777" in skipped["train"][0]["reason"]
    assert PreparedPanoptic(report["path"], "train")[0]["image_id"] == 439180


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


def test_prepare_rejects_bad_names_and_mismatched_categories(tmp_path):
    a = custom(SAMPLE / "panoptic.json", SAMPLE / "panoptic", SAMPLE / "images")
    b = custom(*write_tiny(tmp_path / "src", empty_and_crowd_entries()))
    with pytest.raises(ValueError, match="dataset name"):
        prepare_panoptic("a/b", {"train": a}, tmp_path / "out")
    with pytest.raises(PanopticDataError, match="other categories"):
        prepare_panoptic("mixed", {"train": a, "val": b}, tmp_path / "out")
    with pytest.raises(SystemExit, match="--val_image_dir"):
        main(["--dataset=custom", "--name=x", f"--data_dir={tmp_path}",
              f"--val_json={SAMPLE}/panoptic.json", f"--val_png_dir={SAMPLE}/panoptic"])


# --- the official tfds coco/2017_panoptic ------------------------------------------


def official_record():
    """A hand-made record shaped like tfds coco/2017_panoptic's (label = position in the category list)."""
    ids = np.zeros((6, 8), np.int64)
    ids[1:3, 1:4] = 11  # person (label 0 -> id 1)
    ids[3:6, :] = 22  # banner (label 80 -> id 92), stuff
    ids[0, 6:8] = 33  # crowd of cars (label 2 -> id 3)
    return {
        "image": np.full((6, 8, 3), 7, np.uint8),
        "image/id": np.int64(5),
        "image/filename": b"000000000005.jpg",
        "panoptic_image": id2rgb(ids),
        "panoptic_image/filename": b"000000000005.png",
        "panoptic_objects": {
            "id": np.array([11, 22, 33]),
            "label": np.array([0, 80, 2]),
            "is_crowd": np.array([False, False, True]),
            "area": np.array([6, 24, 2]),
            "bbox": np.zeros((3, 4), np.float32),
        },
    }


def test_official_label_index_maps_to_coco_category_id():
    ex = official_to_example(official_record())
    assert [(s["id"], s["category_id"], s["iscrowd"]) for s in ex["segments_info"]] == [(11, 1, 0), (22, 92, 0), (33, 3, 1)]
    assert ex["segments_info"][0]["bbox"] == [1, 1, 3, 2]  # measured on the map: x, y, w, h
    assert ex["image_id"] == 5 and ex["file_name"] == "000000000005.jpg"
    assert ex["segment_ids"].dtype == np.int32 and ex["segment_ids"].max() == 33


def test_official_bad_label_and_area():
    rec = official_record()
    rec["panoptic_objects"]["label"] = np.array([0, 133, 2])
    with pytest.raises(PanopticDataError, match="000000000005.png: segment id 22 has label 133"):
        official_to_example(rec)
    rec = official_record()
    rec["panoptic_objects"]["area"] = np.array([6, 20, 2])
    with pytest.raises(PanopticDataError, match="segment id 22 has area 20"):
        official_to_example(rec)


def test_official_tfds_read_needs_tensorflow():
    pytest.importorskip("tensorflow", reason="needs TensorFlow (not a pcv dependency): pip install tensorflow")
    import tensorflow_datasets as tfds

    from pcv.data.tfds_coco import OfficialCocoPanoptic

    if not tfds.builder("coco/2017_panoptic").is_prepared():
        pytest.skip("coco/2017_panoptic is not prepared here")
    ds = OfficialCocoPanoptic("validation")
    ex = ds[0]
    assert ex["segment_ids"].shape == ex["image"].shape[:2]
    assert {s["category_id"] for s in ex["segments_info"]} <= set(ds.category_ids)


def test_official_source_without_tensorflow_says_so():
    if "tensorflow" in sys.modules or __import__("importlib").util.find_spec("tensorflow"):
        pytest.skip("TensorFlow is installed")
    from pcv.data.tfds_coco import OfficialCocoPanoptic

    with pytest.raises(ImportError, match="needs TensorFlow"):
        OfficialCocoPanoptic("validation")

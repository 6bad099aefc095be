"""COCOPanoptic on the real COCO sample, its known layouts, and corrupt copies of it."""

import io
import json
import pickle
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pcv.data.coco_panoptic import (
    COCOPanoptic,
    PanopticDataError,
    ZipStore,
    cityscapes,
    cityscapes_image_name,
    coco2017,
    custom,
)
from pcv.evaluation.pq import id2rgb, rgb2id

from shared_data import SAMPLE  # noqa: E402

pytestmark = pytest.mark.photos  # reads the sample photographs (real or stand-in)


def load_json():
    with open(SAMPLE / "panoptic.json") as f:
        return json.load(f)


def copy_sample(root: Path) -> tuple[Path, Path, Path]:
    """A writable copy of the sample (JSON, PNG folder, image folder) under ``root``."""
    shutil.copytree(SAMPLE / "panoptic", root / "panoptic")
    shutil.copytree(SAMPLE / "images", root / "images")
    shutil.copy(SAMPLE / "panoptic.json", root / "panoptic.json")
    for p in list((root / "panoptic").iterdir()) + list((root / "images").iterdir()):
        p.chmod(0o644)
    (root / "panoptic.json").chmod(0o644)
    return root / "panoptic.json", root / "panoptic", root / "images"


def edit_json(path: Path, fn) -> None:
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))


def test_reads_sample_ids_categories_crowd_areas():
    ds = custom(SAMPLE / "panoptic.json", SAMPLE / "panoptic", SAMPLE / "images", split="val")
    gt = load_json()
    assert len(ds) == 2 and ds.num_classes == 133
    assert [c["id"] for c in ds.categories] == [c["id"] for c in gt["categories"]]
    assert ds.category_ids[0] == 1 and int(ds.thing_mask.sum()) == 80
    crowd_seen = 0
    for i, ann in enumerate(gt["annotations"]):
        ex = ds[i]
        ids = ex["segment_ids"]
        assert ex["image"].dtype == np.uint8 and ex["image"].shape == ids.shape + (3,)
        assert ids.dtype == np.int32
        png = rgb2id(np.asarray(Image.open(SAMPLE / "panoptic" / ann["file_name"])))
        np.testing.assert_array_equal(ids, png)
        assert (ids == 0).any(), "the sample has void pixels"
        assert ex["image_id"] == ann["image_id"] and ex["file_name"] == ann["file_name"].replace(".png", ".jpg")
        want = {s["id"]: s for s in ann["segments_info"]}
        got = {s["id"]: s for s in ex["segments_info"]}
        assert got.keys() == want.keys()
        for sid, s in want.items():
            assert got[sid]["category_id"] == s["category_id"]
            assert got[sid]["iscrowd"] == s["iscrowd"]
            assert got[sid]["area"] == s["area"] == int((ids == sid).sum())
            assert got[sid]["bbox"] == s["bbox"]
            crowd_seen += s["iscrowd"]
    assert crowd_seen == 3


def test_bad_arguments_and_index():
    with pytest.raises(ValueError, match="on_error"):
        custom(SAMPLE / "panoptic.json", SAMPLE / "panoptic", SAMPLE / "images", on_error="ignore")
    with pytest.raises(FileNotFoundError, match="nope.json"):
        custom(SAMPLE / "nope.json", SAMPLE / "panoptic", SAMPLE / "images")
    ds = custom(SAMPLE / "panoptic.json", SAMPLE / "panoptic", SAMPLE / "images")
    with pytest.raises(IndexError):
        ds[2]
    assert ds[-1]["image_id"] == ds[1]["image_id"]


# --- corrupt copies ----------------------------------------------------------

FIRST_PNG = "000000142238.png"
FIRST_JPG = "000000142238.jpg"


def _png_extra_id(j, p, i):
    ids = rgb2id(np.asarray(Image.open(p / FIRST_PNG)))
    ids[:5, :5] = 777
    Image.fromarray(id2rgb(ids)).save(p / FIRST_PNG)
    return "segment id 777 is in the PNG but not in segments_info", FIRST_PNG


def _segment_missing(j, p, i):
    edit_json(
        j,
        lambda d: d["annotations"][0]["segments_info"].append(
            {"id": 4242, "category_id": 1, "iscrowd": 0, "area": 5, "bbox": [0, 0, 1, 5]}
        ),
    )
    return "segment id 4242 in segments_info has no pixels", FIRST_PNG


def _truncated_jpeg(j, p, i):
    data = (i / FIRST_JPG).read_bytes()
    (i / FIRST_JPG).write_bytes(data[: len(data) // 2])
    return "corrupt or unreadable image", FIRST_JPG


def _size_mismatch(j, p, i):
    ids = rgb2id(np.asarray(Image.open(p / FIRST_PNG)))
    Image.fromarray(id2rgb(ids[:-8])).save(p / FIRST_PNG)  # crop: ids stay ids
    return "panoptic PNG is 419x640", FIRST_PNG


def _json_size_mismatch(j, p, i):
    edit_json(j, lambda d: d["images"][0].update(width=600))
    return "the JSON says 427x600", FIRST_JPG


def _area_mismatch(j, p, i):
    edit_json(j, lambda d: d["annotations"][0]["segments_info"][0].update(area=1))
    return "segment id 3937500 has area 1 in the JSON", FIRST_PNG


def _palette_png(j, p, i):
    Image.open(p / FIRST_PNG).convert("P").save(p / FIRST_PNG)
    return "must be RGB", FIRST_PNG


# Found when reading (decoding) the example.
READ_ERRORS = [
    _png_extra_id,
    _segment_missing,
    _truncated_jpeg,
    _size_mismatch,
    _json_size_mismatch,
    _area_mismatch,
    _palette_png,
]


@pytest.mark.parametrize("corrupt", READ_ERRORS, ids=lambda f: f.__name__)
def test_read_errors_name_file_and_segment(tmp_path, corrupt):
    j, p, i = copy_sample(tmp_path)
    message, file = corrupt(j, p, i)
    ds = custom(j, p, i)
    with pytest.raises(PanopticDataError, match=message) as err:
        ds[0]
    assert file in str(err.value)
    assert ds[1]["image_id"] == 439180  # the other example is untouched
    skipping = custom(j, p, i, on_error="skip")
    good = [idx for idx, _ in skipping.iter_records()]
    assert good == [1] and skipping.num_skipped == 1
    assert file in skipping.skipped[0]["file"] or file in skipping.skipped[0]["reason"]


def _unknown_category(j, p, i):
    edit_json(j, lambda d: d["annotations"][0]["segments_info"][2].update(category_id=999))
    return "segment id 2035955 has category_id 999", FIRST_PNG


def _duplicate_segment(j, p, i):
    edit_json(j, lambda d: d["annotations"][0]["segments_info"].append(d["annotations"][0]["segments_info"][0]))
    return "segment id 3937500 appears twice", FIRST_PNG


def _missing_image(j, p, i):
    (i / FIRST_JPG).unlink()
    return "image does not exist", FIRST_JPG


def _missing_png(j, p, i):
    (p / FIRST_PNG).unlink()
    return "panoptic PNG does not exist", FIRST_PNG


def _no_image_entry(j, p, i):
    edit_json(j, lambda d: d["images"].pop(0))
    return "image_id 142238 has no entry", FIRST_PNG


# Found from the JSON and the file listing, at construction.
INDEX_ERRORS = [_unknown_category, _duplicate_segment, _missing_image, _missing_png, _no_image_entry]


@pytest.mark.parametrize("corrupt", INDEX_ERRORS, ids=lambda f: f.__name__)
def test_index_errors_name_file_and_skip_is_counted(tmp_path, corrupt, caplog):
    j, p, i = copy_sample(tmp_path)
    message, file = corrupt(j, p, i)
    with pytest.raises(PanopticDataError, match=message) as err:
        custom(j, p, i)
    assert file in str(err.value)
    ds = custom(j, p, i, on_error="skip")
    assert len(ds) == 1 and ds.num_skipped == 1 and ds[0]["image_id"] == 439180
    assert message.split(" ")[0] in ds.skipped[0]["reason"]
    assert "skipped 1 of 2" in caplog.text  # the count is logged, not only stored


def test_bad_categories_and_json(tmp_path):
    j, p, i = copy_sample(tmp_path)
    edit_json(j, lambda d: d["categories"].append(dict(d["categories"][0])))
    with pytest.raises(PanopticDataError, match="category id 1 appears twice"):
        custom(j, p, i)
    j.write_text("{not json")
    with pytest.raises(PanopticDataError, match="not valid JSON"):
        custom(j, p, i)
    j.write_text(json.dumps({"annotations": [], "categories": []}))
    with pytest.raises(PanopticDataError, match="'images'"):
        custom(j, p, i)


def write_tiny(root: Path, entries) -> tuple[Path, Path, Path]:
    """A tiny dataset: entries of (name, ids [H, W], segments_info); COCO person / grass categories."""
    (root / "png").mkdir(parents=True)
    (root / "img").mkdir()
    rng = np.random.default_rng(0)
    images, anns = [], []
    for n, (name, ids, segs) in enumerate(entries):
        h, w = ids.shape
        Image.fromarray(id2rgb(ids)).save(root / "png" / f"{name}.png")
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(root / "img" / f"{name}.jpg")
        images.append({"id": n + 1, "file_name": f"{name}.jpg", "height": h, "width": w})
        anns.append({"image_id": n + 1, "file_name": f"{name}.png", "segments_info": segs})
    cats = [
        {"id": 1, "name": "person", "isthing": 1, "color": [220, 20, 60]},
        {"id": 125, "name": "grass", "isthing": 0, "color": [0, 255, 0]},
    ]
    (root / "ann.json").write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return root / "ann.json", root / "png", root / "img"


def empty_and_crowd_entries():
    ids_crowd = np.zeros((12, 20), np.int32)
    ids_crowd[2:6, 3:9] = 5
    return [
        ("empty", np.zeros((12, 20), np.int32), []),
        ("crowd", ids_crowd, [{"id": 5, "category_id": 1, "iscrowd": 1, "area": 24, "bbox": [3, 2, 6, 4]}]),
    ]


def test_duplicate_image_ids_are_an_error_naming_the_file_and_both_entries(tmp_path):
    # Not skippable, even with on_error="skip": which entry an annotation means cannot be known.
    j, p, i = copy_sample(tmp_path)

    def duplicate(d):
        d["images"].append(dict(d["images"][0], file_name="another.jpg"))

    edit_json(j, duplicate)
    for on_error in ("raise", "skip"):
        with pytest.raises(PanopticDataError) as err:
            custom(j, p, i, on_error=on_error)
        message = str(err.value)
        assert str(j) in message and "appears twice in 'images'" in message and "another.jpg" in message


def test_image_without_segments_and_only_crowd(tmp_path):
    ds = custom(*write_tiny(tmp_path, empty_and_crowd_entries()))
    empty, crowd = ds[0], ds[1]
    assert empty["segments_info"] == [] and not empty["segment_ids"].any()
    assert crowd["segments_info"] == [{"id": 5, "category_id": 1, "iscrowd": 1, "area": 24, "bbox": [3, 2, 6, 4]}]
    assert ds.num_classes == 2 and ds.category_ids == (1, 125)


# --- layouts -------------------------------------------------------------------


def fake_coco_zips(manual: Path, splits=("val",), nested_compression=zipfile.ZIP_STORED) -> None:
    """The official COCO zips from the sample: annotations zip with NESTED PNG zips, image zips."""
    manual.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(manual / "panoptic_annotations_trainval2017.zip", "w") as ann_zip:
        for split in splits:
            name = f"panoptic_{split}2017"
            inner = io.BytesIO()
            with zipfile.ZipFile(inner, "w") as z:
                for png in sorted((SAMPLE / "panoptic").iterdir()):
                    z.write(png, f"{name}/{png.name}")
            ann_zip.write(SAMPLE / "panoptic.json", f"annotations/{name}.json")
            ann_zip.writestr(
                zipfile.ZipInfo(f"annotations/{name}.zip"), inner.getvalue(), compress_type=nested_compression
            )
            with zipfile.ZipFile(manual / f"{split}2017.zip", "w", compression=zipfile.ZIP_DEFLATED) as z:
                for jpg in sorted((SAMPLE / "images").iterdir()):
                    z.write(jpg, f"{split}2017/{jpg.name}")


def assert_same_examples(a, b):
    assert len(a) == len(b)
    for k in range(len(a)):
        x, y = a[k], b[k]
        np.testing.assert_array_equal(x["image"], y["image"])
        np.testing.assert_array_equal(x["segment_ids"], y["segment_ids"])
        assert x["segments_info"] == y["segments_info"] and x["image_id"] == y["image_id"]


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED], ids=["stored", "deflated"])
def test_coco_official_zips_read_in_place(tmp_path, compression):
    fake_coco_zips(tmp_path / "coco", ("val",), compression)
    ds = coco2017(tmp_path / "coco", "val")
    assert isinstance(ds.png_store, ZipStore) and isinstance(ds.image_store, ZipStore)
    ref = custom(SAMPLE / "panoptic.json", SAMPLE / "panoptic", SAMPLE / "images")
    assert_same_examples(ds, ref)
    again = pickle.loads(pickle.dumps(ds))  # grain workers get a pickled copy
    np.testing.assert_array_equal(again[1]["segment_ids"], ref[1]["segment_ids"])
    with pytest.raises(FileNotFoundError, match="train2017"):
        coco2017(tmp_path / "coco", "train")
    with pytest.raises(ValueError, match="'train' or 'val'"):
        coco2017(tmp_path / "coco", "test")


def test_coco_extracted_folders(tmp_path):
    root = tmp_path / "coco"
    shutil.copytree(SAMPLE / "panoptic", root / "annotations" / "panoptic_val2017")
    shutil.copytree(SAMPLE / "images", root / "val2017")
    shutil.copy(SAMPLE / "panoptic.json", root / "annotations" / "panoptic_val2017.json")
    assert_same_examples(
        coco2017(root, "val"), custom(SAMPLE / "panoptic.json", SAMPLE / "panoptic", SAMPLE / "images")
    )


def test_cityscapes_layout(tmp_path):
    assert (
        cityscapes_image_name("aachen_000000_000019_leftImg8bit.png") == "aachen/aachen_000000_000019_leftImg8bit.png"
    )
    assert (
        cityscapes_image_name("aachen_000000_000019_gtFine_panoptic.png")
        == "aachen/aachen_000000_000019_leftImg8bit.png"
    )
    # The sample re-laid out like createPanopticImgs' output (string image ids, per-city folders).
    root = tmp_path / "cityscapes"
    (root / "gtFine" / "cityscapes_panoptic_val").mkdir(parents=True)
    gt = load_json()
    for n, (img, ann) in enumerate(zip(gt["images"], gt["annotations"])):
        stem = f"frankfurt_00000{n}_000019"
        (root / "leftImg8bit" / "val" / "frankfurt").mkdir(parents=True, exist_ok=True)
        shutil.copy(
            SAMPLE / "images" / img["file_name"], root / "leftImg8bit" / "val" / "frankfurt" / f"{stem}_leftImg8bit.png"
        )
        shutil.copy(
            SAMPLE / "panoptic" / ann["file_name"],
            root / "gtFine" / "cityscapes_panoptic_val" / f"{stem}_gtFine_panoptic.png",
        )
        img.update(id=stem, file_name=f"{stem}_leftImg8bit.png")
        ann.update(image_id=stem, file_name=f"{stem}_gtFine_panoptic.png")
    (root / "gtFine" / "cityscapes_panoptic_val.json").write_text(json.dumps(gt))
    ds = cityscapes(root, "val")
    assert len(ds) == 2 and ds[1]["image_id"] == "frankfurt_000001_000019"
    assert ds[1]["file_name"] == "frankfurt_000001_000019_leftImg8bit.png"
    with pytest.raises(FileNotFoundError, match="createPanopticImgs"):
        cityscapes(root, "train")


def test_iter_records_raise_mode_stops_at_bad_file(tmp_path):
    j, p, i = copy_sample(tmp_path)
    _png_extra_id(j, p, i)
    with pytest.raises(PanopticDataError, match=FIRST_PNG):
        list(custom(j, p, i).iter_records())
    assert isinstance(COCOPanoptic(load_json(), SAMPLE / "panoptic", SAMPLE / "images"), COCOPanoptic)

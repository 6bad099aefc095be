"""Training and evaluation transforms: geometry, ids (nearest only), padding, segments, targets."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pcv.data import SyntheticPanoptic, example_targets, make_batch, normalize_images, segments_from_ids
from pcv.data import transforms as T
from pcv.data.panoptic import LabelSpace
from pcv.data.resize import resize_nearest
from pcv.voting import VoteGrid

from shared_data import SAMPLE as COCO_SAMPLE  # noqa: E402

CATS = [
    {"id": 1, "name": "thing", "isthing": 1},
    {"id": 2, "name": "stuff", "isthing": 0},
]
LABELS = LabelSpace(CATS)
GRID = VoteGrid(((1, 1), (3, 2)))


def rect_example(h=32, w=48):
    """Stuff background (id 1), two thing rectangles (ids 2, 3), a void strip; image = colour per id."""
    ids = np.ones((h, w), np.int32)
    ids[4:12, 6:16] = 2
    ids[16:28, 20:40] = 3
    ids[:, w - 2 :] = 0
    cats = {1: (2, 0), 2: (1, 0), 3: (1, 0)}
    image = np.stack([ids * 60 % 256, ids * 30 + 10, 255 - ids * 40], -1).astype(np.uint8)
    return {"image": image, "segment_ids": ids, "segments_info": segments_from_ids(ids, cats), "image_id": 7}


def random_example(rng, h, w, n=6):
    ids = rng.integers(0, n + 1, (h // 4 + 1, w // 4 + 1))
    ids = resize_nearest(ids, (h, w)).astype(np.int32)  # blocky, like real segments
    cats = {i: (1 + i % 2, 0) for i in range(1, n + 1)}
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    return {"image": image, "segment_ids": ids, "segments_info": segments_from_ids(ids, cats), "image_id": 1}


def test_targets_after_scale_match_targets_of_the_scaled_ground_truth():
    ex = rect_example()
    # Scale exactly 2, crop = the whole scaled image, no flip: a deterministic transform.
    out = T.train_transform(ex, np.random.default_rng(0), crop_size=(64, 96), scale_range=(2.0, 2.0), hflip=False)
    got = example_targets(out, GRID, LABELS, stride=4)

    # Independent reference: at stride 4 of the 2x image, target pixel i reads
    # scaled pixel 4i + 2, i.e. original pixel (4i + 2) // 2 = 2i + 1.
    sem = np.full((16, 24), -1)
    votes = np.full((16, 24), -1)
    ys, xs = np.mgrid[:16, :24]
    orig = ex["segment_ids"][2 * ys + 1, 2 * xs + 1]
    sem[orig == 1] = 1  # stuff train id (things first)
    votes[orig == 1] = GRID.num_bins  # abstain
    for sid in (2, 3):
        m = orig == sid
        sem[m] = 0
        cy, cx = int(ys[m].sum()) // m.sum(), int(xs[m].sum()) // m.sum()
        votes[m] = GRID.bin_of_offset(np.stack([cy - ys[m], cx - xs[m]], -1))
    np.testing.assert_array_equal(got["semantic"], sem)
    np.testing.assert_array_equal(got["votes"], votes)
    assert (got["weights"][orig == 0] == 0).all() and (got["weights"][orig > 0] > 0).all()


@pytest.mark.parametrize("seed", range(6))
def test_ids_are_never_interpolated_and_segments_are_recomputed(seed):
    rng = np.random.default_rng(seed)
    ex = random_example(rng, int(rng.integers(40, 90)), int(rng.integers(40, 90)))
    out = T.train_transform(
        ex, rng, crop_size=(64, 64), scale_range=(0.5, 2.0), base_size=48, color_jitter_strength=0.2
    )
    ids = out["segment_ids"]
    assert ids.shape == (64, 64) and ids.dtype == np.int32 and out["image"].shape == (64, 64, 3)
    assert set(np.unique(ids).tolist()) <= set(np.unique(ex["segment_ids"]).tolist()) | {0}
    cats = {s["id"]: (s["category_id"], s["iscrowd"]) for s in ex["segments_info"]}
    assert out["segments_info"] == segments_from_ids(ids, cats)  # exactly the ids present, new area and bbox


def test_input_example_is_not_modified():
    ex = rect_example()
    before = {k: np.copy(ex[k]) for k in ("image", "segment_ids")}
    info = [dict(s) for s in ex["segments_info"]]
    T.train_transform(
        ex, np.random.default_rng(1), crop_size=(32, 32), scale_range=(0.5, 2.0), color_jitter_strength=0.3
    )
    np.testing.assert_array_equal(ex["image"], before["image"])
    np.testing.assert_array_equal(ex["segment_ids"], before["segment_ids"])
    assert ex["segments_info"] == info


def test_padding_is_void_with_the_mean_colour_and_no_loss():
    ex = rect_example()  # 32 x 48 -> scale 0.5 -> 16 x 24, padded to 32 x 32
    out = T.train_transform(ex, np.random.default_rng(0), crop_size=(32, 32), scale_range=(0.5, 0.5), hflip=False)
    ids, image = out["segment_ids"], out["image"]
    assert (ids[16:] == 0).all() and (ids[:, 24:] == 0).all()
    assert (image[16:] == T.PAD_COLOR).all() and (image[:, 24:] == T.PAD_COLOR).all()
    np.testing.assert_array_equal(ids[:16, :24], resize_nearest(ex["segment_ids"], (16, 24)))
    batch = make_batch([out], GRID, LABELS)
    assert np.abs(normalize_images(batch["images"][0, 16:])).max() < 0.01  # mean colour normalises to ~0
    assert (batch["weights"][0, 4:] == 0).all() and (batch["semantic"][0, 4:] == -1).all()
    assert (batch["votes"][0, :, 6:] == -1).all()


def test_flip_mirrors_image_ids_and_boxes():
    ex = rect_example()
    seed = next(s for s in range(100) if np.random.default_rng(s).random() < 0.5)  # first draw flips
    kw = dict(crop_size=(32, 48))
    flipped = T.train_transform(ex, np.random.default_rng(seed), hflip=True, **kw)
    plain = T.train_transform(ex, np.random.default_rng(seed), hflip=False, **kw)
    np.testing.assert_array_equal(plain["segment_ids"], ex["segment_ids"])
    np.testing.assert_array_equal(flipped["segment_ids"], ex["segment_ids"][:, ::-1])
    np.testing.assert_array_equal(flipped["image"], ex["image"][:, ::-1])
    for a, b in zip(plain["segments_info"], flipped["segments_info"]):
        x, y, w, h = a["bbox"]
        assert b["bbox"] == [48 - x - w, y, w, h] and b["area"] == a["area"]


def test_nearest_window_is_resize_then_crop():
    rng = np.random.default_rng(3)
    for _ in range(20):
        h, w = rng.integers(5, 60, 2)
        ids = rng.integers(0, 50, (h, w))
        sh, sw = rng.integers(3, 130, 2)
        y0, x0 = rng.integers(0, sh), rng.integers(0, sw)
        ch, cw = rng.integers(1, sh - y0 + 1), rng.integers(1, sw - x0 + 1)
        np.testing.assert_array_equal(
            T.nearest_window(ids, (sh, sw), (y0, x0, ch, cw)), resize_nearest(ids, (sh, sw))[y0 : y0 + ch, x0 : x0 + cw]
        )


@pytest.mark.parametrize("scaled", [(90, 120), (40, 50)])
def test_bilinear_window_matches_resize_then_crop(scaled):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    window = (7, 11, 30, 33)
    full = np.asarray(Image.fromarray(image).resize(scaled[::-1], Image.BILINEAR))
    got = T.bilinear_window(image, scaled, window).astype(int)
    ref = full[7:37, 11:44].astype(int)
    # Same filter and pixel centres; PIL's two 8-bit passes round differently.
    assert np.abs(got - ref).max() <= 2 and np.abs(got - ref).mean() < 0.5


def test_scaled_size_and_base_size():
    assert T.scaled_size((480, 640), 1.0) == (480, 640)
    assert T.scaled_size((480, 640), 0.5) == (240, 320)
    assert T.scaled_size((480, 640), 1.0, base_size=800) == (800, 1067)  # shorter side = base
    assert T.scaled_size((640, 480), 2.0, base_size=400) == (1067, 800)


def test_color_jitter():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    np.testing.assert_array_equal(T.color_jitter(image, rng, 0.0), image)
    out = T.color_jitter(image, rng, 0.3)
    assert out.dtype == np.uint8 and out.shape == image.shape and not np.array_equal(out, image)
    grey = np.full((4, 4, 3), 100, np.uint8)  # a grey image only changes brightness
    out = T.color_jitter(grey, np.random.default_rng(5), 0.3)
    assert (out == out[0, 0, 0]).all() and 70 <= out[0, 0, 0] <= 130


def test_train_transform_errors_name_the_example():
    ex = rect_example()
    with pytest.raises(ValueError, match="example 7.*uint8"):
        T.train_transform(dict(ex, image=ex["image"].astype(np.float32)), np.random.default_rng(0), crop_size=(32, 32))
    with pytest.raises(ValueError, match="example 7.*segment_ids"):
        T.train_transform(dict(ex, segment_ids=ex["segment_ids"][:5]), np.random.default_rng(0), crop_size=(32, 32))
    with pytest.raises(ValueError, match=r"example 7: segment ids \[3\] .*not in segments_info"):
        T.train_transform(dict(ex, segments_info=ex["segments_info"][:2]), np.random.default_rng(0), crop_size=(32, 32))


# ----------------------------------------------------------------------------
# Evaluation.
# ----------------------------------------------------------------------------


def test_eval_resize_and_pad_shape_coco():
    assert T.eval_resize_shape((480, 640), 800, 1333) == (800, 1067)
    assert T.eval_resize_shape((640, 480), 800, 1333) == (1067, 800)
    assert T.eval_resize_shape((300, 1000), 800, 1333) == (400, 1333)  # longer side capped
    assert T.eval_resize_shape((480, 640), 0, 0) == (480, 640)
    assert T.eval_pad_shape(800, 1333) == (1344, 1344)
    with pytest.raises(ValueError, match="max_size"):
        T.eval_pad_shape(800, 0)


@pytest.mark.parametrize("hw", [(48, 64), (64, 40)])
def test_eval_round_trip_is_exact_when_upscaling(hw):
    ex = random_example(np.random.default_rng(1), *hw)
    image, meta = T.eval_transform(ex, short_side=100, max_size=160, pad_shape=(160, 160))
    assert image.shape == (160, 160, 3) and meta["original_size"] == hw and meta["image_id"] == 1
    h, w = meta["valid_size"]
    assert min(h, w) == 100 and (image[h:] == T.PAD_COLOR).all() and (image[:, w:] == T.PAD_COLOR).all()
    # A "prediction" at the padded size: the ground truth carried through the
    # same geometry (nearest), garbage in the padding.
    pred = np.full((160, 160), 99, np.int32)
    pred[:h, :w] = resize_nearest(ex["segment_ids"], (h, w))
    np.testing.assert_array_equal(T.to_original(pred, meta), ex["segment_ids"])


def test_eval_round_trip_when_downscaling_keeps_regions():
    ids = np.zeros((200, 300), np.int32)
    ids[:100] = 1
    ids[100:, 152:] = 2
    ex = {"image": np.zeros((200, 300, 3), np.uint8), "segment_ids": ids, "image_id": "a"}
    image, meta = T.eval_transform(ex, short_side=50, max_size=100, pad_shape=(96, 96))
    assert meta["valid_size"] == (50, 75) and image.shape == (96, 96, 3)
    pred = np.zeros((96, 96), np.int32)
    pred[:50, :75] = resize_nearest(ids, (50, 75))
    # Region borders fall on multiples of 4 (the scale): the map comes back exactly.
    np.testing.assert_array_equal(T.to_original(pred, meta), ids)


def test_eval_transform_errors():
    ex = rect_example()
    with pytest.raises(ValueError, match="example 7: resized to 32x48, larger than pad_shape"):
        T.eval_transform(ex, short_side=0, max_size=0, pad_shape=(32, 32))
    with pytest.raises(ValueError, match="smaller than the valid size"):
        T.to_original(np.zeros((8, 8)), {"valid_size": (10, 10), "original_size": (20, 20)})


# ----------------------------------------------------------------------------
# Real data and the synthetic source.
# ----------------------------------------------------------------------------


def load_coco_sample():
    """Private minimal reader of the shared COCO sample (the real reader is pcv.data.coco_panoptic)."""
    gt = json.loads((COCO_SAMPLE / "panoptic.json").read_text())
    examples = []
    for ann in gt["annotations"]:
        rgb = np.asarray(Image.open(COCO_SAMPLE / "panoptic" / ann["file_name"]), np.int64)
        ids = (rgb[..., 0] + 256 * rgb[..., 1] + 256**2 * rgb[..., 2]).astype(np.int32)
        stem = Path(ann["file_name"]).stem
        image = np.asarray(Image.open(COCO_SAMPLE / "images" / f"{stem}.jpg").convert("RGB"))
        examples.append(
            {"image": image, "segment_ids": ids, "segments_info": ann["segments_info"], "image_id": ann["image_id"]}
        )
    return examples, gt["categories"]


@pytest.mark.photos
def test_coco_sample_training_transform_and_targets():
    examples, categories = load_coco_sample()
    grid = VoteGrid(((1, 1), (3, 4), (9, 3), (27, 3)))
    rng = np.random.default_rng(0)
    outs = [
        T.train_transform(
            ex, rng, crop_size=(256, 256), scale_range=(0.5, 2.0), base_size=400, color_jitter_strength=0.1
        )
        for ex in examples
    ]
    crowd_ids = [{s["id"] for s in ex["segments_info"] if s["iscrowd"]} for ex in examples]
    assert any(crowd_ids)  # the sample exercises crowd
    for ex, out in zip(examples, outs):
        present = set(np.unique(out["segment_ids"]).tolist()) - {0}
        assert {s["id"] for s in out["segments_info"]} == present
        assert present <= {s["id"] for s in ex["segments_info"]}
    batch = make_batch(outs, grid, categories)
    assert batch["images"].shape == (2, 256, 256, 3) and batch["votes"].shape == (2, 64, 64)
    # Targets of the batch are the targets of the transformed ground truth.
    for n, out in enumerate(outs):
        ref = example_targets(out, grid, categories)
        np.testing.assert_array_equal(batch["votes"][n], ref["votes"])
        crowd = np.isin(resize_nearest(out["segment_ids"], (64, 64)), list(crowd_ids[n]))
        assert (batch["weights"][n][crowd] == 0).all() and (batch["votes"][n][crowd] == -1).all()


def test_synthetic_default_transform_is_flip_only():
    ds = SyntheticPanoptic("val", size=(64, 64), num_examples=2, seed=0)
    ex = ds[0]
    out = T.train_transform(ex, np.random.default_rng(0), crop_size=(64, 64), hflip=False)
    np.testing.assert_array_equal(out["image"], ex["image"])
    np.testing.assert_array_equal(out["segment_ids"], ex["segment_ids"])
    assert out["segments_info"] == sorted(ex["segments_info"], key=lambda s: s["id"])

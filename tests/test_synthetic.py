"""The synthetic dataset, the label space, batching and ground truth for PQ."""

import functools
import json
import pickle
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from pcv.data import (
    CATEGORIES,
    IMAGE_MEAN,
    IMAGE_STD,
    LabelSpace,
    SyntheticConfig,
    SyntheticPanoptic,
    denormalize_images,
    draw_scene,
    gt_for_pq,
    id2rgb,
    make_batch,
    normalize_images,
    segments_from_ids,
    write_coco_panoptic,
)
from pcv.data.datasets import make_datasets
from pcv.data.synthetic import example_rng
from pcv.data.targets import downsample_ids, make_targets
from pcv.evaluation import PQStat, pq_compute, pq_image_stats, read_id_png
from pcv.voting import SMALL_GRID, VoteGrid

from shared_data import SAMPLE  # noqa: E402

GRID = VoteGrid(((1, 1), (3, 2)))  # K = 33 bins, a 15 x 15 field


@pytest.fixture(scope="module")
def val():
    return SyntheticPanoptic("val", num_examples=64, seed=0)


@pytest.fixture(scope="module")
def examples(val):
    return [val[i] for i in range(50)]


def assert_same_example(a, b):
    np.testing.assert_array_equal(a["image"], b["image"])
    np.testing.assert_array_equal(a["segment_ids"], b["segment_ids"])
    assert a["segments_info"] == b["segments_info"]
    assert a["image_id"] == b["image_id"]


def adjacent_pairs(ids):
    """Unordered pairs of different ids that are 4-neighbours somewhere."""
    pairs = set()
    for a, b in ((ids[1:], ids[:-1]), (ids[:, 1:], ids[:, :-1])):
        diff = a != b
        for x, y in zip(a[diff].tolist(), b[diff].tolist()):
            pairs.add((min(x, y), max(x, y)))
    return pairs


# ----------------------------------------------------------------------------
# Determinism and random access
# ----------------------------------------------------------------------------


def test_same_seed_split_index_same_example(val):
    other = SyntheticPanoptic("val", num_examples=1000, seed=0)  # length plays no part
    for i in (0, 7, 63):
        assert_same_example(val[i], other[i])
    # Random access: reading others in between changes nothing.
    first = val[5]
    _ = [val[j] for j in (9, 2, 40)]
    assert_same_example(first, val[5])
    assert_same_example(val[-1], val[63])


def test_seeds_splits_indices_differ():
    base = SyntheticPanoptic("train", num_examples=100, seed=0)
    others = [
        SyntheticPanoptic("train", num_examples=100, seed=1)[3],
        SyntheticPanoptic("val", num_examples=100, seed=0)[3],
        base[4],
    ]
    for other in others:
        assert not np.array_equal(base[3]["image"], other["image"])
        assert not np.array_equal(base[3]["segment_ids"], other["segment_ids"])
    # Train and val share no image among their first examples.
    train = {base[i]["image"].tobytes() for i in range(20)}
    val = SyntheticPanoptic("val", num_examples=20, seed=0)
    assert not train & {val[i]["image"].tobytes() for i in range(20)}


def test_len_index_errors_and_defaults():
    ds = SyntheticPanoptic("val", num_examples=3)
    assert len(ds) == 3
    with pytest.raises(IndexError):
        ds[3]
    with pytest.raises(IndexError):
        ds[-4]
    assert list(ex["image_id"] for ex in ds) == [0, 1, 2]  # iteration stops at IndexError
    assert len(SyntheticPanoptic("train")) == 2**31 - 1
    assert SyntheticPanoptic("train")[2**31 - 2]["image_id"] == 2**31 - 2
    assert len(SyntheticPanoptic("val")) == 128
    with pytest.raises(ValueError, match="num_examples"):
        SyntheticPanoptic("holdout")
    with pytest.raises(ValueError, match="size"):
        SyntheticPanoptic("val", size=(8, 8))
    assert SyntheticPanoptic("holdout", num_examples=2)[1]["image"].shape == (128, 128, 3)


def test_make_datasets_from_a_data_config():
    from pcv.config import DataConfig
    from pcv.errors import ConfigError

    data = DataConfig(image_size=(64, 96), num_val=5)
    splits = make_datasets(data, seed=3)
    train, val = splits.train, splits.val
    assert (train.split, val.split, len(val), val.size, val.seed) == ("train", "val", 5, (64, 96), 3)
    assert len(train) == 2**31 - 1 and splits.calibration is None
    assert len(make_datasets(DataConfig(num_train=7)).train) == 7
    held = make_datasets(DataConfig(calibration_images=6)).calibration
    assert held.split == "calibration" and len(held) == 6
    assert held[0]["image"].tolist() != make_datasets(DataConfig()).val[0]["image"].tolist()  # its own scenes
    with pytest.raises(ConfigError, match="split 'calibration'"):
        splits.get("calibration")
    with pytest.raises(ConfigError, match="synthetic"):
        DataConfig(name="imagenet")


def test_grain_source_reads_the_same(val):
    grain = pytest.importorskip("grain")
    ds = grain.MapDataset.source(val)
    assert len(ds) == len(val)
    assert_same_example(ds[np.int64(4)], val[4])
    # Worker processes get a pickled copy.
    assert_same_example(pickle.loads(pickle.dumps(val))[4], val[4])


# ----------------------------------------------------------------------------
# Consistency of labels
# ----------------------------------------------------------------------------


def check_example(ex, size=(128, 128)):
    image, ids, segments = ex["image"], ex["segment_ids"], ex["segments_info"]
    assert image.shape == (*size, 3) and image.dtype == np.uint8
    assert ids.shape == size and ids.dtype == np.int32
    by_id = {s["id"]: s for s in segments}
    assert len(by_id) == len(segments), "repeated segment id"
    assert set(np.unique(ids).tolist()) - {0} == set(by_id), "map and segments_info disagree"
    assert 0 not in by_id
    categories = {c["id"]: c for c in CATEGORIES}
    for s in segments:
        assert set(s) == {"id", "category_id", "iscrowd", "area", "bbox"}
        assert s["category_id"] in categories
        assert s["iscrowd"] in (0, 1)
        if s["iscrowd"]:
            assert categories[s["category_id"]]["isthing"], "crowd regions are things"
        ys, xs = np.nonzero(ids == s["id"])
        assert s["area"] == len(ys)
        assert s["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
        assert all(type(v) is int for v in (s["id"], s["category_id"], s["iscrowd"], s["area"], *s["bbox"]))
    # COCO conventions: one segment per stuff class, at most one crowd per class.
    stuff = [s["category_id"] for s in segments if not categories[s["category_id"]]["isthing"]]
    crowd = [s["category_id"] for s in segments if s["iscrowd"]]
    assert len(stuff) == len(set(stuff)) and len(crowd) == len(set(crowd))
    # segments_from_ids measures the same thing.
    assert segments_from_ids(ids, {s["id"]: (s["category_id"], s["iscrowd"]) for s in segments}) == sorted(
        segments, key=lambda s: s["id"]
    )


def test_labels_consistent_and_cover_the_awkward_cases(examples):
    categories = {c["id"]: c for c in CATEGORIES}
    crowd = void_images = touching_things = 0
    stuff_seen, things_seen = set(), set()
    for ex in examples:
        check_example(ex)
        segments = {s["id"]: s for s in ex["segments_info"]}
        crowd += sum(s["iscrowd"] for s in segments.values())
        void_images += bool((ex["segment_ids"] == 0).any())
        for s in segments.values():
            (things_seen if categories[s["category_id"]]["isthing"] else stuff_seen).add(s["category_id"])

        def is_instance(i, segments=segments):
            return i and categories[segments[i]["category_id"]]["isthing"] and not segments[i]["iscrowd"]

        touching_things += sum(is_instance(a) and is_instance(b) for a, b in adjacent_pairs(ex["segment_ids"]))
    # Seed 0 gives 23 crowds, 30 images with void, 125 touching pairs.
    assert crowd >= 8, crowd
    assert void_images >= 15, void_images
    assert touching_things >= 40, touching_things
    assert len(stuff_seen) >= 2 and len(things_seen) >= 3
    assert stuff_seen == {11, 12, 14} and things_seen == {1, 2, 4, 7}


def test_instances_overlap_and_later_ones_occlude():
    totals = {}
    for i in range(50):
        stats = {}
        image, ids, segments = draw_scene(example_rng(0, "val", i), (128, 128), stats=stats)
        assert_same_example(
            {"image": image, "segment_ids": ids, "segments_info": segments, "image_id": i},
            SyntheticPanoptic("val", num_examples=50)[i],
        )
        for k, v in stats.items():
            totals[k] = totals.get(k, 0) + v
    assert totals["things_occluded"] >= 20, totals
    assert totals["touching_placements"] >= 20, totals
    assert totals["things_dropped"] == 0, "min_visible_fraction keeps some of every instance"


def test_full_occlusion_drops_instances_and_stays_consistent():
    config = SyntheticConfig(min_visible_fraction=0.0, num_things=(12, 20))
    dropped = 0
    for i in range(30):
        stats = {}
        image, ids, segments = draw_scene(example_rng(3, "train", i), (96, 96), config, stats)
        dropped += stats["things_dropped"]
        check_example({"image": image, "segment_ids": ids, "segments_info": segments}, (96, 96))
        n_things = sum(s["category_id"] in (1, 2, 4, 7) and not s["iscrowd"] for s in segments)
        assert n_things == stats["things_drawn"] - stats["things_dropped"]
    assert dropped >= 1


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    index=st.integers(0, 10**6),
    size=st.tuples(st.integers(16, 100), st.integers(16, 100)),
)
def test_any_example_any_size_is_consistent(seed, index, size):
    ds = SyntheticPanoptic("train", size=size, num_examples=10**6 + 1, seed=seed)
    check_example(ds[index], size)


def test_things_stand_out_from_stuff(examples):
    """The mean colour of each thing class is far from every stuff class's."""
    means = {}
    for ex in examples:
        for s in ex["segments_info"]:
            pixels = ex["image"][ex["segment_ids"] == s["id"]].astype(np.float64)
            means.setdefault(s["category_id"], []).append(pixels.mean(0))
    means = {c: np.mean(v, 0) for c, v in means.items()}
    for thing in (1, 2, 4, 7):
        for stuff in (11, 12, 14):
            assert np.abs(means[thing] - means[stuff]).max() > 50, (thing, stuff)


def test_generation_speed():
    ds = SyntheticPanoptic("train", num_examples=100, seed=0)
    ds[0]
    times = []
    for i in range(1, 31):
        t = time.perf_counter()
        ds[i]
        times.append(time.perf_counter() - t)
    # Typically ~3 ms on a slow 2-core machine; loose bound for busy ones.
    assert np.median(times) < 0.025, np.median(times)


# ----------------------------------------------------------------------------
# Label space
# ----------------------------------------------------------------------------


def test_label_space_things_first_then_by_id(val):
    labels = val.label_space
    assert labels.category_ids == (1, 2, 4, 7, 11, 12, 14)
    assert labels.names == ("disc", "square", "triangle", "ring", "grass", "stripes", "checker")
    assert labels.thing_mask.tolist() == [True] * 4 + [False] * 3
    assert val.train_id_of_category == {1: 0, 2: 1, 4: 2, 7: 3, 11: 4, 12: 5, 14: 6}
    assert [c["id"] for c in val.categories] == list(labels.category_ids)
    assert val.num_classes == 7 and val.thing_mask.tolist() == labels.thing_mask.tolist()
    # Order of the input does not matter.
    assert LabelSpace(reversed(CATEGORIES)) == labels
    shuffled = LabelSpace([{"id": 9, "isthing": 0}, {"id": 30, "isthing": 1}, {"id": 2, "isthing": 1}])
    assert shuffled.category_ids == (2, 30, 9)
    with pytest.raises(ValueError, match="not in the label space"):
        labels.train_segments([{"id": 1, "category_id": 3}])
    with pytest.raises(ValueError, match="twice"):
        LabelSpace([{"id": 1, "isthing": 1}, {"id": 1, "isthing": 0}])
    assert labels.train_segments([{"id": 5, "category_id": 12, "iscrowd": 0}]) == [
        {"id": 5, "train_id": 5, "isthing": False, "iscrowd": 0}
    ]


def test_label_space_of_coco_is_id_order():
    path = SAMPLE / "categories.json"
    categories = json.loads(path.read_text())
    labels = LabelSpace(categories)
    assert labels.num_classes == 133
    assert list(labels.category_ids) == sorted(c["id"] for c in categories)
    assert labels.thing_mask.sum() == 80 and labels.thing_mask[:80].all()


# ----------------------------------------------------------------------------
# Batching
# ----------------------------------------------------------------------------


def by_hand(ex, grid, stride, centroid, power):
    train_id = {1: 0, 2: 1, 4: 2, 7: 3, 11: 4, 12: 5, 14: 6}
    segments = [
        {
            "id": s["id"],
            "train_id": train_id[s["category_id"]],
            "isthing": s["category_id"] < 10,
            "iscrowd": s["iscrowd"],
        }
        for s in ex["segments_info"]
    ]
    return make_targets(downsample_ids(ex["segment_ids"], stride), segments, grid, centroid, power)


@pytest.mark.parametrize("grid, stride, centroid, power", [(GRID, 4, "mass", 0.5), (SMALL_GRID, 2, "box", 1.0)])
def test_batch_equals_targets_by_hand(examples, grid, stride, centroid, power):
    batch_examples = examples[:6]
    batch = make_batch(
        batch_examples, grid, SyntheticPanoptic.label_space, stride=stride, centroid=centroid, weight_power=power
    )
    h = 128 // stride
    assert batch["images"].shape == (6, 128, 128, 3) and batch["images"].dtype == np.uint8
    for key, dtype in (("semantic", np.int32), ("votes", np.int32), ("weights", np.float32)):
        assert batch[key].shape == (6, h, h) and batch[key].dtype == dtype, key
    for n, ex in enumerate(batch_examples):
        expected = by_hand(ex, grid, stride, centroid, power)
        for key in ("semantic", "votes", "weights"):
            np.testing.assert_array_equal(batch[key][n], expected[key], err_msg=f"{key} of example {n}")
    # Every target kind occurs: abstain (stuff), bins, ignore.
    assert (batch["votes"] == grid.num_bins).any() and (batch["votes"] == -1).any()
    assert ((batch["votes"] >= 0) & (batch["votes"] < grid.num_bins)).any()


def test_image_normalisation(examples):
    batch = make_batch(examples[:2], GRID, SyntheticPanoptic.label_space)
    images = np.stack([ex["image"] for ex in examples[:2]])
    np.testing.assert_array_equal(batch["images"], images)  # uint8: normalised on the device
    normalised = normalize_images(batch["images"])
    np.testing.assert_allclose(normalised, (images.astype(np.float32) - IMAGE_MEAN) / IMAGE_STD, rtol=1e-6)
    np.testing.assert_allclose(IMAGE_MEAN, [123.675, 116.28, 103.53])
    np.testing.assert_allclose(IMAGE_STD, [58.395, 57.12, 57.375])
    np.testing.assert_array_equal(denormalize_images(normalised), images)
    import jax.numpy as jnp

    on_device = normalize_images(jnp.asarray(images))  # the same on JAX arrays (inside the train step)
    np.testing.assert_allclose(np.asarray(on_device), normalised, rtol=1e-6)


def test_batch_padding_and_errors(examples):
    small = SyntheticPanoptic("val", size=(64, 96), num_examples=2)
    mixed = [small[0], examples[0]]
    with pytest.raises(ValueError, match="different sizes"):
        make_batch(mixed, GRID, small.label_space)
    batch = make_batch(mixed, GRID, small.label_space, pad_to=(128, 128))
    assert batch["images"].shape == (2, 128, 128, 3)
    from pcv.data.batching import PAD_COLOR

    assert (batch["images"][0, 64:] == PAD_COLOR).all() and (batch["images"][0, :, 96:] == PAD_COLOR).all()
    assert (batch["semantic"][0, 16:] == -1).all() and (batch["weights"][0, :, 24:] == 0).all()
    padded = np.zeros((128, 128), np.int32)
    padded[:64, :96] = small[0]["segment_ids"]
    expected = by_hand({"segment_ids": padded, "segments_info": small[0]["segments_info"]}, GRID, 4, "mass", 0.5)
    np.testing.assert_array_equal(batch["votes"][0], expected["votes"])
    with pytest.raises(ValueError, match="example 1: cannot pad 128x128 to the smaller 100x100"):
        make_batch(mixed, GRID, small.label_space, pad_to=(100, 100))
    with pytest.raises(ValueError, match="multiple of stride"):
        make_batch([SyntheticPanoptic("val", size=(66, 64), num_examples=1)[0]], GRID, small.label_space)
    with pytest.raises(ValueError, match="at least one"):
        make_batch([], GRID, small.label_space)
    with pytest.raises(TypeError, match="LabelSpace"):
        make_batch(mixed[:1], GRID, small.train_id_of_category)
    # COCO categories work in place of a LabelSpace.
    same = make_batch(mixed[:1], GRID, small.categories)
    np.testing.assert_array_equal(same["votes"], make_batch(mixed[:1], GRID, small.label_space)["votes"])


def test_batch_with_grain_pipeline(val):
    grain = pytest.importorskip("grain")
    batch_fn = functools.partial(make_batch, grid=GRID, label_space=val.label_space)
    ds = grain.MapDataset.source(val).batch(4, batch_fn=batch_fn)
    got = ds[1]
    want = make_batch([val[i] for i in range(4, 8)], GRID, val.label_space)
    for key in want:
        np.testing.assert_array_equal(got[key], want[key])


# ----------------------------------------------------------------------------
# Ground truth scored against itself
# ----------------------------------------------------------------------------


def test_ground_truth_scores_pq_one_in_memory(examples, val):
    total = PQStat()
    for ex in examples[:20]:
        ids, segments = gt_for_pq(ex)
        total += pq_image_stats(ids, segments, ids, segments, val.categories)
    results = total.results(val.categories)
    for group in ("All", "Things", "Stuff"):
        assert results[group]["pq"] == pytest.approx(1.0), group
    assert results["Things"]["n"] == 4 and results["Stuff"]["n"] == 3


def test_write_coco_panoptic_and_pq_compute(val, tmp_path):
    paths = write_coco_panoptic(val, tmp_path, indices=range(4))
    assert paths["json"] == tmp_path / "panoptic_val.json"
    gt = json.loads(paths["json"].read_text())
    assert [c["id"] for c in gt["categories"]] == [1, 2, 4, 7, 11, 12, 14]
    assert len(gt["images"]) == len(gt["annotations"]) == 4
    for ann, i in zip(gt["annotations"], range(4)):
        ex = val[i]
        assert ann["image_id"] == i and ann["segments_info"] == ex["segments_info"]
        np.testing.assert_array_equal(read_id_png(paths["panoptic_folder"] / ann["file_name"]), ex["segment_ids"])
        np.testing.assert_array_equal(np.asarray(Image.open(paths["image_folder"] / ann["file_name"])), ex["image"])
    results = pq_compute(paths["json"], paths["json"])
    for group in ("All", "Things", "Stuff"):
        assert results[group]["pq"] == pytest.approx(1.0), group
    # A prediction that misses every thing scores below 1: the files are read.
    pred = dict(gt, annotations=[])
    pred_folder = tmp_path / "pred"
    pred_folder.mkdir()
    for ann in gt["annotations"]:
        ids = read_id_png(paths["panoptic_folder"] / ann["file_name"])
        things = [s["id"] for s in ann["segments_info"] if s["category_id"] < 10]
        ids[np.isin(ids, things)] = 0
        Image.fromarray(id2rgb(ids)).save(pred_folder / ann["file_name"])
        segments = [s for s in ann["segments_info"] if s["id"] not in things]
        pred["annotations"].append(dict(ann, segments_info=segments))
    (tmp_path / "pred.json").write_text(json.dumps(pred))
    results = pq_compute(paths["json"], tmp_path / "pred.json", pred_folder=pred_folder)
    assert results["Things"]["pq"] == 0.0 and results["Stuff"]["pq"] == pytest.approx(1.0)

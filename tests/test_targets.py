"""Targets against a direct per-pixel computation, on made-up and real COCO labels."""

import json

import numpy as np
import pytest
from PIL import Image

from pcv.data.resize import resize_nearest
from pcv.data.targets import downsample_ids, make_targets
from pcv.voting import DEFAULT_GRID, SMALL_GRID

from shared_data import SAMPLE  # noqa: E402


def direct_targets(ids, segments, grid, centroid, power):
    """Pixel by pixel, straight from the rules in pcv.targets."""
    h, w = ids.shape
    sem = np.full((h, w), -1)
    votes = np.full((h, w), -1)
    weights = np.zeros((h, w))
    by_id = {s["id"]: s for s in segments}
    for y in range(h):
        for x in range(w):
            sid = ids[y, x]
            if sid == 0:
                continue
            seg = by_id[sid]
            sem[y, x] = seg["train_id"]
            if seg["iscrowd"]:
                continue
            pys, pxs = np.nonzero(ids == sid)
            weights[y, x] = len(pys) ** -power
            if not seg["isthing"]:
                votes[y, x] = grid.num_bins
                continue
            if centroid == "mass":
                cy, cx = int(np.floor(pys.mean())), int(np.floor(pxs.mean()))
            else:
                cy, cx = (pys.min() + pys.max()) // 2, (pxs.min() + pxs.max()) // 2
            dy, dx = cy - y, cx - x
            r = grid.radius
            votes[y, x] = grid.vote_mask[r + dy, r + dx] if max(abs(dy), abs(dx)) <= r else -1
    return sem, votes, weights


def check(ids, segments, grid, centroid="mass", power=0.5):
    out = make_targets(ids, segments, grid, centroid=centroid, weight_power=power)
    sem, votes, weights = direct_targets(ids, segments, grid, centroid, power)
    np.testing.assert_array_equal(out["semantic"], sem)
    np.testing.assert_array_equal(out["votes"], votes)
    np.testing.assert_allclose(out["weights"], weights, rtol=1e-6)
    assert out["semantic"].dtype == np.int32 and out["weights"].dtype == np.float32
    return out


def toy_label():
    ids = np.zeros((16, 20), np.int64)
    ids[:, :] = 1  # stuff
    ids[2:7, 3:9] = 2  # thing
    ids[8:15, 1:4] = 3  # thing, L-shaped below
    ids[13:15, 4:12] = 3
    ids[5:10, 14:19] = 4  # crowd
    ids[0, :] = 0  # void
    segments = [
        {"id": 1, "train_id": 5, "isthing": False, "iscrowd": 0},
        {"id": 2, "train_id": 0, "isthing": True, "iscrowd": 0},
        {"id": 3, "train_id": 1, "isthing": True, "iscrowd": 0},
        {"id": 4, "train_id": 1, "isthing": True, "iscrowd": 1},
        {"id": 9, "train_id": 2, "isthing": True, "iscrowd": 0},  # absent from the map: fine
    ]
    return ids, segments


@pytest.mark.parametrize("centroid", ["mass", "box"])
@pytest.mark.parametrize("grid", [SMALL_GRID, DEFAULT_GRID], ids=str)
def test_toy_label_matches_direct(centroid, grid):
    ids, segments = toy_label()
    out = check(ids, segments, grid, centroid)
    assert (out["votes"][5:10, 14:19] == -1).all() and (out["weights"][5:10, 14:19] == 0).all()
    assert (out["votes"][0] == -1).all() and (out["semantic"][0] == -1).all()
    if grid is SMALL_GRID:  # the L-shape reaches beyond the 9x9 field
        assert (out["votes"] == -1).sum() > (ids == 4).sum() + (ids == 0).sum()


def test_weight_power_and_mass_vs_box_differ():
    ids, segments = toy_label()
    check(ids, segments, DEFAULT_GRID, "mass", power=1.0)
    mass = make_targets(ids, segments, DEFAULT_GRID, "mass")
    box = make_targets(ids, segments, DEFAULT_GRID, "box")
    assert (mass["votes"][ids == 3] != box["votes"][ids == 3]).any()


def test_real_coco_label():
    data = json.loads((SAMPLE / "panoptic.json").read_text())
    cats = {c["id"]: c for c in data["categories"]}
    train_id = {cid: i for i, cid in enumerate(sorted(cats))}
    ann = data["annotations"][0]
    rgb = np.asarray(Image.open(SAMPLE / "panoptic" / ann["file_name"]), np.int64)
    ids = rgb[..., 0] + 256 * rgb[..., 1] + 256**2 * rgb[..., 2]
    ids = downsample_ids(ids, 8)  # small enough for the direct loop
    segments = [
        {
            "id": s["id"],
            "train_id": train_id[s["category_id"]],
            "isthing": cats[s["category_id"]]["isthing"],
            "iscrowd": s["iscrowd"],
        }
        for s in ann["segments_info"]
    ]
    out = check(ids, segments, DEFAULT_GRID)
    assert (out["votes"] == DEFAULT_GRID.num_bins).any()  # stuff present
    assert ((out["votes"] >= 0) & (out["votes"] < DEFAULT_GRID.num_bins)).any()  # things present


def test_downsampling_is_nearest_and_keeps_ids():
    rng = np.random.default_rng(0)
    ids = rng.choice([0, 7, 1000, 2**24 - 1], size=(37, 50))
    small = downsample_ids(ids, 4)
    assert small.shape == (10, 13)
    assert set(np.unique(small)) <= set(np.unique(ids))
    np.testing.assert_array_equal(small[2, 3], ids[int(2.5 * 37 / 10), int(3.5 * 50 / 13)])
    np.testing.assert_array_equal(resize_nearest(ids, ids.shape), ids)


def test_bad_labels_name_the_segment():
    ids, segments = toy_label()
    with pytest.raises(ValueError, match=r"\[3\]"):
        make_targets(ids, [s for s in segments if s["id"] != 3], SMALL_GRID)
    with pytest.raises(ValueError, match="twice"):
        make_targets(ids, segments + [segments[0]], SMALL_GRID)
    with pytest.raises(ValueError, match="iscrowd"):
        make_targets(ids, [{"id": 1, "train_id": 0, "isthing": False}], SMALL_GRID)
    with pytest.raises(ValueError, match="integer"):
        make_targets(ids.astype(float), segments, SMALL_GRID)
    with pytest.raises(ValueError, match="centroid"):
        make_targets(ids, segments, SMALL_GRID, centroid="median")

"""Inference on constructed votes where the right panoptic answer is known."""

import dataclasses
from collections import deque

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pcv.config import InferenceConfig
from pcv.data.targets import make_targets
from pcv.inference.postprocess import connected_components, panoptic_inference, peak_regions, resize_map_nearest
from pcv.inference.segments import to_coco_panoptic
from pcv.voting import DEFAULT_GRID, SMALL_GRID

THING = [True, True, False, False]  # classes 0, 1 things; 2, 3 stuff
MARGIN = 20.0


def perfect_logits(ids, segments, grid, num_classes=4):
    """Logits that put all mass on the target classes: stuff and void abstain."""
    t = make_targets(ids, segments, grid)
    sem = np.eye(num_classes)[np.maximum(t["semantic"], 0)] * MARGIN
    votes = np.where(t["votes"] < 0, grid.num_bins, t["votes"])
    return sem.astype(np.float32), (np.eye(grid.num_bins + 1)[votes] * MARGIN).astype(np.float32)


def seg(i, train_id, isthing, iscrowd=0):
    return {"id": i, "train_id": train_id, "isthing": isthing, "iscrowd": iscrowd}


def same_partition(pred_instance, gt_ids, gt_thing_ids):
    """Each gt thing is exactly one predicted instance and vice versa."""
    seen = set()
    for sid in gt_thing_ids:
        values = np.unique(pred_instance[gt_ids == sid])
        assert len(values) == 1 and values[0] > 0, f"gt segment {sid} split or lost: {values}"
        assert values[0] not in seen
        seen.add(values[0])
    assert set(np.unique(pred_instance)) - {0} == seen


CFG = InferenceConfig(threshold=3.0, max_instances=8, min_stuff_area=0)


def test_separate_and_touching_instances():
    ids = np.full((20, 24), 1)
    ids[3:8, 3:8] = 2
    ids[3:8, 8:13] = 3  # touches 2, same class
    ids[12:17, 15:20] = 4
    segments = [seg(1, 2, False), seg(2, 0, True), seg(3, 0, True), seg(4, 1, True)]
    sem, votes = perfect_logits(ids, segments, SMALL_GRID)
    out = jax.jit(lambda s, v: panoptic_inference(s, v, SMALL_GRID, THING, CFG))(sem, votes)
    same_partition(np.asarray(out["instance"]), ids, [2, 3, 4])
    expected_sem = np.select([ids == 1, ids == 4], [2, 1], 0)
    np.testing.assert_array_equal(out["semantic"], expected_sem)
    assert int(out["instance_valid"].sum()) == 3
    assert sorted(np.asarray(out["instance_class"])[np.asarray(out["instance_valid"])]) == [0, 0, 1]
    # Boxes hold the peak; peaks are the instance centroids (floor of the mean).
    peaks = {tuple(p) for p, v in zip(np.asarray(out["peaks"]), np.asarray(out["instance_valid"])) if v}
    assert peaks == {(5, 5), (5, 10), (14, 17)}


def test_default_grid_large_instances_and_abstaining_thing_pixels_are_void():
    ids = np.full((60, 80), 1)
    ids[5:45, 6:30] = 2
    ids[10:50, 40:75] = 3
    segments = [seg(1, 3, False), seg(2, 1, True), seg(3, 0, True)]
    sem, votes = perfect_logits(ids, segments, DEFAULT_GRID)
    # Part of instance 3 abstains: those pixels are claimed by nobody and must be void.
    votes[20:25, 50:60] = np.eye(DEFAULT_GRID.num_bins + 1)[DEFAULT_GRID.num_bins] * MARGIN
    cfg = InferenceConfig(threshold=8.0, max_instances=5, min_stuff_area=0)
    out = panoptic_inference(sem, votes, DEFAULT_GRID, THING, cfg)
    inst, semantic = np.asarray(out["instance"]), np.asarray(out["semantic"])
    assert (semantic[20:25, 50:60] == -1).all() and (inst[20:25, 50:60] == 0).all()
    ids_kept = ids.copy()
    ids_kept[20:25, 50:60] = 0
    same_partition(inst, ids_kept, [2, 3])
    assert (semantic[ids == 1] == 3).all()


def test_stuff_below_min_area_is_void():
    ids = np.full((20, 20), 1)
    ids[:3, :3] = 5  # a 9-pixel stuff segment of class 3
    ids[10:14, 10:14] = 2
    segments = [seg(1, 2, False), seg(5, 3, False), seg(2, 0, True)]
    sem, votes = perfect_logits(ids, segments, SMALL_GRID)
    small = panoptic_inference(sem, votes, SMALL_GRID, THING, InferenceConfig(threshold=3.0, min_stuff_area=10))
    assert (np.asarray(small["semantic"])[:3, :3] == -1).all()
    assert (np.asarray(small["semantic"])[ids == 1] == 2).all()
    kept = panoptic_inference(sem, votes, SMALL_GRID, THING, InferenceConfig(threshold=3.0, min_stuff_area=9))
    assert (np.asarray(kept["semantic"])[:3, :3] == 3).all()
    # The limit is in output pixels: at 2x resize the 9-pixel segment covers 36.
    big = panoptic_inference(
        sem, votes, SMALL_GRID, THING, InferenceConfig(threshold=3.0, min_stuff_area=30), output_size=(40, 40)
    )
    assert (np.asarray(big["semantic"])[:6, :6] == 3).all()
    np.testing.assert_array_equal(big["instance"], resize_map_nearest(small["instance"], (40, 40)))


def overlap_scene(p_class, class_b=1):
    """Peaks A (2, 3) and B (4, 5); pixel p = (6, 4) votes a 3x3 cell covering both."""
    g = SMALL_GRID
    h, w = 10, 10
    sem_label = np.full((h, w), 2)
    bins = np.full((h, w), g.num_bins)  # abstain
    for (cy, cx), cls in (((2, 3), 0), ((4, 5), class_b)):
        for dy, dx in ((0, 0), (-1, 0), (0, -1), (0, 1)):
            y, x = cy + dy, cx + dx
            bins[y, x] = g.bin_of_offset(np.array([cy - y, cx - x]))
            sem_label[y, x] = cls
    bins[6, 4] = g.bin_of_offset(np.array([-3, 0]))  # cell rows 2..4, cols 3..5
    sem_label[6, 4] = p_class
    sem = np.eye(4)[sem_label] * MARGIN
    votes = np.eye(g.num_bins + 1)[bins] * MARGIN
    return sem.astype(np.float32), votes.astype(np.float32)


def owner(out, yx):
    inst = np.asarray(out["instance"])
    peaks = np.asarray(out["peaks"])
    n = inst[yx] - 1
    return None if n < 0 else tuple(peaks[n])


@pytest.mark.parametrize(
    "p_class, class_b, expected",
    [
        (0, 1, (2, 3)),  # class agreement beats distance: p goes to the farther A
        (1, 1, (4, 5)),  # agreement with B
        (2, 1, (4, 5)),  # agrees with neither: nearest peak (B)
        (0, 0, (4, 5)),  # both agree: nearest peak
    ],
)
def test_overlap_rules(p_class, class_b, expected):
    sem, votes = overlap_scene(p_class, class_b)
    out = panoptic_inference(sem, votes, SMALL_GRID, THING, CFG)
    assert int(out["instance_valid"].sum()) == 2
    assert owner(out, (6, 4)) == expected
    n = np.asarray(out["instance"])[6, 4] - 1
    assert np.asarray(out["semantic"])[6, 4] == np.asarray(out["instance_class"])[n]


def test_best_rank_wins_with_top_t():
    g = SMALL_GRID
    sem, votes = overlap_scene(p_class=0)
    # Pixel q = (6, 6) agrees with A's class. Its best bin's cell (rows 3..5, cols 5..7) covers only
    # B (4, 5); its second bin's cell (rows 2..4, cols 2..4) covers only A (2, 3).
    q = (6, 6)
    sem[q] = np.eye(4)[0] * MARGIN
    votes[q] = 0
    votes[q + (g.bin_of_offset(np.array([-3, 0])),)] = MARGIN
    votes[q + (g.bin_of_offset(np.array([-3, -3])),)] = MARGIN - 1
    top1 = panoptic_inference(sem, votes, g, THING, CFG)
    assert owner(top1, q) == (4, 5)
    top2 = panoptic_inference(sem, votes, g, THING, InferenceConfig(threshold=3.0, max_instances=8, top_t=2))
    assert owner(top2, q) == (4, 5)  # rank 0 for B beats rank 1 for A despite agreeing with A
    # Without the rank difference (A's bin first), agreement and rank both pick A.
    votes[q + (g.bin_of_offset(np.array([-3, -3])),)] = MARGIN + 1
    assert owner(panoptic_inference(sem, votes, g, THING, InferenceConfig(threshold=3.0, top_t=2)), q) == (2, 3)


def bfs_components(mask):
    h, w = mask.shape
    labels = np.full((h, w), -1)
    for y in range(h):
        for x in range(w):
            if mask[y, x] and labels[y, x] < 0:
                root = y * w + x
                queue = deque([(y, x)])
                labels[y, x] = root
                while queue:
                    cy, cx = queue.popleft()
                    for ny, nx in ((cy + 1, cx), (cy - 1, cx), (cy, cx + 1), (cy, cx - 1)):
                        if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and labels[ny, nx] < 0:
                            labels[ny, nx] = root
                            queue.append((ny, nx))
    return labels


@pytest.mark.parametrize("density", [0.3, 0.55, 0.7])
def test_connected_components_match_bfs(density):
    rng = np.random.default_rng(int(density * 100))
    mask = rng.random((33, 47)) < density
    np.testing.assert_array_equal(jax.jit(connected_components)(mask), bfs_components(mask))


def test_connected_components_spiral():
    """A long snake exercises many propagation rounds."""
    mask = np.zeros((21, 21), bool)
    mask[::4, 1:-1] = True
    for i, y in enumerate(range(0, 17, 4)):
        mask[y : y + 5, -2 if i % 2 == 0 else 1] = True
    np.testing.assert_array_equal(connected_components(mask), bfs_components(mask))


def test_peak_regions_keep_the_strongest():
    heat = np.zeros((10, 10), np.float32)
    heat[1, 1], heat[5, 5], heat[8, 2], heat[8, 3] = 5, 9, 6, 7
    r = peak_regions(jnp.asarray(heat), 4.0, 2)
    np.testing.assert_array_equal(r["valid"], [True, True])
    np.testing.assert_array_equal(r["boxes"], [[5, 5, 5, 5], [8, 2, 8, 3]])
    np.testing.assert_array_equal(r["peaks"], [[5, 5], [8, 3]])
    r = peak_regions(jnp.asarray(heat), 4.0, 5)
    np.testing.assert_array_equal(r["valid"], [True, True, True, False, False])


def test_batched_matches_single_and_coco_export():
    ids = np.full((20, 24), 1)
    ids[3:8, 3:8] = 2
    ids[12:17, 15:20] = 4
    segments = [seg(1, 2, False), seg(2, 0, True), seg(4, 1, True)]
    sem, votes = perfect_logits(ids, segments, SMALL_GRID)
    sem2, votes2 = np.stack([sem, sem[:, ::-1]]), np.stack([votes, votes])
    batched = panoptic_inference(sem2, votes2, SMALL_GRID, THING, CFG, output_size=(40, 48))
    single = panoptic_inference(sem, votes, SMALL_GRID, THING, CFG, output_size=(40, 48))
    for key in single:
        np.testing.assert_array_equal(batched[key][0], single[key], err_msg=key)
    one = jax.tree.map(np.asarray, single)
    id_map, info = to_coco_panoptic(one, category_ids=[10, 20, 30, 40], thing_mask=THING)
    assert id_map.shape == (40, 48) and id_map.dtype == np.int32
    assert sorted(s["category_id"] for s in info) == [10, 20, 30]
    assert [s["id"] for s in info] == list(range(1, len(info) + 1))  # ids 1, 2, ... in order
    for s in info:  # instances carry scores: the peak's heat and the class probability
        if s["isthing"]:
            assert 0 < s["class_score"] <= 1 and s["peak_heat"] >= CFG.threshold and s["score"] == s["class_score"]
        else:
            assert "score" not in s
    _, scored = to_coco_panoptic(one, [10, 20, 30, 40], THING, names="abcd", threshold=CFG.threshold)
    for s in scored:
        assert s["category_name"] == "abcd"[[10, 20, 30, 40].index(s["category_id"])]
        if s["isthing"]:
            assert s["score"] == pytest.approx(
                s["class_score"] * s["peak_heat"] / (s["peak_heat"] + CFG.threshold), abs=2e-6
            )
    for s in info:
        assert (id_map == s["id"]).sum() == s["area"]
        x, y, w, h = s["bbox"]
        ys, xs = np.nonzero(id_map == s["id"])
        assert (x, y, w, h) == (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
    assert {s["area"] for s in info if s["category_id"] == 10} == {100}  # 5x5 at 2x scale


def test_bad_inputs():
    sem = np.zeros((8, 8, 4), np.float32)
    votes = np.zeros((8, 8, SMALL_GRID.num_bins + 1), np.float32)
    with pytest.raises(ValueError, match="K \\+ 1 = 18"):
        panoptic_inference(sem, votes[..., :-1], SMALL_GRID, THING)
    with pytest.raises(ValueError, match="thing_mask"):
        panoptic_inference(sem, votes, SMALL_GRID, THING[:3])
    with pytest.raises(ValueError, match="no thing"):
        panoptic_inference(sem, votes, SMALL_GRID, [False] * 4)
    with pytest.raises(ValueError, match="max_instances"):
        InferenceConfig(max_instances=0)


def test_inference_under_pmap_and_shard_map_matches_single_images():
    from jax.sharding import Mesh, NamedSharding
    from jax.sharding import PartitionSpec as P

    rng = np.random.default_rng(7)
    ids = np.full((16, 16), 1)
    ids[2:7, 2:7] = 2
    ids[9:14, 8:13] = 3
    segments = [seg(1, 2, False), seg(2, 0, True), seg(3, 1, True)]
    sem, votes = perfect_logits(ids, segments, SMALL_GRID)
    sems = np.stack([sem + rng.normal(0, 3, sem.shape).astype(np.float32) for _ in range(8)])
    votes = np.stack([votes + rng.normal(0, 3, votes.shape).astype(np.float32) for _ in range(8)])
    run = lambda s, v: panoptic_inference(s, v, SMALL_GRID, THING, CFG)  # noqa: E731
    singles = [run(sems[i], votes[i]) for i in range(8)]
    mesh = Mesh(np.array(jax.devices()), ("data",))
    shard = NamedSharding(mesh, P("data"))
    smap = jax.jit(jax.shard_map(run, mesh=mesh, in_specs=P("data"), out_specs=P("data")))
    outs = {
        "pmap": jax.pmap(lambda s, v: run(s, v))(sems, votes),
        "shard_map": smap(jax.device_put(sems, shard), jax.device_put(votes, shard)),
        "jit on sharded": jax.jit(run)(jax.device_put(sems, shard), jax.device_put(votes, shard)),
    }
    for name, out in outs.items():
        for i in range(8):
            for key in ("semantic", "instance", "instance_class", "boxes"):
                np.testing.assert_array_equal(out[key][i], singles[i][key], err_msg=f"{name} {key} {i}")
    assert any(int(s["instance_valid"].sum()) == 2 for s in singles)  # the noise leaves the scene readable


# ----------------------------------------------------------------------------
# Masks at full resolution (InferenceConfig.full_resolution).
# ----------------------------------------------------------------------------


def random_logits(seed, h=12, w=16, c=4, grid=SMALL_GRID):
    rng = np.random.default_rng(seed)
    sem = rng.normal(size=(h, w, c)).astype(np.float32)
    votes = (3 * rng.normal(size=(h, w, grid.num_bins + 1))).astype(np.float32)
    votes[..., 0] += 2  # some agreement, so there are peaks
    return sem, votes


@pytest.mark.parametrize("top_t", [1, 2, 3])
def test_full_resolution_at_the_map_size_is_the_map_algorithm(top_t):
    for seed in range(3):
        sem, votes = random_logits(seed)
        cfg = InferenceConfig(threshold=0.5, max_instances=8, top_t=top_t, min_stuff_area=3)
        fine = panoptic_inference(sem, votes, SMALL_GRID, THING, cfg)
        plain = panoptic_inference(sem, votes, SMALL_GRID, THING, dataclasses.replace(cfg, full_resolution=False))
        assert int(fine["instance_valid"].sum()) >= 2
        for key in plain:
            np.testing.assert_array_equal(fine[key], plain[key], err_msg=key)


def test_full_resolution_choices_are_those_of_the_bilinearly_upsampled_logits():
    """Semantic class and abstaining as the upsampled logits decide them; the bin among the neighbours' bins."""
    from pcv.inference.postprocess import _axis_samples, _fine_votes_and_labels

    rng = np.random.default_rng(0)
    h, w, k = 10, 14, SMALL_GRID.num_bins
    # Two classes: the neighbours' argmaxes always hold the upsampled argmax.
    sem = rng.normal(size=(h, w, 2)).astype(np.float32)
    votes = rng.normal(size=(h, w, k + 1)).astype(np.float32)
    votes[..., k] += 1.8 + 1.5 * rng.normal(size=(h, w))  # about half abstain
    out = (4 * h, 4 * w)
    rows, cols = _axis_samples(out[0], h), _axis_samples(out[1], w)
    top = np.argmax(votes[..., :k], -1)
    fine_bins, fine_label = _fine_votes_and_labels(
        jnp.asarray(sem), jnp.asarray(votes), jnp.asarray(top[..., None], jnp.int32), jnp.argmax(sem, -1), rows, cols, k
    )
    fine_bins = np.asarray(fine_bins)[..., 0]
    np.testing.assert_array_equal(fine_label, np.argmax(jax.image.resize(sem, out + (2,), "linear"), -1))
    margin = votes[..., k] - np.take_along_axis(votes, top[..., None], -1)[..., 0]
    abstain = np.asarray(jax.image.resize(margin, out, "linear")) > 0
    np.testing.assert_array_equal(fine_bins < 0, abstain)
    assert 0.2 < abstain.mean() < 0.8
    # A voting pixel's bin: the best of its four neighbours' bins by upsampled logit.
    up_votes = np.asarray(jax.image.resize(votes, out + (k + 1,), "linear"))
    for y, x in zip(*np.nonzero(~abstain)):
        qy, qx = rows[1][y], cols[1][x]
        nominated = {top[a, b] for a in (qy, rows[2][y]) for b in (qx, cols[2][x])}
        assert fine_bins[y, x] in nominated
        assert up_votes[y, x, fine_bins[y, x]] >= max(up_votes[y, x, list(nominated)]) - 1e-5


def test_full_resolution_masks_follow_edges_between_map_pixels():
    """A disc whose logits at stride 4 carry each map pixel's coverage: its mask follows the disc, not the grid."""
    s, h, w = 4, 16, 16
    yy, xx = np.mgrid[: s * h, : s * w] + 0.5
    disc = (yy - 30.3) ** 2 + (xx - 33.7) ** 2 < 14.2**2
    cover = disc.reshape(h, s, w, s).mean((1, 3))  # fraction of each map pixel inside the disc
    sem = np.full((h, w, 4), -MARGIN, np.float32)
    sem[..., 0], sem[..., 2] = MARGIN * (cover - 0.5), MARGIN * (0.5 - cover)
    ys, xs = np.nonzero(cover > 0)
    centre = np.floor(np.average(np.stack([ys, xs], 1), axis=0, weights=cover[ys, xs])).astype(int)
    offsets = centre[None, None] - np.stack(np.mgrid[:h, :w], -1)
    bins = SMALL_GRID.bin_of_offset(offsets.reshape(-1, 2)).reshape(h, w)
    votes = np.full((h, w, SMALL_GRID.num_bins + 1), -MARGIN, np.float32)
    votes[..., -1] = MARGIN * (0.5 - cover)
    votes[bins >= 0, bins[bins >= 0]] = MARGIN * (cover[bins >= 0] - 0.5)
    cfg = InferenceConfig(threshold=3.0, max_instances=4, min_stuff_area=0)

    def iou(config):
        out = panoptic_inference(sem, votes, SMALL_GRID, THING, config, output_size=(s * h, s * w))
        assert int(out["instance_valid"].sum()) == 1
        mask = np.asarray(out["instance"]) == 1
        rest = np.asarray(out["semantic"])[~mask]
        assert set(np.unique(rest)) <= {2, -1} and (rest == -1).mean() < 0.01  # stuff around it, a few void
        return (mask & disc).sum() / (mask | disc).sum()

    fine, plain = iou(cfg), iou(dataclasses.replace(cfg, full_resolution=False))
    assert fine > 0.97 and plain < 0.94 and fine > plain

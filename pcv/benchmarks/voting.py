"""Timing and memory of the voting layers and of inference: ``python -m pcv.bench voting|scaling|memory``.

Each time is also given as a multiple of one read of the same input
(``x.sum()`` on the same array, timed in the same run): the physical floor
of a job that must look at every input value once.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from pcv.benchmarks.timing import compiled_memory, time_fn
from pcv.benchmarks.training import train_step_on_random_data
from pcv.config import InferenceConfig
from pcv.inference.postprocess import panoptic_inference
from pcv.voting import DEFAULT_GRID, VoteGrid, aggregate_votes, backproject

SIZES = {
    # name: (H, W) at the heads' stride, number of semantic classes, number of thing classes
    "coco": ((200, 336), 133, 80),
    "cityscapes": ((256, 512), 19, 8),
    "tiny": ((24, 40), 6, 3),  # for the test of this module
}


def synthetic_scene(hw, num_classes, num_things, grid, num_instances=20, seed=0):
    """Logits of a plausible scene: rectangles voting for their centres, noise on top."""
    rng = np.random.default_rng(seed)
    h, w = hw
    k = grid.num_bins
    sem_label = rng.integers(num_things, num_classes, size=(1, 1)) * np.ones((h, w), np.int64)
    bins = np.full((h, w), k)
    ys, xs = np.mgrid[:h, :w]
    for _ in range(num_instances):
        bh, bw = rng.integers(4, max(5, h // 4)), rng.integers(4, max(5, w // 4))
        y0, x0 = rng.integers(0, h - bh), rng.integers(0, w - bw)
        inside = (ys >= y0) & (ys < y0 + bh) & (xs >= x0) & (xs < x0 + bw)
        cy, cx = y0 + bh // 2, x0 + bw // 2
        sem_label[inside] = rng.integers(0, num_things)
        b = grid.bin_of_offset(np.stack([cy - ys[inside], cx - xs[inside]], -1))
        bins[inside] = np.where(b >= 0, b, k)
    sem = rng.normal(0, 1, (h, w, num_classes)).astype(np.float32)
    sem[ys, xs, sem_label] += 6.0
    votes = rng.normal(0, 1, (h, w, k + 1)).astype(np.float32)
    votes[ys, xs, bins] += 8.0
    return jnp.asarray(sem), jnp.asarray(votes)


def bench_voting(sizes, repeats: int) -> list[dict]:
    grid = DEFAULT_GRID
    rows = []
    for name in sizes:
        (h, w), num_classes, num_things = SIZES[name]
        sem, votes = synthetic_scene((h, w), num_classes, num_things, grid)
        probs = jax.nn.softmax(votes, -1)[..., : grid.num_bins]
        vote_bins = jnp.argmax(votes, -1).astype(jnp.int32)
        vote_bins = jnp.where(vote_bins == grid.num_bins, -1, vote_bins)
        rng = np.random.default_rng(1)
        y = np.sort(rng.integers(0, h, (20, 2)), 1)
        x = np.sort(rng.integers(0, w, (20, 2)), 1)
        boxes = jnp.asarray(np.stack([y[:, 0], x[:, 0], y[:, 1], x[:, 1]], 1), jnp.int32)
        thing_mask = tuple(i < num_things for i in range(num_classes))
        read = jax.jit(lambda a: a.sum())

        def row(what, fn, args, floor_args, repeats=repeats, name=name, h=h, w=w, read=read):
            ms, ms_min = time_fn(fn, *args, repeats=repeats)
            floor, floor_min = time_fn(read, floor_args, repeats=repeats)
            rows.append(
                {
                    "size": f"{name} {h}x{w}",
                    "what": what,
                    "ms": round(ms, 3),
                    "min_ms": round(ms_min, 3),
                    "read_ms": round(floor, 3),
                    "read_min_ms": round(floor_min, 3),
                    "x_read": round(ms / floor, 2),
                }
            )
            print(
                f"  {rows[-1]['size']:<20} {what:<38} {ms:9.2f} ms (min {ms_min:8.2f})"
                f"  read {floor:6.2f} ms  {ms / floor:7.1f}x read",
                flush=True,
            )

        shift = jax.jit(lambda p: aggregate_votes(p, grid, method="shift"))
        conv = jax.jit(lambda p: aggregate_votes(p, grid, method="conv"))
        row("aggregate (shift, default)", shift, (probs,), probs)
        row("aggregate (conv, paper)", conv, (probs,), probs, repeats=max(1, repeats // 4))
        bp = jax.jit(lambda b, bx: backproject(b, bx, grid))
        row("backproject 20 boxes", bp, (vote_bins, boxes), vote_bins)
        # The floor of inference is one read of both logit maps.
        both = jnp.concatenate([sem.reshape(-1), votes.reshape(-1)])
        for label, full in (("masks at the map, resized", False), ("masks at full resolution", True)):
            row(f"inference, {label}", jax.jit(inference_fn(grid, thing_mask, (h, w), full)), (sem, votes), both)
    return rows


def inference_fn(grid, thing_mask, map_hw, full: bool):
    """``(semantic, votes) -> panoptic_inference(...)`` at 4 x the map, the paper's masks or full resolution."""
    config = InferenceConfig(full_resolution=full)
    out_hw = (4 * map_hw[0], 4 * map_hw[1])
    return lambda s, v: panoptic_inference(s, v, grid, thing_mask, config, output_size=out_hw)


#: Grids of the scaling table: K = 17, 89, 233 (the default), 401 and 641.
SCALING_GRIDS = (
    ((1, 1), (3, 1)),
    ((1, 1), (3, 4)),
    DEFAULT_GRID.spec,
    ((1, 1), (3, 4), (9, 6), (27, 3)),
    ((1, 1), (3, 4), (9, 9), (27, 3)),
)
#: Map sizes of the scaling table: 1/4, 1 and 4 times COCO's pixels at stride 4.
SCALING_SIZES = ((100, 168), (200, 336), (400, 672))


def bench_scaling(
    repeats: int, sizes=SCALING_SIZES, grids=SCALING_GRIDS, at=(200, 336), size_grid=DEFAULT_GRID.spec
) -> list[dict]:
    """Inference and aggregation time and compiled peak memory against map size (``size_grid``) and K (at ``at``)."""
    rows = []
    cases = [(hw, size_grid) for hw in sizes] + [(at, g) for g in grids if g != size_grid]
    for (h, w), spec in cases:
        grid = VoteGrid(spec)
        sem, votes = synthetic_scene((h, w), 133, 80, grid)
        probs = jax.nn.softmax(votes, -1)[..., : grid.num_bins]
        thing_mask = tuple(i < 80 for i in range(133))

        infer = inference_fn(grid, thing_mask, (h, w), full=False)

        def aggregate(p, grid=grid):
            return aggregate_votes(p, grid, method="shift")

        read = jax.jit(lambda a: a.sum())
        both = jnp.concatenate([sem.reshape(-1), votes.reshape(-1)])
        for what, fn, args, floor in (
            ("inference", infer, (sem, votes), both),
            ("aggregation", aggregate, (probs,), probs),
        ):
            ms, _ = time_fn(jax.jit(fn), *args, repeats=repeats)
            read_ms, _ = time_fn(read, floor, repeats=repeats)
            memory = compiled_memory(fn, *args)
            rows.append(
                {
                    "what": what,
                    "map": f"{h}x{w}",
                    "pixels_vs_coco": round(h * w / (200 * 336), 2),
                    "K": grid.num_bins,
                    "ms": round(ms, 2),
                    "x_read": round(ms / read_ms, 1),
                    "input_mib": round(sum(a.size * a.dtype.itemsize for a in args) / 2**20, 1),
                    **memory,
                }
            )
            r = rows[-1]
            print(
                f"  {what:<12} {r['map']:>8} K={r['K']:<4} {ms:9.2f} ms {r['x_read']:6.1f}x read  "
                f"input {r['input_mib']:7.1f} MiB  peak {r['peak_mib']:7.1f} MiB",
                flush=True,
            )
    return rows


def bench_memory(sizes, train_sizes=((512, 512), (800, 1344)), backbone: str = "resnet50") -> list[dict]:
    """Compiled peak memory of inference (``sizes``) and of a training step at 1 and 2 images (``train_sizes``)."""
    rows = []
    grid = DEFAULT_GRID
    for name in sizes:
        (h, w), num_classes, num_things = SIZES[name]
        sem, votes = synthetic_scene((h, w), num_classes, num_things, grid)
        thing_mask = tuple(i < num_things for i in range(num_classes))

        for what, full in (("inference", False), ("inference, full resolution", True)):
            infer = inference_fn(grid, thing_mask, (h, w), full)
            rows.append({"what": what, "size": f"{name} {h}x{w}", **compiled_memory(infer, sem, votes)})
            print(f"  {rows[-1]}", flush=True)
    for size in train_sizes:
        per_batch = {}
        for batch in (1, 2):
            step, state, data = train_step_on_random_data(backbone, size, batch, "float32")
            per_batch[batch] = compiled_memory(step, state, data)
        rows.append(
            {
                "what": f"train step {backbone} float32",
                "size": f"{size[0]}x{size[1]}",
                "batch_1_peak_mib": per_batch[1]["peak_mib"],
                "batch_2_peak_mib": per_batch[2]["peak_mib"],
                "per_image_mib": round(per_batch[2]["peak_mib"] - per_batch[1]["peak_mib"], 1),
                "state_mib": per_batch[1]["arguments_mib"],
            }
        )
        print(f"  {rows[-1]}", flush=True)
    return rows

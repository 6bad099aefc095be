"""Benchmarks: ``python -m pcv.bench [voting|train] [--sizes coco,cityscapes] [--repeats N]``.

``train`` times one jitted training step (``--backbone resnet50 --image-size
512 --batch 2``) and reports images per second.

``voting`` times, after compilation, on whatever device JAX picks:

* aggregation of ``[H, W, K]`` float32 bin probabilities, in the fast
  ("shift") and the paper's ("conv") formulations;
* backprojection of 20 peak boxes from top-1 vote bins;
* the whole logits -> panoptic map inference (semantic + vote logits in,
  panoptic map at 4x the size out),

at COCO scale (1/4 of 800 x 1344: 200 x 336) and Cityscapes scale (256 x 512)
with the default grid (K = 233). Each time is also given as a multiple of one
read of the same input (``x.sum()`` on the same array, timed in the same run):
the physical floor of a job that must look at every input value once.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from datetime import date

import jax
import jax.numpy as jnp
import numpy as np

from pcv.inference import InferenceConfig, panoptic_inference
from pcv.voting import DEFAULT_GRID, aggregate_votes, backproject

SIZES = {
    # name: (H, W) at the heads' stride, number of semantic classes, number of thing classes
    "coco": ((200, 336), 133, 80),
    "cityscapes": ((256, 512), 19, 8),
    "tiny": ((24, 40), 6, 3),  # for the test of this module
}


def time_fn(fn, *args, repeats: int) -> tuple[float, float]:
    """(median, min) wall time in ms of ``fn(*args)`` after one compiling call."""
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times), 1e3 * min(times)


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

        def row(what, fn, args, floor_args, repeats=repeats):
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
        infer = jax.jit(
            lambda s, v: panoptic_inference(s, v, grid, thing_mask, InferenceConfig(), output_size=(4 * h, 4 * w))
        )
        # The floor of inference is one read of both logit maps.
        both = jnp.concatenate([sem.reshape(-1), votes.reshape(-1)])
        row("inference logits -> panoptic (N=100)", infer, (sem, votes), both)
    return rows


def bench_train(backbone: str, size: int, batch: int, repeats: int, dtype: str) -> list[dict]:
    """Training throughput of one jitted train step (images/s) on random data.

    COCO-like heads: 133 classes, the default grid (K = 233), inputs
    ``size x size``; batch statistics over the batch, SGD with momentum.
    """
    import importlib.util

    from flax import nnx

    from pcv import train
    from pcv.models import PCVNet

    spec = importlib.util.spec_from_file_location("synthetic_config", train.DEFAULT_CONFIG)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    config.model.backbone, config.model.fpn_channels, config.model.fusion_channels = backbone, 256, 128
    grid = DEFAULT_GRID
    model = PCVNet(
        133, grid.num_bins, backbone=backbone, dtype=jnp.bfloat16 if dtype == "bfloat16" else jnp.float32,
        rngs=nnx.Rngs(0),
    )
    graphdef, params, rest = nnx.split(model, PCVNet.trainable, ...)
    parts = (graphdef, nnx.to_pure_dict(params), nnx.to_pure_dict(rest))
    schedule = train.make_schedule(config)
    tx = train.make_optimizer(config, schedule)
    state = train.init_state(parts, tx, 0)
    step = jax.jit(train.make_train_step(graphdef, tx, schedule, config, grid), donate_argnums=0)
    rng = np.random.default_rng(0)
    s = size // 4
    batch = {
        "images": jnp.asarray(rng.normal(size=(batch, size, size, 3)), jnp.float32),
        "semantic": jnp.asarray(rng.integers(-1, 133, (batch, s, s)), jnp.int32),
        "votes": jnp.asarray(rng.integers(-1, grid.num_bins + 1, (batch, s, s)), jnp.int32),
        "weights": jnp.asarray(rng.random((batch, s, s)), jnp.float32),
    }
    state, _ = step(state, batch)  # compile
    jax.block_until_ready(state)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        state, metrics = step(state, batch)
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - t0)
    ms = 1e3 * statistics.median(times)
    row = {
        "size": f"{size}x{size}",
        "what": f"train step {backbone} {dtype} batch {batch['images'].shape[0]}",
        "ms": round(ms, 1),
        "min_ms": round(1e3 * min(times), 1),
        "images_per_second": round(batch["images"].shape[0] / (ms / 1e3), 2),
    }
    print(f"  {row['size']:<10} {row['what']:<40} {ms:9.1f} ms  {row['images_per_second']:7.2f} img/s", flush=True)
    return [row]


def environment() -> dict:
    dev = jax.devices()[0]
    return {
        "date": date.today().isoformat(),
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "device": getattr(dev, "device_kind", str(dev)),
        "device_count": jax.device_count(),
        "cpu": platform.processor() or platform.machine(),
        "python": platform.python_version(),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pcv.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("suite", nargs="?", default="voting", choices=["voting", "train"])
    parser.add_argument("--sizes", default="coco,cityscapes", help="comma-separated of: " + ", ".join(SIZES))
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--json", help="also write the rows and environment to this file")
    parser.add_argument("--backbone", default="resnet50", help="train suite: resnet50, resnet101 or small")
    parser.add_argument("--image-size", type=int, default=512, help="train suite: square input size")
    parser.add_argument("--batch", type=int, default=2, help="train suite: global batch")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="train suite")
    args = parser.parse_args(argv)
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    unknown = [s for s in sizes if s not in SIZES]
    if unknown:
        parser.error(f"unknown size {unknown[0]!r}; choose from {', '.join(SIZES)}")
    env = environment()
    print(f"pcv.bench {args.suite}: {env['device']} x{env['device_count']} ({env['backend']}), jax {env['jax']}")
    if args.suite == "train":
        rows = bench_train(args.backbone, args.image_size, args.batch, args.repeats, args.dtype)
    else:
        rows = bench_voting(sizes, args.repeats)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"environment": env, "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())

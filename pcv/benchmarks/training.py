"""Throughput of one jitted training step on random data: ``python -m pcv.bench train``."""

from __future__ import annotations

import functools
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from pcv import config as config_lib
from pcv.training.state import Schedule, create_train_state
from pcv.training.step import make_train_step
from pcv.voting import DEFAULT_GRID


def train_step_on_random_data(backbone: str, size, batch: int, dtype: str):
    """``(step, state, batch)``: the train step of a COCO-like model (133 classes, K = 233) on random data."""
    config = config_lib.override(
        config_lib.Config(),
        {
            "model.backbone": backbone,
            "model.fpn_channels": 256,
            "model.fusion_channels": 128,
            "model.dtype": dtype,
            "grid": DEFAULT_GRID.spec,
        },
    )
    grid = DEFAULT_GRID
    parts = create_train_state(config, 133, grid)
    schedule = Schedule.of(config.optimizer, config.steps).as_array()
    step = functools.partial(make_train_step(parts.graphdef, parts.tx, config), schedule=schedule)
    rng = np.random.default_rng(0)
    h, w = (size, size) if isinstance(size, int) else size
    s = (h // 4, w // 4)
    data = {
        "images": jnp.asarray(rng.integers(0, 256, (batch, h, w, 3)), jnp.uint8),
        "semantic": jnp.asarray(rng.integers(-1, 133, (batch, *s)), jnp.int32),
        "votes": jnp.asarray(rng.integers(-1, grid.num_bins + 1, (batch, *s)), jnp.int32),
        "weights": jnp.asarray(rng.random((batch, *s)), jnp.float32),
    }
    return step, parts.state, data


def bench_train(backbone: str, size: int, batch: int, repeats: int, dtype: str) -> list[dict]:
    """Training throughput of one jitted train step (images/s) on random data.

    COCO-like heads: 133 classes, the default grid (K = 233), inputs
    ``size x size``; batch statistics over the batch, SGD with momentum.
    """
    fn, state, batch = train_step_on_random_data(backbone, size, batch, dtype)
    step = jax.jit(fn, donate_argnums=0)
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
        "size": "x".join(map(str, (size, size) if isinstance(size, int) else size)),
        "what": f"train step {backbone} {dtype} batch {batch['images'].shape[0]}",
        "ms": round(ms, 1),
        "min_ms": round(1e3 * min(times), 1),
        "images_per_second": round(batch["images"].shape[0] / (ms / 1e3), 2),
    }
    print(f"  {row['size']:<10} {row['what']:<40} {ms:9.1f} ms  {row['images_per_second']:7.2f} img/s", flush=True)
    return [row]

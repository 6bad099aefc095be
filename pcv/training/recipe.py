"""A training recipe sized from a prepared dataset's statistics: what ``--config=custom:<dir>`` trains.

:func:`choose` reads the training split's statistics (:mod:`pcv.data.stats`,
``stats.json``, written by ``pcv.prepare``) and returns the config fields
it sets, each with the reason, which the trainer prints:

- **input**: images of one size are fit into that size (rounded up to a
  multiple of 32) for training and evaluation; images of many sizes are
  resized by their shorter side (the median, at most 800) with the longer
  side capped at the median aspect, and trained on crops of at most 512 px;
- **grid**: the smallest of :data:`GRIDS` whose field (4 x its diameter in
  input pixels) spans the 95th-percentile instance extent at that input
  size, since a pixel votes for its centroid only inside the field;
- **min_stuff_area**: half the 5th-percentile stuff region, in input pixels;
- **threshold**: 1.0 when a median instance casts fewer than 64 votes at
  stride 4, else the paper's 4.0 (calibration refines it);
- **max_instances**: 1.5 x the most instances an image has (16 to 100);
- **model**: the small backbone up to a 256 px shorter side (and no input
  worker processes: such images decode fast in threads), ResNet-50-FPN
  above (give it ``--config.model.pretrained``);
- **schedule**: about 12 passes over the training images at batch 16
  (700 to 20,000 steps), warmup a tenth, evaluation at the end,
  checkpoints every quarter;
- **calibration**: 5 % of the training images held out (16 to 200; none
  below 200 images), on which the post-processing is then calibrated.

Every field stays overridable: ``--config.<field>=...`` is applied after
the recipe.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from pcv.config import OUTPUT_STRIDE, round_up
from pcv.voting import VoteGrid

#: Grids to choose from, smallest field first: diameters 9, 15, 27, 81, 243 map pixels.
GRIDS = (
    ((1, 1), (3, 1)),
    ((1, 1), (3, 2)),
    ((1, 1), (3, 4)),
    ((1, 1), (3, 4), (9, 3)),
    ((1, 1), (3, 4), (9, 3), (27, 3)),
)
MAX_SHORT_SIDE = 800
MAX_CROP = 512
BATCH = 16
# Passes over the training images (at least MIN_STEPS steps); the measurements behind the
# number are in BENCHMARKS.md ("masks at full resolution").
PASSES = 12
MIN_STEPS = 700


def choose(stats: Mapping) -> list[tuple[str, object, str]]:
    """``[(dotted field, value, why)]`` for the training split's statistics (module docstring)."""
    size, inst, stuff = stats["image_size"], stats["instances"], stats["stuff"]
    n = int(stats["images"])
    out: list[tuple[str, object, str]] = []
    same = size["height"]["p0"] == size["height"]["p100"] and size["width"]["p0"] == size["width"]["p100"]
    if same:
        h, w = int(size["height"]["p50"]), int(size["width"]["p50"])
        scale = min(1.0, MAX_SHORT_SIDE / min(h, w))
        box = (round_up(max(32, round(h * scale))), round_up(max(32, round(w * scale))))
        out += [
            ("data.image_size", box, f"every image is {h}x{w}: fit into {box[0]}x{box[1]} (multiples of 32)"),
            ("data.base_size", 0, "trained at their own size"),
            ("data.scale_range", (0.75, 1.25), "random scale 0.75-1.25"),
            ("data.eval_short_side", 0, "evaluated fit into the same box"),
        ]
        input_short, area = min(box), box[0] * box[1]
    else:
        short = int(min(MAX_SHORT_SIDE, size["short_side"]["p50"]))
        aspect = size["long_side"]["p50"] / max(size["short_side"]["p50"], 1)
        long = int(math.ceil(short * aspect))
        crop = min(MAX_CROP, round_up(short))
        scale = short / max(size["short_side"]["p50"], 1)
        out += [
            ("data.base_size", short, f"median shorter side {size['short_side']['p50']:.0f} px (at most 800)"),
            ("data.scale_range", (0.5, 1.5), "random scale 0.5-1.5 of it"),
            ("data.image_size", (crop, crop), f"trained on {crop}x{crop} crops"),
            ("data.eval_short_side", short, "evaluated at the same shorter side"),
            ("data.eval_max_size", long, f"longer side at most {long} px (the median aspect {aspect:.2f})"),
        ]
        input_short, area = short, short * long
    extent = (inst["extent"] or {"p95": 0})["p95"] * scale
    grid = next((g for g in GRIDS if OUTPUT_STRIDE * VoteGrid(g).diameter >= extent), GRIDS[-1])
    field = OUTPUT_STRIDE * VoteGrid(grid).diameter
    out.append(
        ("grid", grid, f"field {field} px spans the 95th-percentile instance extent ({extent:.0f} px at this size)")
    )
    stuff_p5 = (stuff["area_rel"] or {"p5": 0.0})["p5"] * area
    min_area = int(max(16, stuff_p5 / 2))
    out.append(("inference.min_stuff_area", min_area, f"half the 5th-percentile stuff region ({stuff_p5:.0f} px)"))
    votes = (inst["area"] or {"p50": 0.0})["p50"] * scale**2 / OUTPUT_STRIDE**2
    threshold = 1.0 if votes < 64 else 4.0
    out.append(
        ("inference.threshold", threshold, f"a median instance casts {votes:.0f} votes at stride 4 (calibrated later)")
    )
    most = (inst["per_image"] or {"p100": 0})["p100"]
    max_instances = int(min(100, max(16, math.ceil(1.5 * most))))
    out.append(("inference.max_instances", max_instances, f"1.5 x the most instances in an image ({most:.0f})"))
    if input_short <= 256:
        out += [
            ("model.backbone", "small", f"shorter side {input_short} px: the small backbone"),
            ("model.fpn_channels", 64, "FPN 64 channels"),
            ("model.fusion_channels", 64, "fusion 64 channels"),
            ("optimizer.learning_rate", 0.05, "learning rate 0.05 (from scratch)"),
            ("data.num_workers", 0, "small images decode in the trainer's threads; no worker processes"),
        ]
    else:
        out += [
            ("model.backbone", "resnet50", f"shorter side {input_short} px: ResNet-50-FPN (add a pretrained file)"),
            ("model.fpn_channels", 128, "FPN 128 channels"),
            ("model.fusion_channels", 128, "fusion 128 channels"),
            ("optimizer.learning_rate", 0.02, "learning rate 0.02"),
        ]
    held = int(min(200, max(16, round(0.05 * n)))) if n >= 200 else 0
    train_n = n - held
    steps = int(min(20_000, max(MIN_STEPS, round(PASSES * train_n / BATCH / 100) * 100)))
    out += [
        ("batch_size", BATCH, "16 images per step"),
        ("steps", steps, f"about {PASSES} passes over {train_n} training images"),
        ("optimizer.warmup_steps", steps // 10, "warmup a tenth of the steps"),
        ("eval_every", 0, "PQ at the end"),
        ("checkpoint_every", max(1, steps // 4), "a checkpoint every quarter"),
        (
            "data.calibration_images",
            held,
            f"{held} training images held out to calibrate the post-processing"
            if held
            else f"{n} images: too few to hold some out for calibration",
        ),
    ]
    return out


def describe(choices, source: str) -> list[str]:
    """The lines the trainer prints: what the recipe chose and why."""
    lines = [f"custom recipe sized from {source}:"]
    for field, value, why in choices:
        lines.append(f"  {field} = {value!r}: {why}")
    return lines

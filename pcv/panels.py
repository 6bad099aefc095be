"""Validation panels for the trainer: input | ground truth | prediction | heatmap.

Plain numpy + PIL (no plotting library), so training needs nothing extra.
Segments get stable colours: stuff takes its category colour, each instance
a colour of its own derived from the category colour.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image


def _instance_colour(base, k: int) -> np.ndarray:
    """A distinct shade of ``base`` for the k-th instance of a class."""
    rng = np.random.default_rng(k * 7919 + int(base[0]) * 31 + int(base[1]))
    return np.clip(np.asarray(base, np.int64) + rng.integers(-60, 61, 3), 0, 255)


def colorize(segment_ids: np.ndarray, segments_info: Sequence[dict], categories: Sequence[dict]) -> np.ndarray:
    """``[H, W]`` segment ids + COCO segments -> ``[H, W, 3]`` uint8 (void black)."""
    colour_of = {c["id"]: c.get("color", (200, 200, 200)) for c in categories}
    isthing = {c["id"]: c.get("isthing", 0) for c in categories}
    out = np.zeros(segment_ids.shape + (3,), np.uint8)
    seen: dict[int, int] = {}
    for seg in segments_info:
        cat = seg["category_id"]
        k = seen.get(cat, 0)
        seen[cat] = k + 1
        colour = _instance_colour(colour_of[cat], k) if isthing[cat] else np.asarray(colour_of[cat])
        out[segment_ids == seg["id"]] = colour
    return out


def heat_colours(heat: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """A heatmap as an ``[H_out, W_out, 3]`` uint8 image (black -> red -> yellow -> white)."""
    h = np.asarray(heat, np.float64)
    h = h / max(float(h.max()), 1e-6)
    rgb = np.stack([np.clip(3 * h, 0, 1), np.clip(3 * h - 1, 0, 1), np.clip(3 * h - 2, 0, 1)], -1)
    img = Image.fromarray((255 * rgb).astype(np.uint8)).resize(out_hw[::-1], Image.NEAREST)
    return np.asarray(img)


def validation_panel(shown, dataset) -> np.ndarray:
    """Rows of input | ground truth | prediction | vote heatmap, as one uint8 image.

    Args:
      shown: (example, prediction) pairs; ``example`` has ``image``,
        ``segment_ids`` and ``segments_info``; ``prediction`` is one image's
        output of :func:`pcv.inference.panoptic_inference`.
      dataset: gives ``categories``, ``category_ids`` and ``thing_mask``.
    """
    from pcv.inference import to_coco_panoptic

    rows = []
    for example, pred in shown:
        image = np.asarray(example["image"], np.uint8)
        hw = image.shape[:2]
        gt = colorize(example["segment_ids"], example["segments_info"], dataset.categories)
        id_map, segments = to_coco_panoptic(pred, dataset.category_ids, dataset.thing_mask)
        pr = colorize(id_map, segments, dataset.categories)
        heat = heat_colours(pred["heatmap"], hw)
        gap = np.full((hw[0], 4, 3), 255, np.uint8)
        rows.append(np.concatenate([image, gap, gt, gap, pr, gap, heat], 1))
    if not rows:
        return np.zeros((1, 1, 3), np.uint8)
    gap = np.full((4, rows[0].shape[1], 3), 255, np.uint8)
    return np.concatenate([r for row in rows for r in (row, gap)][:-1], 0)


def save_png(image: np.ndarray, path: str) -> None:
    Image.fromarray(np.asarray(image, np.uint8)).save(path)

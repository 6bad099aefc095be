"""Colours of segments and plain-array drawing (numpy only): category colours, instance colours, blends, boundaries."""

from __future__ import annotations

import colorsys
from collections.abc import Mapping, Sequence

import numpy as np

GOLDEN = 0.6180339887498949


def _fallback_colour(category_id: int) -> tuple[int, int, int]:
    """A stable colour for a category that has none."""
    r, g, b = colorsys.hsv_to_rgb((int(category_id) * GOLDEN) % 1.0, 0.55, 0.8)
    return int(255 * r), int(255 * g), int(255 * b)


def instance_colour(k: int) -> tuple[int, int, int]:
    """The k-th instance colour: hues spaced by the golden ratio, so neighbours in k differ most."""
    r, g, b = colorsys.hsv_to_rgb((0.11 + k * GOLDEN) % 1.0, 0.8 if k % 2 else 0.65, 0.98 if k % 3 else 0.85)
    return int(255 * r), int(255 * g), int(255 * b)


def segment_colours(segments_info: Sequence[Mapping], categories: Sequence[Mapping]) -> dict[int, tuple[int, int, int]]:
    """``{segment id: (r, g, b)}``: stuff takes its category colour, instances distinct colours in order.

    Crowd segments take their category colour (they are not one instance).
    """
    by_id = {int(c["id"]): c for c in categories}
    out = {}
    k = 0
    for seg in segments_info:
        category_id = int(seg["category_id"])
        if category_id not in by_id:
            raise ValueError(f"segment {seg['id']} has category_id {category_id}, not among the categories")
        cat = by_id[category_id]
        if cat.get("isthing") and not seg.get("iscrowd", 0):
            out[int(seg["id"])] = instance_colour(k)
            k += 1
        else:
            out[int(seg["id"])] = tuple(int(v) for v in cat.get("color", _fallback_colour(category_id)))
    return out


def colorize(segment_ids, segments_info: Sequence[Mapping], categories: Sequence[Mapping]) -> np.ndarray:
    """``[H, W]`` segment ids + COCO ``segments_info`` -> ``[H, W, 3]`` uint8 (void black)."""
    ids = np.asarray(segment_ids)
    colours = segment_colours(segments_info, categories)
    lut_ids = np.array([0] + list(colours), np.int64)
    lut = np.array([(0, 0, 0)] + list(colours.values()), np.uint8)
    order = np.argsort(lut_ids)
    pos = np.searchsorted(lut_ids[order], ids)
    pos = np.minimum(pos, len(order) - 1)
    known = lut_ids[order][pos] == ids
    if not known.all():
        missing = sorted(set(np.unique(ids[~known]).tolist()))
        raise ValueError(f"segment ids {missing[:5]} are in the map but not in segments_info")
    return lut[order][pos]


def boundaries(segment_ids) -> np.ndarray:
    """bool ``[H, W]``: pixels whose right or lower neighbour has another segment id."""
    ids = np.asarray(segment_ids)
    edge = np.zeros(ids.shape, bool)
    edge[:, :-1] |= ids[:, :-1] != ids[:, 1:]
    edge[:-1, :] |= ids[:-1, :] != ids[1:, :]
    return edge


def blend(image, segment_ids, segments_info, categories, *, alpha: float = 0.55, edges: bool = True) -> np.ndarray:
    """The segmentation blended over the image, uint8 ``[H, W, 3]``; void stays the image."""
    image = as_rgb(image)
    ids = np.asarray(segment_ids)
    if ids.shape != image.shape[:2]:
        raise ValueError(f"segment_ids {ids.shape} and image {image.shape[:2]} differ in size")
    colours = colorize(ids, segments_info, categories).astype(np.float32)
    a = np.where(ids[..., None] > 0, alpha, 0.0)
    out = (1 - a) * image.astype(np.float32) + a * colours
    if edges:
        out[boundaries(ids)] = 255.0
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def as_rgb(image) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, -1)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"expected an RGB image [H, W, 3], got shape {image.shape}")
    if image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    return image

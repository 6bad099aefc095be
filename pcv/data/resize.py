"""Sizes and resizing on the host, numpy and Pillow only: the evaluation geometry, ids by nearest neighbour.

An image is resized (bilinear) and padded to the one shape the network is
compiled for (:func:`resize_and_pad`), and a result map goes back to the
image's own size by nearest neighbour (:func:`to_original`): segment ids are
never resized any other way. Training (targets, transforms), the
:class:`pcv.Predictor` and exported models (:mod:`pcv.inference.bundle`)
share this code; the bundle's own loader carries a copy.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from PIL import Image


def resize_nearest(ids: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of an ``[H, W, ...]`` map with half-pixel centres.

    Output pixel i samples input pixel ``floor((i + 0.5) * H_in / H_out)``, the
    same rule as :func:`pcv.inference.postprocess.resize_map_nearest` (on the device).
    """
    ids = np.asarray(ids)
    h, w = ids.shape[:2]
    oh, ow = out_hw
    ys = np.minimum(((np.arange(oh) + 0.5) * h / oh).astype(np.int64), h - 1)
    xs = np.minimum(((np.arange(ow) + 0.5) * w / ow).astype(np.int64), w - 1)
    return ids[ys[:, None], xs[None, :]]


def eval_resize_shape(hw: tuple[int, int], short_side: int, max_size: int = 0) -> tuple[int, int]:
    """``(h, w)`` with the shorter side ``short_side`` and the longer at most ``max_size`` (0: no limit).

    ``short_side = 0`` keeps the size.
    """
    h, w = hw
    if short_side <= 0:
        return int(h), int(w)
    scale = short_side / min(h, w)
    if max_size > 0 and max(h, w) * scale > max_size:
        scale = max_size / max(h, w)
    return max(1, int(round(h * scale))), max(1, int(round(w * scale)))


def fit_size(hw: tuple[int, int], box: tuple[int, int]) -> tuple[int, int]:
    """The largest ``(h, w)`` of the image's aspect ratio inside ``box`` (at least 1 x 1)."""
    h, w = hw
    scale = min(box[0] / h, box[1] / w)
    return max(1, min(box[0], round(h * scale))), max(1, min(box[1], round(w * scale)))


def resized_shape(hw: tuple[int, int], short_side: int, max_size: int, box: tuple[int, int]) -> tuple[int, int]:
    """The size an image of ``hw`` is resized to before padding: by its short side, or fit into ``box``.

    ``short_side > 0``: :func:`eval_resize_shape`; ``short_side == 0``:
    :func:`fit_size` into ``box`` (the demo's rule).
    """
    if short_side > 0:
        return eval_resize_shape(hw, short_side, max_size)
    return fit_size(hw, box)


def resize_and_pad(
    image: np.ndarray, size: tuple[int, int], pad_shape: tuple[int, int], pad_color, name: str = "image"
) -> np.ndarray:
    """uint8 ``[H, W, 3]`` resized to ``size`` (bilinear, Pillow) and padded bottom / right to ``pad_shape``."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
        raise ValueError(f"{name}: image must be uint8 [H, W, 3], got {image.dtype} {image.shape}")
    size = tuple(int(x) for x in size)
    if size[0] > pad_shape[0] or size[1] > pad_shape[1]:
        raise ValueError(f"{name}: resized to {size[0]}x{size[1]}, larger than pad_shape {tuple(pad_shape)}")
    if size != image.shape[:2]:
        image = np.asarray(Image.fromarray(np.ascontiguousarray(image)).resize(size[::-1], Image.BILINEAR))
    out = np.empty((*pad_shape, 3), np.uint8)
    out[...] = np.asarray(pad_color, np.uint8)
    out[: size[0], : size[1]] = image
    return out


def to_original(prediction: np.ndarray, meta: Mapping) -> np.ndarray:
    """A map at the padded evaluation size (``[Hp, Wp, ...]``) -> ``[H, W, ...]`` of the original image.

    Crops the valid region, then resizes with nearest neighbour (ids stay ids).
    """
    h, w = meta["valid_size"]
    prediction = np.asarray(prediction)
    if prediction.shape[0] < h or prediction.shape[1] < w:
        raise ValueError(f"prediction {prediction.shape[:2]} is smaller than the valid size {(h, w)}")
    return resize_nearest(prediction[:h, :w], tuple(meta["original_size"]))

"""Example -> example transforms for training and evaluation: pure numpy + PIL.

Every function takes and returns the example dict of :mod:`pcv.data.panoptic`
(``image`` uint8 ``[H, W, 3]``, ``segment_ids`` int ``[H, W]`` 0 = void,
``segments_info``, ``image_id``; other keys are passed through). Random
ones take an explicit ``np.random.Generator``, so the input pipeline can
derive one per example from ``(seed, index)`` and a resumed run redraws
exactly the same augmentation.

Images are resampled bilinearly (PIL); segment ids ONLY with nearest
neighbour, by the rule of :func:`pcv.data.resize.resize_nearest` (output pixel
``i`` reads input pixel ``floor((i + 0.5) * H_in / H_out)``), so every output
id exists in the input. Targets are not computed here: they come after the
geometry, from :func:`pcv.data.batching.make_batch` at the output stride.

Training (:func:`train_transform`), in this order:

1. *Random scale*: a factor ``s ~ U(scale_range)``; the image is resized so
   its **shorter side** becomes ``s * base_size`` (aspect kept; ``base_size
   = 0`` means the image's own shorter side, i.e. ``s`` is a plain zoom).
2. *Random crop* of ``crop_size = (CH, CW)`` out of the scaled image, offset
   uniform over the positions that fit. Only the cropped window is ever
   resampled (PIL's ``box``; ids by index arithmetic), never the whole
   scaled image: at scale 2 of a COCO image that is 4x less work.
3. *Horizontal flip* with probability 1/2 (vote targets are computed
   afterwards, so no bin mirroring is needed).
4. *Colour jitter* (optional): brightness, contrast and saturation each
   multiplied by a factor in ``[1 - j, 1 + j]``.
5. *Pad* bottom / right to ``crop_size`` where the scaled image is smaller:
   image with the mean colour (0 after normalisation), ids with 0 = void,
   so padded pixels carry no loss.
6. ``segments_info`` recomputed: exactly the ids still present, with their
   new ``area`` and ``bbox``.

Evaluation (:func:`eval_transform`): resize so the shorter side is
``short_side`` and the longer at most ``max_size`` (COCO: 800 / 1333), pad
bottom / right to one fixed shape for every image so a jitted network sees
a single static shape. Portrait and landscape images share that shape: it
is the square :func:`eval_pad_shape` ``(L', L')`` with ``L' = max_size``
rounded up to a multiple of 32 (COCO: 1344 x 1344). That costs up to ~1.7x
the pixels of an orientation-specific shape (800 x 1344) but keeps one
compiled program and the dataset order; :func:`to_original` maps a
prediction at the padded size back to the original image.

Legend: H, W input size; CH, CW crop size; Hp, Wp padded evaluation size.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np
from PIL import Image

from pcv.config import SIZE_MULTIPLE, round_up
from pcv.data.batching import PAD_COLOR, pad_example_arrays
from pcv.data.resize import eval_resize_shape, resized_shape
from pcv.data.resize import fit_size as fit_size  # re-exported: transforms is where users look
from pcv.data.resize import resize_and_pad as resize_and_pad_image
from pcv.data.resize import to_original as to_original

# ----------------------------------------------------------------------------
# Checks and segments.
# ----------------------------------------------------------------------------


def check_example(example: Mapping) -> tuple[np.ndarray, np.ndarray]:
    """``(image uint8 [H, W, 3], segment_ids int32 [H, W])`` of an example, or a ``ValueError`` naming it."""
    name = f"example {example.get('image_id', '?')!r}"
    for key in ("image", "segment_ids", "segments_info"):
        if key not in example:
            raise ValueError(f"{name} has no {key!r}")
    image = np.asarray(example["image"])
    ids = np.asarray(example["segment_ids"])
    if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
        raise ValueError(f"{name}: image must be uint8 [H, W, 3], got {image.dtype} {image.shape}")
    if ids.shape != image.shape[:2] or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"{name}: segment_ids must be integer {image.shape[:2]}, got {ids.dtype} {ids.shape}")
    return image, ids.astype(np.int32, copy=False)


def recompute_segments(segment_ids: np.ndarray, segments_info: Sequence[Mapping], image_id=None) -> list[dict]:
    """``segments_info`` of a transformed map: the ids still present, with new area and bbox.

    Args:
      segment_ids: int ``[H, W]``, 0 = void.
      segments_info: the segments before the transform (``id``,
        ``category_id``, ``iscrowd``; other keys are kept).
      image_id: only for error messages.
    Returns:
      One dict per non-zero id present, in ascending id order, with
      ``area`` (pixels) and tight ``bbox`` ``[x, y, w, h]`` measured on the map.
    Raises:
      ValueError: an id of the map has no segment.
    """
    ids = np.asarray(segment_ids)
    by_id = {int(s["id"]): s for s in segments_info}
    n = len(by_id)
    known = np.array(sorted(by_id) + [np.iinfo(ids.dtype).max], ids.dtype)  # sentinel keeps indices in range
    # Labels 0..n-1 for the known ids, n for void / unknown: searchsorted is
    # much cheaper than np.unique's full sort on a 512 x 512 crop.
    labels = np.searchsorted(known, ids)
    hit = known[labels] == ids
    labels[~hit] = n
    stray = ~hit & (ids != 0)
    if stray.any():
        unknown = np.unique(ids[stray])
        raise ValueError(
            f"example {image_id!r}: segment ids {unknown[:10].tolist()} are in segment_ids but not in segments_info"
        )
    h, w = ids.shape
    areas = np.bincount(labels.ravel(), minlength=n + 1)
    # Occupied rows / columns per label, by counting (label, row) pairs.
    rows = np.bincount((labels * h + np.arange(h)[:, None]).ravel(), minlength=(n + 1) * h).reshape(n + 1, h) > 0
    cols = np.bincount((labels * w + np.arange(w)[None, :]).ravel(), minlength=(n + 1) * w).reshape(n + 1, w) > 0
    out = []
    for j, sid in enumerate(known[:n].tolist()):
        if areas[j] == 0:
            continue
        r = np.flatnonzero(rows[j])
        c = np.flatnonzero(cols[j])
        seg = dict(by_id[sid])
        seg.update(
            id=sid,
            area=int(areas[j]),
            bbox=[int(c[0]), int(r[0]), int(c[-1] - c[0] + 1), int(r[-1] - r[0] + 1)],
        )
        out.append(seg)
    return out


# ----------------------------------------------------------------------------
# Geometry.
# ----------------------------------------------------------------------------


def scaled_size(hw: tuple[int, int], scale: float, base_size: int = 0) -> tuple[int, int]:
    """The size after scaling so the shorter side is ``scale * base_size`` (0: the image's own)."""
    h, w = hw
    short = min(h, w)
    factor = scale * (base_size if base_size > 0 else short) / short
    return max(1, int(round(h * factor))), max(1, int(round(w * factor)))


def nearest_window(ids: np.ndarray, scaled_hw: tuple[int, int], window: tuple[int, int, int, int]) -> np.ndarray:
    """``resize_nearest(ids, scaled_hw)[y0:y0+h, x0:x0+w]`` without resizing the rest.

    ``window`` is ``(y0, x0, h, w)`` in the scaled image.
    """
    ids = np.asarray(ids)
    in_h, in_w = ids.shape[:2]
    sh, sw = scaled_hw
    y0, x0, h, w = window
    ys = np.minimum(((y0 + np.arange(h) + 0.5) * in_h / sh).astype(np.int64), in_h - 1)
    xs = np.minimum(((x0 + np.arange(w) + 0.5) * in_w / sw).astype(np.int64), in_w - 1)
    return ids[ys[:, None], xs[None, :]]


def bilinear_window(image: np.ndarray, scaled_hw: tuple[int, int], window: tuple[int, int, int, int]) -> np.ndarray:
    """The ``window`` ``(y0, x0, h, w)`` of the image resized bilinearly to ``scaled_hw``; uint8 ``[h, w, 3]``.

    Uses PIL's source ``box`` so only the window is resampled (same pixel
    centres as resizing the whole image, antialiased when shrinking).
    """
    in_h, in_w = image.shape[:2]
    sh, sw = scaled_hw
    y0, x0, h, w = window
    if (sh, sw) == (in_h, in_w):  # scale 1: a plain crop, no resampling
        return np.ascontiguousarray(image[y0 : y0 + h, x0 : x0 + w])
    fy, fx = in_h / sh, in_w / sw
    box = (x0 * fx, y0 * fy, (x0 + w) * fx, (y0 + h) * fy)
    out = Image.fromarray(np.ascontiguousarray(image)).resize((w, h), Image.BILINEAR, box=box)
    return np.asarray(out)


def random_window(scaled_hw: tuple[int, int], crop_size: tuple[int, int], rng: np.random.Generator):
    """A uniformly placed crop ``(y0, x0, h, w)``: ``crop_size`` clipped to the scaled image."""
    sh, sw = scaled_hw
    ch, cw = crop_size
    y0 = int(rng.integers(0, sh - ch + 1)) if sh > ch else 0
    x0 = int(rng.integers(0, sw - cw + 1)) if sw > cw else 0
    return y0, x0, min(sh, ch), min(sw, cw)


def color_jitter(image: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Brightness, contrast, saturation each scaled by a factor in ``[1 - strength, 1 + strength]``.

    uint8 ``[H, W, 3]`` in and out (rounded, clipped). Contrast moves pixels
    toward / away from the mean grey of the image; saturation toward / away
    from each pixel's grey (ITU-R 601 luma).
    """
    if strength <= 0:
        return image
    b, c, s = rng.uniform(1 - strength, 1 + strength, 3)
    x = image.astype(np.float32) * b
    grey = x @ np.array([0.299, 0.587, 0.114], np.float32)  # [H, W]
    x = (x - grey.mean()) * c + grey.mean()
    grey = x @ np.array([0.299, 0.587, 0.114], np.float32)
    x = grey[..., None] + (x - grey[..., None]) * s
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------
# Training.
# ----------------------------------------------------------------------------


def train_transform(
    example: Mapping,
    rng: np.random.Generator,
    *,
    crop_size: tuple[int, int],
    scale_range: tuple[float, float] = (1.0, 1.0),
    base_size: int = 0,
    hflip: bool = True,
    color_jitter_strength: float = 0.0,
) -> dict:
    """Random scale, crop (padded to ``crop_size``), flip and colour jitter of one example.

    See the module docstring for the order and conventions. Random draws, in
    this fixed order: scale, crop offset, flip, jitter.

    Args:
      example: ``image`` uint8 ``[H, W, 3]``, ``segment_ids`` int ``[H, W]``,
        ``segments_info``; other keys are passed through.
      rng: the example's generator.
      crop_size: ``(CH, CW)``, the output size.
      scale_range: ``(lo, hi)``, the scale factor is uniform in it.
      base_size: the shorter side at scale 1; 0 = the image's own.
      hflip: flip left-right with probability 1/2.
      color_jitter_strength: 0 = off; else see :func:`color_jitter`.
    Returns:
      A new example with ``image`` uint8 ``[CH, CW, 3]``, ``segment_ids``
      int32 ``[CH, CW]`` and recomputed ``segments_info``.
    """
    image, ids = check_example(example)
    lo, hi = scale_range
    scale = float(rng.uniform(lo, hi)) if hi > lo else float(lo)
    scaled = scaled_size(ids.shape, scale, base_size)
    window = random_window(scaled, crop_size, rng)
    out_image = bilinear_window(image, scaled, window)
    out_ids = nearest_window(ids, scaled, window)
    if hflip and rng.random() < 0.5:
        out_image, out_ids = out_image[:, ::-1], out_ids[:, ::-1]
    out_image = color_jitter(out_image, rng, color_jitter_strength)
    out_image, out_ids = pad_example_arrays(out_image, np.ascontiguousarray(out_ids), tuple(crop_size))
    out = dict(example)
    out.update(
        image=np.ascontiguousarray(out_image),
        segment_ids=out_ids,
        segments_info=recompute_segments(out_ids, example["segments_info"], example.get("image_id")),
    )
    return out


# ----------------------------------------------------------------------------
# Evaluation.
# ----------------------------------------------------------------------------


def eval_pad_shape(short_side: int, max_size: int, multiple: int = SIZE_MULTIPLE) -> tuple[int, int]:
    """The one padded evaluation shape for both orientations: ``(L', L')``, ``L'`` = ``max_size`` rounded up.

    COCO (800, 1333) -> (1344, 1344). ``max_size = 0`` (no limit) has no
    bounded shape: pass ``pad_shape`` to :func:`eval_transform` yourself.
    """
    if max_size <= 0:
        raise ValueError(f"eval_pad_shape needs max_size > 0 (a bound on the longer side), got {max_size}")
    if short_side > max_size:
        raise ValueError(f"short_side {short_side} is larger than max_size {max_size}")
    side = round_up(max_size, multiple)
    return side, side


def eval_transform(
    example: Mapping,
    *,
    short_side: int,
    max_size: int,
    pad_shape: tuple[int, int],
) -> tuple[np.ndarray, dict]:
    """Resize for evaluation and pad to the fixed ``pad_shape``.

    Args:
      example: ``image`` uint8 ``[H, W, 3]`` and ``image_id``
        (``segment_ids`` is not needed: ground truth stays at the original size).
      short_side, max_size: see :func:`eval_resize_shape`.
      pad_shape: ``(Hp, Wp)``, multiples of 32 (:func:`eval_pad_shape`).
    Returns:
      ``image`` uint8 ``[Hp, Wp, 3]`` (padded with :data:`PAD_COLOR`) and
      ``meta``: ``image_id``, ``original_size`` ``(H, W)``, ``valid_size``
      ``(h, w)`` (the resized image, top-left of the padded one).
    """
    hw = np.shape(example["image"])[:2]
    return resize_and_pad(example, eval_resize_shape(hw, short_side, max_size), pad_shape)


def resize_and_pad(example: Mapping, size: tuple[int, int], pad_shape: tuple[int, int]) -> tuple[np.ndarray, dict]:
    """Resize ``example["image"]`` to ``size`` (bilinear) and pad it to ``pad_shape`` (bottom / right).

    Returns the padded uint8 image ``[Hp, Wp, 3]`` and the ``meta`` of
    :func:`eval_transform` (``image_id``, ``original_size``, ``valid_size``).
    """
    image = np.asarray(example["image"])
    name = f"example {example.get('image_id', '?')!r}"
    out = resize_and_pad_image(image, size, pad_shape, PAD_COLOR, name=name)
    hw = tuple(int(x) for x in image.shape[:2])
    meta = {"image_id": example.get("image_id"), "original_size": hw, "valid_size": tuple(int(x) for x in size)}
    return out, meta


@dataclasses.dataclass(frozen=True)
class EvalGeometry:
    """How evaluation and prediction inputs are sized: every image to one padded shape.

    Two rules:

    - ``short_side > 0`` (real datasets): resize so the shorter side is
      ``short_side`` and the longer at most ``max_size``
      (:func:`eval_resize_shape`), pad to ``pad_shape``.
    - ``short_side == 0`` (the synthetic demo): fit the image into
      ``fit_size``, the size the model was trained at, and pad to it rounded
      up to a multiple of 32.

    One padded shape means one compiled program for every image.
    :meth:`preprocess` does one image, :func:`to_original` maps a prediction
    back to the original size with nearest neighbour.

    Attributes:
      short_side, max_size: the first rule's sizes (0 = the second rule).
      pad_shape: ``(Hp, Wp)``, multiples of 32.
      fit_size: the second rule's box ``(H, W)``.
    """

    short_side: int
    max_size: int
    pad_shape: tuple[int, int]
    fit_size: tuple[int, int] = (0, 0)

    @classmethod
    def from_config(cls, data) -> EvalGeometry:
        """The geometry of a :class:`pcv.config.DataConfig` (``eval_*`` fields, else ``image_size``)."""
        if data.eval_short_side > 0:
            pad = tuple(data.eval_pad_shape) or eval_pad_shape(data.eval_short_side, data.eval_max_size)
            return cls(int(data.eval_short_side), int(data.eval_max_size), tuple(int(x) for x in pad))
        h, w = (int(s) for s in data.image_size)
        return cls(0, 0, (round_up(h), round_up(w)), (h, w))

    def resized_shape(self, hw: tuple[int, int]) -> tuple[int, int]:
        """The size an image of ``hw`` is resized to before padding."""
        return resized_shape(hw, self.short_side, self.max_size, self.fit_size)

    def preprocess(self, image: np.ndarray, image_id=None) -> tuple[np.ndarray, dict]:
        """One uint8 ``[H, W, 3]`` image -> (padded uint8 ``[Hp, Wp, 3]``, ``meta``) (:func:`resize_and_pad`)."""
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
            raise ValueError(f"image {image_id!r}: expected uint8 RGB [H, W, 3], got {image.dtype} {image.shape}")
        return resize_and_pad(
            {"image": image, "image_id": image_id}, self.resized_shape(image.shape[:2]), self.pad_shape
        )

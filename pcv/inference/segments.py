"""From one image's raw result to its answer: the id map at the image's size and COCO ``segments_info``.

Host side, numpy only (no jax, nothing else of pcv but :mod:`pcv.data.resize`):
the :class:`pcv.Predictor` and exported models (:mod:`pcv.inference.bundle`)
share this code, and the bundle's own loader carries a copy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

from pcv.data.resize import to_original  # portable: inlined


def to_coco_panoptic(
    result: Mapping[str, np.ndarray],
    category_ids: Sequence[int],
    thing_mask: Sequence[bool],
    *,
    names: Sequence[str] | None = None,
    threshold: float | None = None,
) -> tuple[np.ndarray, list[dict]]:
    """One image's result -> (id map ``[H, W]`` int32, COCO ``segments_info``).

    Args:
      result: one (unbatched) output of :func:`pcv.inference.panoptic_inference`.
      category_ids: the dataset's category id of each train id.
      thing_mask: C booleans (which train ids are things).
      names: the category name of each train id (adds ``category_name``).
      threshold: the peak threshold the result was made with (for ``score``).
    Returns:
      ``id_map`` with 0 = void and ids 1, 2, ... (write it with
      :func:`pcv.data.id2rgb` for a COCO panoptic PNG), and one
      ``segments_info`` entry per id, in id order (stuff and things sorted by
      train id, then instance slot), with ``id``, ``category_id``,
      ``iscrowd`` (0), ``isthing``, ``area``, ``bbox`` (x, y, w, h) and, for
      instances:

      - ``class_score``: the mean probability of the instance's class over
        the pixels that voted for it;
      - ``peak_heat``: the height of its heatmap peak (votes gathered);
      - ``score`` = ``class_score * peak_heat / (peak_heat + threshold)``:
        confident in both its class and its votes; in [0, 1), the ranking
        score for AP (with no ``threshold``, ``class_score``).
    """
    semantic = np.asarray(result["semantic"])
    instance = np.asarray(result["instance"])
    if semantic.ndim != 2:
        raise ValueError(f"to_coco_panoptic takes one image's result; semantic has shape {semantic.shape}")
    thing_mask = np.asarray(thing_mask, bool)
    # A segment is a (train id, instance slot) pair; stuff has slot 0.
    slots = int(instance.max()) + 2
    key = np.where(semantic >= 0, (semantic.astype(np.int64) + 1) * slots + instance, 0)
    uniq, inverse = np.unique(key, return_inverse=True)
    inverse = inverse.reshape(key.shape)
    has_void = uniq[0] == 0
    id_of = np.arange(len(uniq), dtype=np.int32) + (0 if has_void else 1)  # label j -> id (void stays 0)
    id_map = id_of[inverse]
    h, w = key.shape
    n = len(uniq)
    areas = np.bincount(inverse.ravel(), minlength=n)
    rows = np.bincount((inverse * h + np.arange(h)[:, None]).ravel(), minlength=n * h).reshape(n, h) > 0
    cols = np.bincount((inverse * w + np.arange(w)[None, :]).ravel(), minlength=n * w).reshape(n, w) > 0
    scores = result.get("instance_score")
    class_probs = result.get("instance_class_prob")
    segments = []
    for j, kv in enumerate(uniq.tolist()):
        if kv == 0:
            continue
        train_id, slot = divmod(kv, slots)
        train_id -= 1
        if not 0 <= train_id < len(category_ids):
            raise ValueError(f"train id {train_id} has no category id (got {len(category_ids)} category ids)")
        r, c = np.flatnonzero(rows[j]), np.flatnonzero(cols[j])
        seg = {
            "id": int(id_of[j]),
            "category_id": int(category_ids[train_id]),
            "iscrowd": 0,
            "isthing": int(thing_mask[train_id]),
            "area": int(areas[j]),
            "bbox": [int(c[0]), int(r[0]), int(c[-1] - c[0] + 1), int(r[-1] - r[0] + 1)],
        }
        if names is not None:
            seg["category_name"] = str(names[train_id])
        if slot > 0 and scores is not None and class_probs is not None:
            heat, prob = float(np.asarray(scores)[slot - 1]), float(np.asarray(class_probs)[slot - 1])
            seg["class_score"] = round(prob, 6)
            seg["peak_heat"] = round(heat, 6)
            seg["score"] = round(prob * heat / (heat + threshold) if threshold else prob, 6)
        segments.append(seg)
    return id_map, segments


#: Result maps at the input resolution (mapped back to the original size); the rest live on the heads' map.
IMAGE_MAPS = ("semantic", "instance")


@dataclasses.dataclass
class Prediction:
    """The panoptic answer for one image.

    Attributes:
      ids: int32 ``[H, W]`` panoptic id map at the image's size, 0 = void.
      segments_info: one dict per id (:func:`to_coco_panoptic`: ``id``,
        ``category_id``, ``category_name``, ``isthing``, ``iscrowd``,
        ``area``, ``bbox``; instances also ``score``, ``class_score``,
        ``peak_heat``).
      semantic: int32 ``[H, W]`` train id per pixel, -1 void.
      instance: int32 ``[H, W]``, instance slot + 1, 0 for stuff and void.
      heatmap: ``[h, w]`` vote heatmap on the heads' map of the image (stride 4
        of the resized image, padding cropped off).
      peaks: int32 ``[N, 2]`` (y, x) on that map; boxes int32 ``[N, 4]``;
        instance_valid bool ``[N]``; instance_score ``[N]`` (peak heat).
      scale: ``(sy, sx)`` image pixels per heatmap pixel.
      meta: ``original_size``, ``valid_size`` (the resized image), ``image_id``.
    """

    ids: np.ndarray
    segments_info: list[dict]
    semantic: np.ndarray
    instance: np.ndarray
    heatmap: np.ndarray
    peaks: np.ndarray
    boxes: np.ndarray
    instance_valid: np.ndarray
    instance_score: np.ndarray
    scale: tuple[float, float]
    meta: dict

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.ids.shape)


def finish(
    result: Mapping,
    meta: Mapping,
    *,
    category_ids: Sequence[int],
    thing_mask: Sequence[bool],
    names: Sequence[str],
    threshold: float,
    stride: int,
) -> Prediction:
    """One image's raw result (maps at the padded size) -> its :class:`Prediction` at the original size."""
    maps = {key: to_original(result[key], meta) for key in IMAGE_MAPS}
    ids, segments = to_coco_panoptic({**result, **maps}, category_ids, thing_mask, names=names, threshold=threshold)
    hh, hw = (-(-int(s) // stride) for s in meta["valid_size"])
    oh, ow = meta["original_size"]
    return Prediction(
        ids=ids,
        segments_info=segments,
        semantic=maps["semantic"],
        instance=maps["instance"],
        heatmap=np.asarray(result["heatmap"])[:hh, :hw],
        peaks=np.asarray(result["peaks"]),
        boxes=np.asarray(result["boxes"]),
        instance_valid=np.asarray(result["instance_valid"]),
        instance_score=np.asarray(result["instance_score"]),
        scale=(oh / hh, ow / hw),
        meta=dict(meta),
    )

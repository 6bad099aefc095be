"""Training targets: a panoptic label -> semantic, vote and weight maps.

All maps are at the network's output stride. Downsample segment ids to that
stride with :func:`downsample_ids` (nearest neighbour; ids are never
interpolated) before calling :func:`make_targets`. The rules, per pixel:

- semantic: the train id of the pixel's segment; -1 (ignore) on void;
- vote: for a non-crowd thing, the bin of the offset (centroid - pixel),
  -1 where that offset is outside the grid's field; K (abstain) for stuff;
  -1 for crowd and void;
- weight: ``area ** -weight_power`` of the pixel's segment (area in pixels
  at target resolution); 0 on crowd and void;
- an instance's centroid: ``"mass"`` = the floor of the mean (y, x) of its
  pixels; ``"box"`` = the floor of the middle of its tight box.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from pcv.data.resize import resize_nearest
from pcv.voting.grid import VoteGrid

__all__ = ["CENTROIDS", "IGNORE", "downsample_ids", "make_targets"]

IGNORE = -1
CENTROIDS = ("mass", "box")


def downsample_ids(segment_ids: np.ndarray, stride: int) -> np.ndarray:
    """Segment ids at ``1/stride`` resolution (``ceil`` of the size), nearest neighbour."""
    h, w = np.asarray(segment_ids).shape[:2]
    return resize_nearest(segment_ids, (-(-h // stride), -(-w // stride)))


def make_targets(
    segment_ids: np.ndarray,
    segments: Sequence[Mapping],
    grid: VoteGrid,
    centroid: str = "mass",
    weight_power: float = 0.5,
) -> dict[str, np.ndarray]:
    """Build the PCV training targets for one image.

    Args:
      segment_ids: int ``[H, W]``, 0 = void, at target resolution.
      segments: mappings with ``id``, ``train_id``, ``isthing``, ``iscrowd``;
        every non-zero id in ``segment_ids`` must have one. Segments absent
        from the map (e.g. lost by downsampling) are allowed.
      grid: the voting grid (K bins; ``K`` is the abstain class).
      centroid: ``"mass"`` (floor of the mean (y, x) of the pixels) or
        ``"box"`` (floor of the middle of the tight box).
      weight_power: per-pixel weight is ``area ** -weight_power``.
    Returns:
      ``semantic`` int32 ``[H, W]`` (train id, -1 on void),
      ``votes`` int32 ``[H, W]`` (bin; K for stuff; -1 on crowd, void and
      thing pixels whose centroid lies outside the field),
      ``weights`` float32 ``[H, W]`` (0 on crowd and void).
    """
    if centroid not in CENTROIDS:
        raise ValueError(f"centroid must be one of {CENTROIDS}, got {centroid!r}")
    ids = np.asarray(segment_ids)
    if ids.ndim != 2 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"segment_ids must be an integer [H, W] map, got {ids.dtype} {ids.shape}")
    h, w = ids.shape
    semantic = np.full((h, w), IGNORE, np.int32)
    votes = np.full((h, w), IGNORE, np.int32)
    weights = np.zeros((h, w), np.float32)

    by_id = {}
    for i, seg in enumerate(segments):
        for key in ("id", "train_id", "isthing", "iscrowd"):
            if key not in seg:
                raise ValueError(f"segment {i} ({dict(seg)!r}) has no {key!r}")
        sid = int(seg["id"])
        if sid == 0:
            raise ValueError(f"segment {i} has id 0, which is reserved for void")
        if sid in by_id:
            raise ValueError(f"segment id {sid} appears twice in segments")
        by_id[sid] = seg

    present, inverse = np.unique(ids, return_inverse=True)
    inverse = inverse.reshape(h, w)
    unknown = [int(s) for s in present if s != 0 and int(s) not in by_id]
    if unknown:
        raise ValueError(f"segment ids {unknown} are in the label map but not in segments")
    areas = np.bincount(inverse.ravel(), minlength=len(present))
    ys, xs = np.indices((h, w))
    sum_y = np.bincount(inverse.ravel(), ys.ravel(), minlength=len(present))
    sum_x = np.bincount(inverse.ravel(), xs.ravel(), minlength=len(present))

    for j, sid in enumerate(present):
        if sid == 0:
            continue
        seg = by_id[int(sid)]
        mask = inverse == j
        semantic[mask] = int(seg["train_id"])
        if seg["iscrowd"]:
            continue
        weights[mask] = float(areas[j]) ** -weight_power
        if not seg["isthing"]:
            votes[mask] = grid.num_bins
            continue
        py, px = ys[mask], xs[mask]
        if centroid == "mass":
            # Integer floor division of exact sums: no float rounding at .0 boundaries.
            cy, cx = int(sum_y[j]) // int(areas[j]), int(sum_x[j]) // int(areas[j])
        else:
            cy, cx = (int(py.min()) + int(py.max())) // 2, (int(px.min()) + int(px.max())) // 2
        votes[mask] = grid.bin_of_offset(np.stack([cy - py, cx - px], -1))
    return {"semantic": semantic, "votes": votes, "weights": weights}

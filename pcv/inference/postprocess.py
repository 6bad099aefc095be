"""Inference: semantic and vote logits -> a panoptic map.

The steps (numbered alike in :func:`_infer_one`):

1. softmax of both heads; pixels whose most likely vote class is abstain
   cast no votes;
2. the remaining bin probabilities are aggregated into the heatmap
   (:func:`pcv.voting.aggregate_votes`);
3. peak regions: 4-connected components of ``heat >= threshold``, each
   summarised by its tight box;
4. backprojection with the query filter: a pixel joins a region when the
   cell of the bin it voted for (or of any of its top-T bins, the earliest
   rank winning) intersects the region's box;
5. an instance's class: the thing class with the highest mean semantic
   probability over its pixels;
6. overlaps: a pixel claimed by several instances keeps those with the best
   rank, then those whose class agrees with its semantic argmax, then the
   one whose peak is nearest;
7. stuff: unclaimed pixels of a stuff class form one segment per class;
   segments under ``min_stuff_area`` and unclaimed thing pixels are void;
8. the map is resized to the input size with nearest neighbour.

With ``InferenceConfig.full_resolution`` steps 6 and 7 run at the output
size instead, and nothing is resized: the heatmap, the peak regions and the
instances' classes and scores are those of the heads' map (1-5), but every
output pixel gets its own semantic class and vote from the bilinearly
upsampled logits (chosen among what its four map neighbours rank first, see
:func:`_fine_votes_and_labels`), and joins an instance by the query filter
at its own position (:func:`pcv.voting.query_ranks`: the grid's cells moved
to a fractional map position, i.e. scaled by the stride in output pixels).
Mask edges then follow the logits between map pixels instead of the
stride-4 staircase.

Everything up to the panoptic map runs on the accelerator under ``jit`` with
static shapes: at most ``max_instances`` instances, with a validity mask; no
host round trips. :func:`to_coco_panoptic` is the host-side wrapper that
turns one result into a PNG-ready id map and COCO ``segments_info``.

Legend: H, W the heads' map (stride 4); C semantic classes; K vote bins
(the vote head has K + 1 classes, the last is abstain); N max instances;
T top-T votes per pixel.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from pcv.config import InferenceConfig
from pcv.inference.segments import to_coco_panoptic
from pcv.voting.aggregation import heatmap
from pcv.voting.backprojection import cell_bounds, ranks_in
from pcv.voting.grid import VoteGrid

VOID = -1

__all__ = ["InferenceConfig", "VOID", "flip_tta", "mirror_outputs", "panoptic_inference", "to_coco_panoptic"]


# ----------------------------------------------------------------------------
# Small on-device building blocks.
# ----------------------------------------------------------------------------


def resize_map_nearest(x, out_hw: tuple[int, int]):
    """Nearest-neighbour resize of ``[H, W, ...]`` with half-pixel centres.

    Output pixel i samples input ``floor((i + 0.5) * H / H_out)``; the same
    rule as :func:`pcv.data.resize.resize_nearest`. Used for ids: never blends.
    """
    h, w = x.shape[:2]
    oh, ow = out_hw
    if (oh, ow) == (h, w):
        return x
    ys = jnp.minimum(((jnp.arange(oh) + 0.5) * (h / oh)).astype(jnp.int32), h - 1)
    xs = jnp.minimum(((jnp.arange(ow) + 0.5) * (w / ow)).astype(jnp.int32), w - 1)
    # Two 1-D takes: a 2-D fancy index would build an [H_out, W_out, 2] index map.
    return jnp.take(jnp.take(x, ys, axis=0), xs, axis=1)


def connected_components(mask):
    """4-connected components of a boolean ``[H, W]`` map, on device.

    Returns int32 ``[H, W]``: for foreground pixels the flat index (y * W + x)
    of the smallest pixel of their component, -1 on background. Min-label
    propagation with pointer jumping, iterated to convergence.
    """
    h, w = mask.shape
    big = h * w
    idx = jnp.arange(big, dtype=jnp.int32).reshape(h, w)
    init = jnp.where(mask, idx, big)

    def step(labels):
        p = jnp.pad(labels, 1, constant_values=big)
        m = jnp.minimum(
            jnp.minimum(labels, jnp.minimum(p[:-2, 1:-1], p[2:, 1:-1])),
            jnp.minimum(p[1:-1, :-2], p[1:-1, 2:]),
        )
        m = jnp.where(mask, m, big)
        # A label is the index of a pixel of the same component whose own label
        # is no larger, so following it twice only shortens the path.
        flat = m.reshape(-1)
        for _ in range(2):
            flat = jnp.minimum(flat, jnp.take(flat, jnp.minimum(flat, big - 1)))
        return jnp.where(mask, flat.reshape(h, w), big)

    def cond(state):
        labels, prev = state
        return jnp.any(labels != prev)

    def body(state):
        labels, _ = state
        return step(labels), labels

    labels, _ = jax.lax.while_loop(cond, body, (step(init), init))
    return jnp.where(mask, labels, -1)


def peak_regions(heat, threshold: float, max_instances: int):
    """Thresholded peak regions of a heatmap, the strongest ``max_instances`` of them.

    Args:
      heat: ``[H, W]``.
    Returns:
      dict with ``boxes`` int32 ``[N, 4]`` inclusive (y0, x0, y1, x1),
      ``peaks`` int32 ``[N, 2]`` (y, x) of each region's maximum,
      ``scores`` ``[N]`` the region's maximum heat, ``valid`` bool ``[N]``,
      ``labels`` int32 ``[H, W]`` (component root index, -1 background),
      ordered by decreasing score; invalid slots hold zeros.
    """
    h, w = heat.shape
    big = h * w
    labels = connected_components(heat >= threshold)
    fg = labels >= 0
    seg = jnp.where(fg, labels, big).reshape(-1)  # background -> a dump segment
    flat_heat = heat.reshape(-1)
    ys, xs = (a.reshape(-1) for a in jnp.indices((h, w), dtype=jnp.int32))
    n_seg = big + 1
    region_max = jax.ops.segment_max(flat_heat, seg, n_seg)[:big]
    is_root = seg == jnp.arange(big)  # a component's label is its smallest pixel
    score_of_root = jnp.where(is_root, region_max, -jnp.inf)
    k = min(max_instances, big)
    scores, roots = jax.lax.top_k(score_of_root, k)
    valid = jnp.isfinite(scores)
    y0 = jax.ops.segment_min(ys, seg, n_seg)[roots]
    y1 = jax.ops.segment_max(ys, seg, n_seg)[roots]
    x0 = jax.ops.segment_min(xs, seg, n_seg)[roots]
    x1 = jax.ops.segment_max(xs, seg, n_seg)[roots]
    at_max = flat_heat == region_max[jnp.minimum(seg, big - 1)]
    peak_idx = jax.ops.segment_min(jnp.where(at_max, jnp.arange(big, dtype=jnp.int32), big), seg, n_seg)[roots]
    boxes = jnp.stack([y0, x0, y1, x1], -1)
    peaks = jnp.stack([peak_idx // w, peak_idx % w], -1)
    pad = max_instances - k
    if pad:
        boxes, peaks = (jnp.pad(a, ((0, pad), (0, 0))) for a in (boxes, peaks))
        scores = jnp.pad(scores, (0, pad), constant_values=-jnp.inf)
        valid = jnp.pad(valid, (0, pad))
    zero = ~valid[:, None]
    return {
        "boxes": jnp.where(zero, 0, boxes).astype(jnp.int32),
        "peaks": jnp.where(zero, 0, peaks).astype(jnp.int32),
        "scores": jnp.where(valid, scores, 0.0),
        "valid": valid,
        "labels": labels,
    }


# ----------------------------------------------------------------------------
# The whole post-processing.
# ----------------------------------------------------------------------------


def _infer_one(
    sem_logits, vote_logits, grid: VoteGrid, thing_mask: np.ndarray, config: InferenceConfig, out_hw, dynamic
):
    h, w, c = sem_logits.shape
    k = grid.num_bins
    n = config.max_instances
    sem_logits = sem_logits.astype(jnp.float32)
    vote_logits = vote_logits.astype(jnp.float32)

    # 1. Softmax; abstaining pixels (argmax is the abstain class) cast no votes.
    # The K + 1 channels are kept whole: slicing off abstain would copy the map.
    top = jnp.argmax(vote_logits, -1).astype(jnp.int32)  # [H, W]
    abstain = top == k
    vmax = vote_logits.max(-1, keepdims=True)
    log_z = vmax + jnp.log(jnp.exp(vote_logits - vmax).sum(-1, keepdims=True))
    # Materialised once (recomputing exp inside every shifted read is slower), and
    # written as one expression so the exponentials are not stored twice.
    probs = jax.lax.optimization_barrier(
        jnp.where(abstain[..., None], 0.0, jnp.exp(vote_logits - log_z))
    )  # [H, W, K + 1]

    # 2. Heatmap (the abstain channel is not read).
    heat = heatmap(probs[None], grid, config.method)[0]

    # 3. Peak regions.
    threshold = config.threshold if dynamic is None else dynamic["threshold"]
    regions = peak_regions(heat, threshold, n)
    valid = regions["valid"]

    # 4. Backprojection with the top-T bins of voting pixels.
    # top_bins: the best T of the K bins, abstain aside (for T = 1 at the map,
    # the argmax serves: where it is abstain the pixel casts no vote anyway).
    is_bin = jnp.arange(k + 1) < k
    if config.top_t > 1:
        _, top_bins = jax.lax.top_k(jnp.where(is_bin, vote_logits, -jnp.inf), config.top_t)
    elif config.full_resolution:
        top_bins = jnp.argmax(jnp.where(is_bin, vote_logits, -jnp.inf), -1)[..., None]
    else:
        top_bins = top[..., None]
    top_bins = top_bins.astype(jnp.int32)
    vote_bins = jnp.where(abstain[..., None], -1, top_bins)
    ys, xs = jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32)
    bounds = cell_bounds(vote_bins, ys, xs, grid)  # the voted cells (pcv.voting.backproject's test)
    ranks = ranks_in(bounds, regions["boxes"])  # [N, H, W]
    ranks = jnp.where(valid[:, None, None], ranks, -1)
    claimed = ranks >= 0

    # 5. Instance class: the thing class with the highest mean semantic
    # probability over the instance's pixels. The overlap rule (6) needs the
    # class, so "the instance's pixels" are all that backproject to it, before
    # overlaps are resolved.
    sem_probs = jax.nn.softmax(sem_logits, -1).reshape(h * w, c)
    things = np.flatnonzero(thing_mask)
    if things[-1] - things[0] + 1 == len(things):
        # Contiguous thing ids (COCO, Cityscapes): a slice, no gather copy.
        lo, cols = int(things[0]), sem_probs[:, things[0] : things[-1] + 1]
    else:
        lo, cols = 0, sem_probs  # all columns; stuff masked out below
    summed = jnp.dot(claimed.reshape(n, h * w).astype(jnp.float32), cols, precision="highest")  # [N, C']
    summed = jnp.where(jnp.asarray(thing_mask[lo : lo + cols.shape[1]]), summed, -jnp.inf)
    inst_class = (lo + jnp.argmax(summed, -1)).astype(jnp.int32)  # [N]
    claimed_count = jnp.maximum(claimed.reshape(n, h * w).sum(-1), 1).astype(jnp.float32)
    class_prob = summed.max(-1) / claimed_count  # [N] mean probability of the chosen class

    # 6-7 at the heads' map, then resized (8); or at the output size directly.
    sem_label = jnp.argmax(sem_logits, -1).astype(jnp.int32)  # [H, W]
    min_stuff_area = config.min_stuff_area if dynamic is None else dynamic["min_stuff_area"]
    if config.full_resolution:
        rows, cols = _axis_samples(out_hw[0], h), _axis_samples(out_hw[1], w)
        fine_bins, fine_label = _fine_votes_and_labels(sem_logits, vote_logits, top_bins, sem_label, rows, cols, k)
        fine_bounds = cell_bounds(fine_bins, rows[0], cols[0], grid)
        maps = _resolve(fine_bounds, fine_label, rows[0], cols[0], regions, inst_class, thing_mask, 1.0, min_stuff_area)
    else:
        area_scale = (out_hw[0] * out_hw[1]) / (h * w)
        maps = _resolve(bounds, sem_label, ys, xs, regions, inst_class, thing_mask, area_scale, min_stuff_area)
        maps = {key: resize_map_nearest(maps[key], out_hw) if key != "counts" else maps[key] for key in maps}
    inst_valid = valid & (maps["counts"] > 0)

    return {
        "semantic": maps["semantic"],
        "instance": maps["instance"],
        "instance_class": jnp.where(inst_valid, inst_class, VOID),
        "instance_valid": inst_valid,
        "instance_score": jnp.where(inst_valid, regions["scores"], 0.0),
        "instance_class_prob": jnp.where(inst_valid, class_prob, 0.0),
        "boxes": regions["boxes"],
        "peaks": regions["peaks"],
        "heatmap": heat,
    }


def _resolve(bounds, sem_label, ys, xs, regions, inst_class, thing_mask, area_scale, min_stuff_area):
    """Steps 6 and 7 for pixels at rows ``ys``, columns ``xs`` (in heads' map pixels).

    ``bounds``: the pixels' voted cells (:func:`pcv.voting.cell_bounds`),
    ``sem_label`` ``[H', W']`` their semantic argmax. Overlaps: of the
    instances a pixel's cells meet, the lexicographically smallest (rank,
    disagreement with the pixel's semantic class, squared distance to the
    peak, slot) owns it, i.e. the best rank, then agreement, then the nearest
    peak, then the lowest slot. One pass per valid instance (they are the
    first slots: regions are ordered by score), keeping each pixel's best so
    far, so memory and time follow the instances found, not ``max_instances``.
    Returns ``semantic``, ``instance`` maps and ``counts`` ``[N]`` (pixels
    each instance keeps).
    """
    boxes, peaks, valid = regions["boxes"], regions["peaks"].astype(jnp.float32), regions["valid"]
    n = boxes.shape[0]
    c = len(thing_mask)
    big = jnp.iinfo(jnp.int32).max

    def visit(i, state):
        best, best_dist, owner = state
        rank = ranks_in(bounds, jax.lax.dynamic_slice_in_dim(boxes, i, 1))[0]
        order = jnp.where(rank >= 0, 2 * rank + (inst_class[i] != sem_label).astype(jnp.int32), big)
        dist = (ys[:, None] - peaks[i, 0]) ** 2 + (xs[None, :] - peaks[i, 1]) ** 2
        better = (order < best) | ((order == best) & (dist < best_dist))
        better = better & (order < big) & valid[i]
        return jnp.where(better, order, best), jnp.where(better, dist, best_dist), jnp.where(better, i, owner)

    zero = sem_label * 0  # derived from the data, so it varies like it under shard_map
    init = (zero + big, zero.astype(jnp.float32) + jnp.inf, zero - 1)
    _, _, instance = jax.lax.fori_loop(0, valid.sum(), visit, init)
    owned = instance >= 0
    counts = jnp.zeros(n + 1, jnp.int32).at[jnp.where(owned, instance, n).reshape(-1)].add(1)[:n]

    # 7. Stuff: unclaimed pixels of a stuff class, one segment per class, small
    # ones void; thing pixels claimed by no instance are void.
    stuff_mask = jnp.asarray(~np.asarray(thing_mask, bool))
    is_stuff = ~owned & stuff_mask[sem_label]
    stuff_area = jnp.zeros(c + 1, jnp.int32).at[jnp.where(is_stuff, sem_label, c).reshape(-1)].add(1)[:c]
    stuff_ok = (stuff_area * area_scale >= min_stuff_area) & (stuff_area > 0)
    is_stuff = is_stuff & stuff_ok[sem_label]
    semantic = jnp.where(owned, inst_class[jnp.maximum(instance, 0)], jnp.where(is_stuff, sem_label, VOID))
    return {"semantic": semantic, "instance": jnp.where(owned, instance + 1, 0), "counts": counts}


def _axis_samples(n_out: int, n_in: int):
    """Where the pixels of an axis of ``n_out`` pixels sit on one of ``n_in`` (static numpy).

    Half-pixel centres: output pixel i is at ``u = (i + 1/2) n_in / n_out -
    1/2`` input pixels. Bilinear interpolation reads input pixels ``i0 =
    floor(u')`` and ``i1 = min(i0 + 1, n_in - 1)`` with weight ``u' - i0`` on
    ``i1``, where ``u'`` is u clamped to ``[0, n_in - 1]`` (edges repeat).
    Returns ``(u, i0, i1, weight)``.
    """
    u = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    clamped = np.clip(u, 0, n_in - 1)
    i0 = np.floor(clamped).astype(np.int32)
    i1 = np.minimum(i0 + 1, n_in - 1).astype(np.int32)
    return u.astype(np.float32), i0, i1, (clamped - i0).astype(np.float32)


def _interpolate_nominated(logits, nominated, rows, cols):
    """Bilinearly interpolated logits of the channels a pixel's four map neighbours nominate.

    Args:
      logits: ``[H, W, D]``.
      nominated: int ``[H, W, M]``, channels each map pixel puts forward.
      rows, cols: :func:`_axis_samples` of the output's two axes.
    Returns:
      ``(candidates, scores)``, ``[H', W', 4M]`` each: the four neighbours'
      nominations (the top-left neighbour's first), and each candidate's
      logit interpolated at the output pixel.
    """
    h, w, d = logits.shape
    corners = _corners(rows, cols)
    candidates = jnp.concatenate([_at(nominated, ya, xa) for ya, xa, _ in corners], -1)
    flat = logits.reshape(-1)
    scores = 0.0
    for ya, xa, weight in corners:
        base = (jnp.asarray(ya)[:, None, None] * w + jnp.asarray(xa)[None, :, None]) * d
        scores = scores + weight[..., None] * jnp.take(flat, base + candidates)
    return candidates, scores


def _corners(rows, cols):
    """The four map neighbours of every output pixel: ``[(rows, columns, weight [H', W'])]``, top-left first."""
    (_, y0, y1, wy), (_, x0, x1, wx) = rows, cols
    wy, wx = jnp.asarray(wy)[:, None], jnp.asarray(wx)[None, :]
    return [(y0, x0, (1 - wy) * (1 - wx)), (y0, x1, (1 - wy) * wx), (y1, x0, wy * (1 - wx)), (y1, x1, wy * wx)]


def _at(a, ys, xs):
    """``a[ys][:, xs]`` for 1-D index arrays: the map read at the output's rows and columns."""
    return jnp.take(jnp.take(a, ys, 0), xs, 1)


def _bilinear(plane, rows, cols):
    """Bilinear resize of ``[H, W]`` to the output of :func:`_axis_samples` ``rows``, ``cols``."""
    return sum(weight * _at(plane, ya, xa) for ya, xa, weight in _corners(rows, cols))


def _fine_votes_and_labels(sem_logits, vote_logits, top_bins, sem_label, rows, cols, k: int):
    """Top-T vote bins (-1 = abstain) and semantic class of every output pixel.

    Each is the choice the bilinearly upsampled logits make among the
    candidates the pixel's four map neighbours nominate (their top-T bins,
    their semantic argmax); a pixel abstains where the upsampled margin of
    the abstain logit over each map pixel's best bin logit is positive. On
    the map's own pixels this is the map's choice, ties included.
    """
    t = top_bins.shape[-1]
    bins, scores = _interpolate_nominated(vote_logits, top_bins, rows, cols)  # [H', W', 4T]
    if t > 1:  # a bin nominated twice counts once
        m = bins.shape[-1]
        earlier = np.tril(np.ones((m, m), bool), -1)  # earlier[j, i]: i < j
        repeated = ((bins[..., :, None] == bins[..., None, :]) & earlier).any(-1)
        scores = jnp.where(repeated, -jnp.inf, scores)
    _, pick = jax.lax.top_k(scores, t)
    fine_bins = jnp.take_along_axis(bins, pick, -1)
    # Whether to vote at all is decided apart from which bin: by the upsampled
    # margin of abstain over the pixel's best bin (neighbouring map pixels vote
    # for neighbouring bins, so one bin's upsampled logit fades between them).
    best_bin = jnp.take_along_axis(vote_logits, top_bins[..., :1], -1)[..., 0]
    abstain = _bilinear(vote_logits[..., k] - best_bin, rows, cols) > 0
    fine_bins = jnp.where(abstain[..., None], -1, fine_bins)
    labels, label_scores = _interpolate_nominated(sem_logits, sem_label[..., None], rows, cols)
    fine_label = jnp.take_along_axis(labels, jnp.argmax(label_scores, -1)[..., None], -1)[..., 0]
    return fine_bins, fine_label


def panoptic_inference(
    sem_logits,
    vote_logits,
    grid: VoteGrid,
    thing_mask: Sequence[bool],
    config: InferenceConfig = InferenceConfig(),
    output_size: tuple[int, int] | None = None,
    *,
    threshold=None,
    min_stuff_area=None,
):
    """Logits -> panoptic prediction, on device (jit-able, static shapes).

    Args:
      sem_logits: ``[(B,) H, W, C]``.
      vote_logits: ``[(B,) H, W, K + 1]``, the last channel is abstain.
      grid: the voting grid (K bins).
      thing_mask: C booleans, True for thing classes (static).
      config: post-processing settings (static).
      output_size: ``(H_out, W_out)`` of the returned maps (the input image
        size); default the heads' map size.
      threshold, min_stuff_area: replace the config's values with scalars
        that may be traced (calibration maps one compiled program over many
        settings with ``jax.vmap``); the same answers as the config's (in
        another compiled program the heatmap may differ by float rounding).
    Returns:
      dict of arrays (with the leading B when given):
      ``semantic`` int32 ``[H_out, W_out]`` train id, -1 void;
      ``instance`` int32 ``[H_out, W_out]``, n + 1 for instance slot n, 0 else;
      ``instance_class`` int32 ``[N]`` (-1 for invalid slots);
      ``instance_valid`` bool ``[N]``; ``instance_score`` ``[N]`` (peak heat);
      ``instance_class_prob`` ``[N]`` (mean probability of the instance's
      class over the pixels that backproject to it);
      ``boxes`` int32 ``[N, 4]`` and ``peaks`` int32 ``[N, 2]`` at map
      resolution; ``heatmap`` ``[H, W]``.
    """
    sem_logits = jnp.asarray(sem_logits)
    vote_logits = jnp.asarray(vote_logits)
    thing_mask = np.asarray(thing_mask, bool)
    if sem_logits.shape[:-1] != vote_logits.shape[:-1] or sem_logits.ndim not in (3, 4):
        raise ValueError(
            f"sem_logits {sem_logits.shape} and vote_logits {vote_logits.shape} must both be "
            "[(B,) H, W, channels] with the same leading shape"
        )
    if vote_logits.shape[-1] != grid.num_bins + 1:
        raise ValueError(
            f"vote_logits has {vote_logits.shape[-1]} channels; the grid needs K + 1 = {grid.num_bins + 1}"
        )
    if thing_mask.shape != (sem_logits.shape[-1],):
        raise ValueError(f"thing_mask has {thing_mask.shape[0]} entries for {sem_logits.shape[-1]} classes")
    if not thing_mask.any():
        raise ValueError("thing_mask marks no thing class; PCV needs at least one")
    h, w = sem_logits.shape[-3:-1]
    out_hw = tuple(output_size) if output_size is not None else (h, w)
    dynamic = None
    if threshold is not None or min_stuff_area is not None:
        dynamic = {
            "threshold": jnp.asarray(config.threshold if threshold is None else threshold, jnp.float32),
            "min_stuff_area": jnp.asarray(config.min_stuff_area if min_stuff_area is None else min_stuff_area),
        }
    return _infer(sem_logits, vote_logits, dynamic, grid, tuple(bool(t) for t in thing_mask), config, out_hw)


@partial(jax.jit, static_argnums=(3, 4, 5, 6))
def _infer(sem_logits, vote_logits, dynamic, grid, thing_mask, config, out_hw):
    # Jitted even when called eagerly; under an outer jit this simply inlines.
    fn = lambda s, v: _infer_one(s, v, grid, np.asarray(thing_mask), config, out_hw, dynamic)  # noqa: E731
    if sem_logits.ndim == 4:
        fn = jax.vmap(fn)
    return fn(sem_logits, vote_logits)


# ----------------------------------------------------------------------------
# Horizontal-flip test-time augmentation.
# ----------------------------------------------------------------------------


def mirror_outputs(outputs: Mapping[str, jax.Array], grid: VoteGrid) -> dict[str, jax.Array]:
    """Network outputs of a left-right mirrored image, taken back to the image's frame.

    The maps are flipped along W. A vote for bin k at a mirrored pixel points
    at the mirrored offset, i.e. at bin ``grid.mirror_permutation()[k]`` in
    the original frame; the abstain channel (K) stays where it is. The
    operation is pure re-indexing and its own inverse.

    Args:
      outputs: ``semantic`` ``[..., H, W, C]`` and ``votes`` ``[..., H, W,
        K + 1]`` (logits or log-probabilities).
      grid: the voting grid (K bins).
    Returns:
      the same keys, mirrored.
    """
    perm = np.asarray(grid.mirror_permutation())
    if sorted(perm.tolist()) != list(range(grid.num_bins)):
        raise ValueError(f"{grid!r}: mirror_permutation is not a permutation of the {grid.num_bins} bins")
    votes = jnp.asarray(outputs["votes"])
    if votes.shape[-1] != grid.num_bins + 1:
        raise ValueError(f"votes has {votes.shape[-1]} channels; the grid needs K + 1 = {grid.num_bins + 1}")
    # new[..., perm[j]] = old[..., j]  <=>  new = old[..., inverse(perm)].
    channels = np.append(np.argsort(perm), grid.num_bins).astype(np.int32)
    return {
        "semantic": jnp.flip(jnp.asarray(outputs["semantic"]), axis=-2),
        "votes": jnp.take(jnp.flip(votes, axis=-2), jnp.asarray(channels), axis=-1),
    }


def mean_probs_log(log_p, log_q):
    """``log((p + q) / 2)`` from log-probabilities ``log_p``, ``log_q``, computed stably.

    Elementwise and symmetric in its arguments bit for bit (``logaddexp``
    is), which makes the flip-averaged prediction exactly mirror-equivariant.
    """
    return jnp.logaddexp(log_p, log_q) - jnp.log(jnp.asarray(2.0, log_p.dtype))


def flip_tta(apply_fn, images, grid: VoteGrid) -> dict[str, jax.Array]:
    """Horizontal-flip test-time augmentation of the PCV heads (jit-able).

    Runs ``apply_fn`` on the images and their mirrors in one batch, takes the
    mirrors' outputs back to the image frame (:func:`mirror_outputs`: maps
    flipped, vote bins permuted, abstain kept) and averages the two
    predictions as *probabilities*.

    Why probabilities and not logits: vote aggregation is linear in the bin
    probabilities, so averaging probabilities makes the TTA heatmap the mean
    of the two passes' heatmaps (each pass contributes its evidence as it
    would alone), and the result is a proper mixture of two distributions.
    Averaging logits would instead multiply the distributions (a product of
    experts), sharpening bins the passes agree on and letting one confident
    pass veto the other. The returned values are log-probabilities, which
    :func:`panoptic_inference` takes like logits (softmax of a log-probability
    vector is the vector's probabilities).

    Log-softmax is applied *before* mirroring, so the result for a mirrored
    image is exactly the mirror of the result for the image.

    Args:
      apply_fn: ``images [B, H, W, 3] -> {"semantic": [B, h, w, C], "votes":
        [B, h, w, K + 1]}`` logits, each example computed independently of
        the others (eval mode).
      images: ``[B, H, W, 3]``.
      grid: the voting grid of the vote head.
    Returns:
      ``{"semantic": [B, h, w, C], "votes": [B, h, w, K + 1]}``
      log-probabilities.
    """
    images = jnp.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"flip_tta takes a batch of images [B, H, W, 3], got shape {images.shape}")
    b = images.shape[0]
    both = apply_fn(jnp.concatenate([images, jnp.flip(images, axis=2)], axis=0))
    plain = {k: jax.nn.log_softmax(both[k][:b].astype(jnp.float32), -1) for k in ("semantic", "votes")}
    mirrored = {k: jax.nn.log_softmax(both[k][b:].astype(jnp.float32), -1) for k in ("semantic", "votes")}
    mirrored = mirror_outputs(mirrored, grid)
    return {k: mean_probs_log(plain[k], mirrored[k]) for k in ("semantic", "votes")}

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
from pcv.portable import to_coco_panoptic
from pcv.voting.aggregation import heatmap
from pcv.voting.backprojection import backproject
from pcv.voting.grid import VoteGrid

VOID = -1

__all__ = ["InferenceConfig", "VOID", "flip_tta", "mirror_outputs", "panoptic_inference", "to_coco_panoptic"]


# ----------------------------------------------------------------------------
# Small on-device building blocks.
# ----------------------------------------------------------------------------


def resize_nearest(x, out_hw: tuple[int, int]):
    """Nearest-neighbour resize of ``[H, W, ...]`` with half-pixel centres.

    Output pixel i samples input ``floor((i + 0.5) * H / H_out)``; the same
    rule as :func:`pcv.targets.resize_nearest`. Used for ids: never blends.
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
    if config.top_t == 1:
        vote_bins = top[..., None]
    else:
        is_bin = jnp.arange(k + 1) < k
        _, vote_bins = jax.lax.top_k(jnp.where(is_bin, vote_logits, -jnp.inf), config.top_t)
    vote_bins = jnp.where(abstain[..., None], -1, vote_bins)
    ranks = backproject(vote_bins, regions["boxes"], grid)  # [N, H, W]
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

    # 6. Overlaps: best rank, then agreement with the pixel's semantic argmax,
    # then the nearest peak; the lowest slot wins remaining ties.
    sem_label = jnp.argmax(sem_logits, -1).astype(jnp.int32)  # [H, W]
    big_rank = jnp.iinfo(jnp.int32).max
    r = jnp.where(claimed, ranks, big_rank)
    keep = claimed & (r == r.min(0))
    disagree = (inst_class[:, None, None] != sem_label[None]).astype(jnp.int32)
    d = jnp.where(keep, disagree, 2)
    keep = keep & (d == d.min(0))
    ys = jnp.arange(h, dtype=jnp.int32)[None, :, None]
    xs = jnp.arange(w, dtype=jnp.int32)[None, None, :]
    py, px = regions["peaks"][:, 0, None, None], regions["peaks"][:, 1, None, None]
    dist = jnp.where(keep, (ys - py) ** 2 + (xs - px) ** 2, big_rank)
    owner = jnp.argmin(dist, 0).astype(jnp.int32)  # [H, W]
    owned = keep.any(0)
    instance = jnp.where(owned, owner, -1)
    counts = jnp.zeros(n + 1, jnp.int32).at[jnp.where(owned, owner, n)].add(1)[:n]
    inst_valid = valid & (counts > 0)

    # 7. Stuff: unclaimed pixels of a stuff class, one segment per class, small
    # ones void; thing pixels claimed by no instance are void.
    stuff_mask = jnp.asarray(~np.asarray(thing_mask, bool))
    is_stuff = ~owned & stuff_mask[sem_label]
    stuff_area = jnp.zeros(c + 1, jnp.int32).at[jnp.where(is_stuff, sem_label, c)].add(1)[:c]
    area_scale = (out_hw[0] * out_hw[1]) / (h * w)
    min_stuff_area = config.min_stuff_area if dynamic is None else dynamic["min_stuff_area"]
    stuff_ok = (stuff_area * area_scale >= min_stuff_area) & (stuff_area > 0)
    is_stuff = is_stuff & stuff_ok[sem_label]
    semantic = jnp.where(owned, inst_class[jnp.maximum(instance, 0)], jnp.where(is_stuff, sem_label, VOID))
    instance_map = jnp.where(owned, instance + 1, 0)

    # 8. Back to the input size, nearest neighbour.
    return {
        "semantic": resize_nearest(semantic, out_hw),
        "instance": resize_nearest(instance_map, out_hw),
        "instance_class": jnp.where(inst_valid, inst_class, VOID),
        "instance_valid": inst_valid,
        "instance_score": jnp.where(inst_valid, regions["scores"], 0.0),
        "instance_class_prob": jnp.where(inst_valid, class_prob, 0.0),
        "boxes": regions["boxes"],
        "peaks": regions["peaks"],
        "heatmap": heat,
    }


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

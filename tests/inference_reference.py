"""The inference as it was before its speed-ups (pcv 0.2.0, pcv/inference.py ``_infer_one``), kept to test against.

Not a test module. The current code must give the same outputs; see
tests/test_inference.py::test_the_fast_path_equals_the_reference.
"""

import jax
import jax.numpy as jnp
import numpy as np

from pcv.config import InferenceConfig
from pcv.inference import VOID, peak_regions, resize_nearest
from pcv.voting.aggregation import heatmap
from pcv.voting.backprojection import backproject
from pcv.voting.grid import VoteGrid


def reference_infer_one(
    sem_logits, vote_logits, grid: VoteGrid, thing_mask: np.ndarray, config: InferenceConfig, out_hw
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
    regions = peak_regions(heat, config.threshold, n)
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
    stuff_ok = (stuff_area * area_scale >= config.min_stuff_area) & (stuff_area > 0)
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

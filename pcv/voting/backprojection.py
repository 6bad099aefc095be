"""Backprojection with the query filter: which pixels voted for a peak region.

Pixel p joins the instance of box B if the cell of the bin it voted for
intersects B. Equivalently: some centre c in B has
``query_mask[R + (p - c)] == vote_bin[p]``, i.e. the pixel's vote covers c.
With top-T votes, the earliest rank whose cell intersects B wins.
"""

from __future__ import annotations

import jax.numpy as jnp

from pcv.voting.grid import VoteGrid


def backproject(vote_bins, boxes, grid: VoteGrid):
    """Backproject peak-region boxes onto the pixels that voted for them.

    Args:
      vote_bins: int ``[H, W]`` (top-1) or ``[H, W, T]`` (top-T, best first);
        -1 = abstain / no vote.
      boxes: int ``[N, 4]`` inclusive ``(y0, x0, y1, x1)`` in pixels of the
        same map.
      grid: the voting grid.
    Returns:
      int32 ``[N, H, W]``: the rank (0..T-1) of the first of the pixel's bins
      whose cell intersects box n, or -1.
    """
    vote_bins = jnp.asarray(vote_bins)
    boxes = jnp.asarray(boxes)
    if vote_bins.ndim == 2:
        vote_bins = vote_bins[..., None]
    if vote_bins.ndim != 3:
        raise ValueError(f"vote_bins must be [H, W] or [H, W, T], got shape {vote_bins.shape}")
    if boxes.ndim != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"boxes must be [N, 4] (y0, x0, y1, x1), got shape {boxes.shape}")
    h, w, t = vote_bins.shape
    voted = vote_bins >= 0
    b = jnp.where(voted, vote_bins, 0)
    cy = jnp.asarray(grid.centers[:, 0])[b]  # [H, W, T]
    cx = jnp.asarray(grid.centers[:, 1])[b]
    r = jnp.asarray(grid.half_sizes)[b]
    ys = jnp.arange(h, dtype=jnp.int32)[:, None, None]
    xs = jnp.arange(w, dtype=jnp.int32)[None, :, None]
    # The voted cell, as an inclusive box per pixel and rank.
    y_lo, y_hi = ys + cy - r, ys + cy + r
    x_lo, x_hi = xs + cx - r, xs + cx + r
    y0, x0, y1, x1 = (boxes[:, i, None, None, None].astype(jnp.int32) for i in range(4))
    hit = voted & (y_lo <= y1) & (y_hi >= y0) & (x_lo <= x1) & (x_hi >= x0)  # [N, H, W, T]
    if t == 1:
        return jnp.where(hit[..., 0], 0, -1).astype(jnp.int32)
    first = jnp.argmax(hit, axis=-1).astype(jnp.int32)
    return jnp.where(hit.any(-1), first, -1)

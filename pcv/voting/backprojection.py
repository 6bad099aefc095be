"""Backprojection with the query filter: which pixels voted for a peak region.

Pixel p joins the instance of box B if the cell of the bin it voted for
intersects B. Equivalently: some centre c in B has
``query_mask[R + (p - c)] == vote_bin[p]``, i.e. the pixel's vote covers c.
With top-T votes, the earliest rank whose cell intersects B wins.

:func:`query_ranks` states the same test for pixels at any position in map
coordinates (not only the map's own integer pixels): a pixel of a finer map,
e.g. the input image at stride 4, sits at a fractional map position, and its
cell is the bin's cell moved there. On integer positions it is
:func:`backproject` exactly. :func:`cell_bounds` and :func:`ranks_in` are
its two halves, for callers that test the same pixels against one box at a
time.
"""

from __future__ import annotations

import jax.numpy as jnp

from pcv.voting.grid import VoteGrid


def cell_bounds(vote_bins, ys, xs, grid: VoteGrid) -> dict:
    """The cells pixels voted for, as open intervals for :func:`ranks_in`.

    Args:
      vote_bins: int ``[H', W', T]``, best first; -1 = no vote.
      ys, xs: ``[H']`` and ``[W']``, the pixels' rows and columns in map
        pixels (integers, or fractions for pixels of a finer map).
      grid: the voting grid.
    Returns:
      ``voted`` bool and ``y_lo``, ``y_hi``, ``x_lo``, ``x_hi``, each
      ``[H', W', T]``: ``y + c - r`` and ``y + c + r`` (likewise in x).
    """
    voted = vote_bins >= 0
    b = jnp.where(voted, vote_bins, 0)
    cy = jnp.asarray(grid.centers[:, 0])[b]  # [H', W', T]
    cx = jnp.asarray(grid.centers[:, 1])[b]
    r = jnp.asarray(grid.half_sizes)[b]
    ys = jnp.asarray(ys)[:, None, None]
    xs = jnp.asarray(xs)[None, :, None]
    return {"voted": voted, "y_lo": ys + (cy - r), "y_hi": ys + (cy + r), "x_lo": xs + (cx - r), "x_hi": xs + (cx + r)}


def ranks_in(bounds: dict, boxes):
    """int32 ``[N, H', W']``: the first rank whose cell (:func:`cell_bounds`) meets box n, or -1.

    A cell of half size r centred at y + c covers ``[y + c - r - 1/2,
    y + c + r + 1/2]`` and box rows ``[y0 - 1/2, y1 + 1/2]``; they overlap
    when ``y + c - r < y1 + 1`` and ``y + c + r > y0 - 1`` (and likewise in x),
    which for integer y is the map's ``y + c - r <= y1`` and ``y + c + r >= y0``.
    """
    y0, x0, y1, x1 = (boxes[:, i, None, None, None].astype(jnp.int32) for i in range(4))
    hit = (
        bounds["voted"]
        & (bounds["y_lo"] < y1 + 1)
        & (bounds["y_hi"] > y0 - 1)
        & (bounds["x_lo"] < x1 + 1)
        & (bounds["x_hi"] > x0 - 1)
    )  # [N, H', W', T]
    if hit.shape[-1] == 1:
        return jnp.where(hit[..., 0], 0, -1).astype(jnp.int32)
    first = jnp.argmax(hit, axis=-1).astype(jnp.int32)
    return jnp.where(hit.any(-1), first, -1)


def query_ranks(vote_bins, ys, xs, boxes, grid: VoteGrid):
    """:func:`backproject` for pixels at rows ``ys`` and columns ``xs`` of the map (fractions allowed).

    ``vote_bins`` int ``[H', W', T]``; returns int32 ``[N, H', W']``.
    """
    return ranks_in(cell_bounds(vote_bins, ys, xs, grid), jnp.asarray(boxes))


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
    h, w, _ = vote_bins.shape
    return query_ranks(vote_bins, jnp.arange(h, dtype=jnp.int32), jnp.arange(w, dtype=jnp.int32), boxes, grid)

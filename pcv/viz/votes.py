"""What the votes did: the heatmap with its peaks, and one peak's backprojected pixels with the query filter."""

from __future__ import annotations

import numpy as np
from matplotlib.collections import PatchCollection
from matplotlib.patches import Rectangle

from pcv.viz.colours import as_rgb
from pcv.viz.figures import figure_for, image_axes, map_scale
from pcv.voting import backproject
from pcv.voting.grid import VoteGrid


def heatmap(image, heat, *, peaks=None, valid=None, scale=None, alpha: float = 0.6, title: str | None = None):
    """The vote heatmap over the image, peaks (the maxima of peak regions) marked and numbered.

    Args:
      image: uint8 ``[H, W, 3]``.
      heat: ``[h, w]`` the heatmap (map pixels).
      peaks: int ``[N, 2]`` (y, x) in map pixels; ``valid`` bool ``[N]``
        picks the real ones.
      scale: image pixels per map pixel (module docstring).
    """
    image = as_rgb(image)
    heat = np.asarray(heat, np.float32)
    sy, sx = map_scale(image, heat.shape, scale)
    fig = figure_for(image.shape[:2], extra_width_in=0.8)
    width = fig.get_figwidth()
    frac = (width - 0.8) / width
    ax = image_axes(fig, (0.0, 0.0, frac, 0.94))
    ax.imshow(image, interpolation="nearest")
    extent = (0, heat.shape[1] * sx, heat.shape[0] * sy, 0)
    shown = ax.imshow(heat, cmap="inferno", alpha=alpha, extent=extent, interpolation="nearest", vmin=0.0)
    ax.set_xlim(0, image.shape[1])
    ax.set_ylim(image.shape[0], 0)
    cax = fig.add_axes((frac + 0.02, 0.1, 0.03, 0.75))
    fig.colorbar(shown, cax=cax)
    cax.tick_params(labelsize=7)
    if peaks is not None:
        peaks = np.asarray(peaks).reshape(-1, 2)
        keep = np.ones(len(peaks), bool) if valid is None else np.asarray(valid, bool)
        for n in np.flatnonzero(keep):
            y, x = (peaks[n, 0] + 0.5) * sy, (peaks[n, 1] + 0.5) * sx
            ax.plot([x], [y], marker="+", color="cyan", markersize=10, markeredgewidth=2)
            ax.text(x + sx, y - sy, str(n), color="cyan", fontsize=8)
    ax.set_title(title or "vote heatmap", fontsize=9)
    return fig


def vote_bins(vote_logits, grid: VoteGrid) -> np.ndarray:
    """int32 ``[h, w]``: each pixel's most likely bin, -1 where it abstains (argmax is class K)."""
    v = np.asarray(vote_logits)
    if v.shape[-1] != grid.num_bins + 1:
        raise ValueError(f"vote_logits has {v.shape[-1]} channels; the grid needs K + 1 = {grid.num_bins + 1}")
    top = np.argmax(v, -1).astype(np.int32)
    return np.where(top == grid.num_bins, -1, top)


def backprojection(
    image,
    bins,
    box,
    peak,
    grid: VoteGrid,
    *,
    scale=None,
    title: str | None = None,
):
    """One peak region's backprojection and the query filter drawn around its peak.

    The filled pixels are those whose top-1 vote cell intersects the region's
    box (:func:`pcv.voting.backproject`), i.e. the pixels that voted for this
    instance. The outlined cells are the query filter centred at the peak:
    a pixel inside query cell k is a member if it voted for bin k (the query
    mask is the vote mask rotated by 180 degrees).

    Args:
      image: uint8 ``[H, W, 3]``.
      bins: int ``[h, w]`` top-1 vote bins, -1 = abstain (:func:`vote_bins`).
      box: ``(y0, x0, y1, x1)`` inclusive, map pixels.
      peak: ``(y, x)`` map pixels.
      grid: the voting grid.
      scale: image pixels per map pixel.
    Returns:
      a ``Figure``; ``fig.member_mask`` holds the bool ``[h, w]`` mask drawn.
    """
    image = as_rgb(image)
    bins = np.asarray(bins, np.int32)
    sy, sx = map_scale(image, bins.shape, scale)
    box = np.asarray(box, np.int32).reshape(4)
    py, px = (int(v) for v in np.asarray(peak).reshape(2))
    member = np.asarray(backproject(bins, box[None], grid))[0] >= 0  # [h, w]

    fig = figure_for(image.shape[:2])
    ax = image_axes(fig)
    ax.imshow(image, interpolation="nearest")
    rgba = np.zeros(member.shape + (4,), np.float32)
    rgba[member] = (0.1, 1.0, 0.3, 0.55)
    ax.imshow(rgba, extent=(0, bins.shape[1] * sx, bins.shape[0] * sy, 0), interpolation="nearest")
    # The query filter at the peak: cell k centred at peak - c_k (the vote cell rotated 180 degrees).
    cells = []
    for (cy, cx), r in zip(grid.centers, grid.half_sizes):
        y0, x0 = py - cy - r, px - cx - r
        cells.append(Rectangle((x0 * sx, y0 * sy), (2 * r + 1) * sx, (2 * r + 1) * sy))
    ax.add_collection(PatchCollection(cells, facecolor="none", edgecolor="white", linewidth=0.6, alpha=0.8))
    y0, x0, y1, x1 = box
    ax.add_patch(
        Rectangle(
            (x0 * sx, y0 * sy), (x1 - x0 + 1) * sx, (y1 - y0 + 1) * sy, fill=False, edgecolor="red", linewidth=1.5
        )
    )
    ax.plot([(px + 0.5) * sx], [(py + 0.5) * sy], marker="+", color="red", markersize=10, markeredgewidth=2)
    ax.set_xlim(0, image.shape[1])
    ax.set_ylim(image.shape[0], 0)
    ax.set_title(title or f"backprojection of peak ({py}, {px}): {int(member.sum())} map pixels", fontsize=9)
    fig.member_mask = member
    return fig

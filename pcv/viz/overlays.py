"""The panoptic answer over the image: stuff in its category colour, instances in distinct ones, labels, a legend."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.patches import Patch

from pcv.viz.colours import as_rgb, blend, segment_colours
from pcv.viz.figures import figure_for, image_axes


def overlay(
    image,
    segment_ids,
    segments_info: Sequence[Mapping],
    categories: Sequence[Mapping],
    *,
    alpha: float = 0.55,
    legend: bool = True,
    labels: bool = True,
    title: str | None = None,
):
    """The panoptic segmentation over the image, each instance labelled, with a legend of the classes present.

    Stuff takes its category colour, each instance a distinct colour
    (:func:`segment_colours`); segment borders are white. With ``labels``
    each instance carries its class name and, when its segment has one, its
    ``score`` (:func:`label_points`: at a pixel well inside it). The legend
    lists each class present once with its number of instances.

    Args:
      image: uint8 ``[H, W, 3]``.
      segment_ids: ``[H, W]``, 0 = void.
      segments_info: COCO segments of the map (``id``, ``category_id``).
      categories: COCO categories (``id``, ``name``, ``isthing``, ``color``).
    Returns:
      a matplotlib ``Figure``.
    """
    image = as_rgb(image)
    picture = blend(image, segment_ids, segments_info, categories, alpha=alpha)
    fig = figure_for(image.shape[:2], extra_width_in=2.2 if legend else 0.0)
    width = fig.get_figwidth()
    frac = (width - (2.2 if legend else 0.0)) / width
    ax = image_axes(fig, (0.0, 0.0, frac, 0.94))
    ax.imshow(picture, interpolation="nearest")
    if title:
        ax.set_title(title, fontsize=9)
    names = {int(c["id"]): str(c.get("name", c["id"])) for c in categories}
    if labels:
        for seg, (y, x) in label_points(segment_ids, segments_info):
            text = names.get(int(seg["category_id"]), str(seg["category_id"]))
            if "score" in seg:
                text += f" {seg['score']:.2f}"
            ax.text(
                x,
                y,
                text,
                fontsize=7,
                color="white",
                ha="center",
                va="center",
                bbox={"boxstyle": "round,pad=0.15", "facecolor": "black", "alpha": 0.55, "linewidth": 0},
            )
    if legend:
        colours = segment_colours(segments_info, categories)
        isthing = {int(c["id"]): bool(c.get("isthing")) for c in categories}
        entries: dict[int, list] = {}
        for seg in segments_info:
            entries.setdefault(int(seg["category_id"]), []).append(seg)
        handles = []
        for category_id, segs in entries.items():
            label = names[category_id]
            if isthing[category_id]:
                n = sum(1 for s in segs if not s.get("iscrowd", 0))
                label += f" ({n})" if n else " (crowd)"
            colour = np.asarray(colours[int(segs[0]["id"])]) / 255.0
            handles.append(Patch(facecolor=colour, edgecolor="black", linewidth=0.5, label=label))
        if handles:
            fig.legend(handles=handles, loc="center left", bbox_to_anchor=(frac + 0.01, 0.5), fontsize=8, frameon=False)
    return fig


def label_points(segment_ids, segments_info: Sequence[Mapping]) -> list[tuple[Mapping, tuple[int, int]]]:
    """Where to write each instance's label: ``(segment, (y, x))`` for thing segments that are not crowd.

    The point is the instance's pixel farthest from its border (city-block
    distance; ties go to the one nearest its centre of mass), so the label
    sits on the instance even when it is thin, hollow or bent.
    """
    ids = np.asarray(segment_ids)
    out = []
    for seg in segments_info:
        if not seg.get("isthing", 1) or seg.get("iscrowd", 0):
            continue
        ys, xs = np.nonzero(ids == int(seg["id"]))
        if not len(ys):
            continue
        y0, x0 = ys.min(), xs.min()
        mask = ids[y0 : ys.max() + 1, x0 : xs.max() + 1] == int(seg["id"])
        depth = _inner_distance(mask)
        py, px = np.nonzero(depth == depth.max())
        j = int(np.argmin((py - (ys.mean() - y0)) ** 2 + (px - (xs.mean() - x0)) ** 2))
        out.append((seg, (int(y0 + py[j]), int(x0 + px[j]))))
    return out


def _inner_distance(mask: np.ndarray) -> np.ndarray:
    """City-block distance of each pixel of ``mask`` to the nearest pixel outside it (beyond the edge is outside).

    Sweeps down and up each column, then right and left along each row: the
    column pass leaves the vertical distance, the row pass adds the best
    horizontal one, which is exactly the L1 distance.
    """
    h, w = mask.shape
    d = np.pad(np.where(mask, h + w, 0).astype(np.int32), 1)
    for y in range(1, h + 1):
        np.minimum(d[y], d[y - 1] + 1, out=d[y])
    for y in range(h, 0, -1):
        np.minimum(d[y], d[y + 1] + 1, out=d[y])
    for x in range(1, w + 1):
        np.minimum(d[:, x], d[:, x - 1] + 1, out=d[:, x])
    for x in range(w, 0, -1):
        np.minimum(d[:, x], d[:, x + 1] + 1, out=d[:, x])
    return d[1:-1, 1:-1]

"""Pictures of PCV predictions (matplotlib, no display needed).

What the votes did, drawn over the image:

- :func:`overlay`: the panoptic segmentation, stuff in its category colour,
  every instance in a distinct colour, with a legend of the classes present.
- :func:`heatmap`: the vote heatmap with the peak regions' maxima marked.
- :func:`backprojection`: one peak region, the pixels whose votes
  backproject to it, and the query filter drawn around the peak.
- :func:`validation_panel`: the trainer's rows of input | ground truth |
  prediction | heatmap, as one image.

Figures are ``matplotlib.figure.Figure`` objects built without pyplot (no
global backend, nothing opens a window; a notebook displays them as they
are); :func:`figure_to_array` renders one to an RGB array with the Agg
canvas. Plain-array helpers (:func:`colorize`, :func:`blend`) need numpy only.

Coordinates: image pixels for the image, *map* pixels (the heads' stride-4
output of the padded network input) for heatmaps, peaks, boxes and vote
bins. ``scale = (sy, sx)`` is image pixels per map pixel; by default
``image size / map size``; a :class:`pcv.predictor.Prediction` carries its
own (``prediction.scale``, its ``heatmap`` cropped to the image). Map pixel
``(y, x)`` covers image pixels ``[y * sy, (y + 1) * sy)``.

Legend: H, W image size; h, w map size; K vote bins; D the grid's field.
"""

from __future__ import annotations

import colorsys
from collections.abc import Mapping, Sequence

import numpy as np

from pcv.voting.grid import VoteGrid

GOLDEN = 0.6180339887498949


# ----------------------------------------------------------------------------
# Colours (numpy only).
# ----------------------------------------------------------------------------


def _fallback_colour(category_id: int) -> tuple[int, int, int]:
    """A stable colour for a category that has none."""
    r, g, b = colorsys.hsv_to_rgb((int(category_id) * GOLDEN) % 1.0, 0.55, 0.8)
    return int(255 * r), int(255 * g), int(255 * b)


def instance_colour(k: int) -> tuple[int, int, int]:
    """The k-th instance colour: hues spaced by the golden ratio, so neighbours in k differ most."""
    r, g, b = colorsys.hsv_to_rgb((0.11 + k * GOLDEN) % 1.0, 0.8 if k % 2 else 0.65, 0.98 if k % 3 else 0.85)
    return int(255 * r), int(255 * g), int(255 * b)


def segment_colours(segments_info: Sequence[Mapping], categories: Sequence[Mapping]) -> dict[int, tuple[int, int, int]]:
    """``{segment id: (r, g, b)}``: stuff takes its category colour, instances distinct colours in order.

    Crowd segments take their category colour (they are not one instance).
    """
    by_id = {int(c["id"]): c for c in categories}
    out = {}
    k = 0
    for seg in segments_info:
        category_id = int(seg["category_id"])
        if category_id not in by_id:
            raise ValueError(f"segment {seg['id']} has category_id {category_id}, not among the categories")
        cat = by_id[category_id]
        if cat.get("isthing") and not seg.get("iscrowd", 0):
            out[int(seg["id"])] = instance_colour(k)
            k += 1
        else:
            out[int(seg["id"])] = tuple(int(v) for v in cat.get("color", _fallback_colour(category_id)))
    return out


def colorize(segment_ids, segments_info: Sequence[Mapping], categories: Sequence[Mapping]) -> np.ndarray:
    """``[H, W]`` segment ids + COCO ``segments_info`` -> ``[H, W, 3]`` uint8 (void black)."""
    ids = np.asarray(segment_ids)
    colours = segment_colours(segments_info, categories)
    lut_ids = np.array([0] + list(colours), np.int64)
    lut = np.array([(0, 0, 0)] + list(colours.values()), np.uint8)
    order = np.argsort(lut_ids)
    pos = np.searchsorted(lut_ids[order], ids)
    pos = np.minimum(pos, len(order) - 1)
    known = lut_ids[order][pos] == ids
    if not known.all():
        missing = sorted(set(np.unique(ids[~known]).tolist()))
        raise ValueError(f"segment ids {missing[:5]} are in the map but not in segments_info")
    return lut[order][pos]


def boundaries(segment_ids) -> np.ndarray:
    """bool ``[H, W]``: pixels whose right or lower neighbour has another segment id."""
    ids = np.asarray(segment_ids)
    edge = np.zeros(ids.shape, bool)
    edge[:, :-1] |= ids[:, :-1] != ids[:, 1:]
    edge[:-1, :] |= ids[:-1, :] != ids[1:, :]
    return edge


def blend(image, segment_ids, segments_info, categories, *, alpha: float = 0.55, edges: bool = True) -> np.ndarray:
    """The segmentation blended over the image, uint8 ``[H, W, 3]``; void stays the image."""
    image = _rgb(image)
    ids = np.asarray(segment_ids)
    if ids.shape != image.shape[:2]:
        raise ValueError(f"segment_ids {ids.shape} and image {image.shape[:2]} differ in size")
    colours = colorize(ids, segments_info, categories).astype(np.float32)
    a = np.where(ids[..., None] > 0, alpha, 0.0)
    out = (1 - a) * image.astype(np.float32) + a * colours
    if edges:
        out[boundaries(ids)] = 255.0
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _rgb(image) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, -1)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"expected an RGB image [H, W, 3], got shape {image.shape}")
    if image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    return image


# ----------------------------------------------------------------------------
# Figures.
# ----------------------------------------------------------------------------


def new_figure(width_in: float, height_in: float, dpi: int = 100):
    """A pyplot-free figure with an Agg canvas attached."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def figure_to_array(fig) -> np.ndarray:
    """Render a figure: uint8 ``[H, W, 3]``."""
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


def figure_png(fig) -> bytes:
    """A figure as PNG bytes (write them with :func:`pcv.workdir.write_atomic`)."""
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _figure_for(image_hw, extra_width_in: float = 0.0, max_in: float = 8.0):
    h, w = image_hw
    scale = max_in / max(h, w)
    return new_figure(w * scale + extra_width_in, h * scale + 0.4)


def _image_axes(fig, rect=(0.0, 0.0, 1.0, 0.94)):
    ax = fig.add_axes(rect)
    ax.set_axis_off()
    return ax


def _scale(image, map_hw, scale):
    if scale is not None:
        return float(scale[0]), float(scale[1])
    return image.shape[0] / map_hw[0], image.shape[1] / map_hw[1]


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
    from matplotlib.patches import Patch

    image = _rgb(image)
    picture = blend(image, segment_ids, segments_info, categories, alpha=alpha)
    fig = _figure_for(image.shape[:2], extra_width_in=2.2 if legend else 0.0)
    width = fig.get_figwidth()
    frac = (width - (2.2 if legend else 0.0)) / width
    ax = _image_axes(fig, (0.0, 0.0, frac, 0.94))
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


def heatmap(image, heat, *, peaks=None, valid=None, scale=None, alpha: float = 0.6, title: str | None = None):
    """The vote heatmap over the image, peaks (the maxima of peak regions) marked and numbered.

    Args:
      image: uint8 ``[H, W, 3]``.
      heat: ``[h, w]`` the heatmap (map pixels).
      peaks: int ``[N, 2]`` (y, x) in map pixels; ``valid`` bool ``[N]``
        picks the real ones.
      scale: image pixels per map pixel (module docstring).
    """
    image = _rgb(image)
    heat = np.asarray(heat, np.float32)
    sy, sx = _scale(image, heat.shape, scale)
    fig = _figure_for(image.shape[:2], extra_width_in=0.8)
    width = fig.get_figwidth()
    frac = (width - 0.8) / width
    ax = _image_axes(fig, (0.0, 0.0, frac, 0.94))
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
    from matplotlib.collections import PatchCollection
    from matplotlib.patches import Rectangle

    from pcv.voting import backproject

    image = _rgb(image)
    bins = np.asarray(bins, np.int32)
    sy, sx = _scale(image, bins.shape, scale)
    box = np.asarray(box, np.int32).reshape(4)
    py, px = (int(v) for v in np.asarray(peak).reshape(2))
    member = np.asarray(backproject(bins, box[None], grid))[0] >= 0  # [h, w]

    fig = _figure_for(image.shape[:2])
    ax = _image_axes(fig)
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


# ----------------------------------------------------------------------------
# The trainer's panel.
# ----------------------------------------------------------------------------


def validation_panel(shown, label_space, *, cell_in: float = 2.0, row_titles=None) -> np.ndarray:
    """Rows of input | ground truth | prediction | vote heatmap (peaks marked), uint8 ``[H, W, 3]``.

    Args:
      shown: ``(example, prediction)`` pairs: ``example`` has ``image``,
        ``segment_ids``, ``segments_info``; ``prediction`` is its
        :class:`pcv.predictor.Prediction`.
      label_space: the dataset's :class:`pcv.data.LabelSpace`.
      row_titles: a line of text above each row (e.g. the image and its PQ).
    """
    if not shown:
        return np.zeros((1, 1, 3), np.uint8)
    categories = list(label_space.categories)
    rows = len(shown)
    line_in = 0.2 if row_titles else 0.0  # a line of text below each row
    fig = new_figure(4 * cell_in, rows * (cell_in + line_in) + 0.3)
    titles = ("input", "ground truth", "prediction", "heatmap + peaks")
    for r, (example, prediction) in enumerate(shown):
        image = _rgb(example["image"])
        pictures = (
            image,
            colorize(example["segment_ids"], example["segments_info"], categories),
            colorize(prediction.ids, prediction.segments_info, categories),
        )
        for c in range(4):
            ax = fig.add_subplot(rows, 4, r * 4 + c + 1)
            ax.set_axis_off()
            if r == 0:
                ax.set_title(titles[c], fontsize=8)
            if c == 0 and row_titles:
                ax.text(0, -0.02, row_titles[r], transform=ax.transAxes, ha="left", va="top", fontsize=7)
            if c < 3:
                ax.imshow(pictures[c], interpolation="nearest")
                continue
            heat = np.asarray(prediction.heatmap, np.float32)
            sy, sx = prediction.scale
            ax.imshow(
                heat, cmap="inferno", interpolation="nearest", extent=(0, heat.shape[1] * sx, heat.shape[0] * sy, 0)
            )
            peaks = np.asarray(prediction.peaks)[np.asarray(prediction.instance_valid, bool)]
            ax.plot((peaks[:, 1] + 0.5) * sx, (peaks[:, 0] + 0.5) * sy, "c+", markersize=6)
            ax.set_xlim(0, image.shape[1])
            ax.set_ylim(image.shape[0], 0)
    height = fig.get_figheight()
    fig.subplots_adjust(
        left=0.01,
        right=0.99,
        top=1 - 0.25 / height,
        bottom=(0.05 + line_in) / height,
        wspace=0.04,
        hspace=0.04 + line_in / cell_in,
    )
    return figure_to_array(fig)

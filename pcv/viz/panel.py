"""The trainer's panel and the evaluation report's sheet: rows of input | ground truth | prediction | heatmap."""

from __future__ import annotations

import numpy as np

from pcv.viz.colours import as_rgb, colorize
from pcv.viz.figures import figure_to_array, new_figure


def validation_panel(shown, label_space, *, cell_in: float = 2.0, row_titles=None) -> np.ndarray:
    """Rows of input | ground truth | prediction | vote heatmap (peaks marked), uint8 ``[H, W, 3]``.

    Args:
      shown: ``(example, prediction)`` pairs: ``example`` has ``image``,
        ``segment_ids``, ``segments_info``; ``prediction`` is its
        :class:`pcv.Prediction`.
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
        image = as_rgb(example["image"])
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

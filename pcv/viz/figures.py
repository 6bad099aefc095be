"""Matplotlib figures without pyplot (no global backend, no window), rendered to arrays or PNG bytes."""

from __future__ import annotations

import io

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def new_figure(width_in: float, height_in: float, dpi: int = 100):
    """A pyplot-free figure with an Agg canvas attached."""
    fig = Figure(figsize=(width_in, height_in), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def figure_to_array(fig) -> np.ndarray:
    """Render a figure: uint8 ``[H, W, 3]``."""
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


def figure_png(fig) -> bytes:
    """A figure as PNG bytes (write them with :func:`pcv.runtime.files.write_atomic`)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def figure_for(image_hw, extra_width_in: float = 0.0, max_in: float = 8.0):
    h, w = image_hw
    scale = max_in / max(h, w)
    return new_figure(w * scale + extra_width_in, h * scale + 0.4)


def image_axes(fig, rect=(0.0, 0.0, 1.0, 0.94)):
    ax = fig.add_axes(rect)
    ax.set_axis_off()
    return ax


def map_scale(image, map_hw, scale):
    if scale is not None:
        return float(scale[0]), float(scale[1])
    return image.shape[0] / map_hw[0], image.shape[1] / map_hw[1]

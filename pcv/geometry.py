"""The network's geometry, defined once: its output stride and the multiple its input sizes must be.

The heads predict at ``OUTPUT_STRIDE`` (4): one map pixel per 4 x 4 input
pixels, so targets, heatmaps, peaks and vote bins live on a map of
``ceil(H / 4) x ceil(W / 4)``. The ResNet trunk halves the resolution five
times (C5 is at stride 32), so input sizes are multiples of ``SIZE_MULTIPLE``.
"""

from __future__ import annotations

#: Output stride of the semantic and vote heads.
OUTPUT_STRIDE = 4
#: Input heights and widths are multiples of this (the coarsest feature stride, C5).
SIZE_MULTIPLE = 32


def round_up(n: int, multiple: int = SIZE_MULTIPLE) -> int:
    """The smallest multiple of ``multiple`` that is >= ``n``."""
    return -(-int(n) // multiple) * multiple

"""Evaluation: COCO panoptic quality (PQ).

``pq_compute`` scores COCO panoptic JSON + PNG folders; ``pq_image_stats`` and
``PQStat`` do the same on in-memory id maps for the trainer. See
``pcv.evaluation.pq`` for the rules and the command line.

The names are loaded lazily (PEP 562) so that ``python -m pcv.evaluation.pq``
does not import its own module twice (runpy warns when the package has already
imported the submodule it is asked to run).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__all__ = [
    "PQInputError",
    "PQStat",
    "PQStatCat",
    "format_table",
    "id2rgb",
    "pq_compute",
    "pq_image_stats",
    "read_id_png",
    "rgb2id",
]

if TYPE_CHECKING:
    from pcv.evaluation.pq import (
        PQInputError,
        PQStat,
        PQStatCat,
        format_table,
        id2rgb,
        pq_compute,
        pq_image_stats,
        read_id_png,
        rgb2id,
    )


def __getattr__(name: str):
    if name in __all__:
        return getattr(importlib.import_module("pcv.evaluation.pq"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))

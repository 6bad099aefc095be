"""Evaluation: COCO panoptic quality (PQ), mIoU and AP beside it, and the one COCO panoptic writer.

- :mod:`pcv.evaluation.pq`: ``pq_compute`` scores COCO panoptic JSON + PNG
  folders; ``pq_image_stats`` and ``PQStat`` do the same on in-memory id maps.
- :mod:`pcv.evaluation.metrics`: mIoU of the semantic map (``SemanticStat``)
  and COCO instance AP of the thing segments (``InstanceStat``, with
  pycocotools: ``pip install 'pcv[coco]'``).
- :mod:`pcv.evaluation.coco_files`: ``CocoPanopticWriter`` (predictions) and
  ``write_coco_panoptic`` (a dataset's ground truth).

The command line is ``python -m pcv.pq``. Names are loaded lazily (PEP 562),
so importing the package stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_WHERE = {
    "PQInputError": "pq",
    "PQStat": "pq",
    "PQStatCat": "pq",
    "format_table": "pq",
    "pq_compute": "pq",
    "pq_image_stats": "pq",
    "read_id_png": "pq",
    "CocoPanopticWriter": "coco_files",
    "write_coco_panoptic": "coco_files",
}
__all__ = [*_WHERE, "id2rgb", "rgb2id"]

if TYPE_CHECKING:
    from pcv.data.panoptic import id2rgb, rgb2id  # noqa: F401
    from pcv.evaluation.coco_files import CocoPanopticWriter, write_coco_panoptic  # noqa: F401
    from pcv.evaluation.pq import (  # noqa: F401
        PQInputError,
        PQStat,
        PQStatCat,
        format_table,
        pq_compute,
        pq_image_stats,
        read_id_png,
    )


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(f"pcv.evaluation.{_WHERE[name]}"), name)
    if name in ("id2rgb", "rgb2id"):
        return getattr(importlib.import_module("pcv.data.panoptic"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))

"""pcv.evaluation: scoring predictions: PQ (COCO rules), mIoU and AP, the Evaluator, calibration.

- :mod:`pcv.evaluation.pq`: ``pq_compute`` scores COCO panoptic JSON + PNG
  folders; ``pq_image_stats`` and ``PQStat`` do the same on in-memory id maps.
- :mod:`pcv.evaluation.evaluator`: the :class:`Evaluator`, a Predictor run
  over a split, sharded over hosts, feeding :class:`Metric` objects
  (:mod:`pcv.evaluation.protocol`: reset, add a batch, combine across hosts,
  result).
- :mod:`pcv.evaluation.metrics`: the metrics: :class:`PanopticQuality`,
  :class:`SemanticIoU` (mIoU), :class:`InstanceAP` (COCO AP, with
  pycocotools: ``pip install 'pcv[coco]'``), :class:`CocoPanopticFiles`
  (the predictions as COCO files).
- :mod:`pcv.evaluation.report`: the per-image report (worst images first).
- :mod:`pcv.evaluation.calibration`: post-processing settings chosen by PQ
  on held-out images.
- :mod:`pcv.evaluation.workdir_eval`: a work dir's checkpoint scored from
  the COCO files it writes (``python -m pcv.evaluate``).

The PQ command line is ``python -m pcv.pq``.
"""

from pcv import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "PQInputError": "pq",
        "PQStat": "pq",
        "PQStatCat": "pq",
        "format_table": "pq",
        "pq_compute": "pq",
        "pq_image_stats": "pq",
        "read_id_png": "pq",
        "SemanticStat": "metrics",
        "PanopticQuality": "metrics",
        "SemanticIoU": "metrics",
        "InstanceAP": "metrics",
        "CocoPanopticFiles": "metrics",
        "default_metrics": "metrics",
        "rescore_files": "metrics",
        "Metric": "protocol",
        "Item": "protocol",
        "Run": "protocol",
        "PerImageReport": "report",
        "InstanceStat": "metrics",
        "Evaluator": "evaluator",
        "calibrate": "calibration",
        "evaluate_workdir": "workdir_eval",
        "write_report": "report",
    },
)

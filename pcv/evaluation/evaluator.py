"""The Evaluator: a :class:`~pcv.Predictor` run over a split, its answers fed to metric objects.

::

    evaluator = Evaluator(dataset, batch_size=16)
    results = evaluator.run(predictor)    # {"All", "Things", "Stuff", "per_class", "semantic", "instances"}

    metrics = [*default_metrics(dataset.categories), CocoPanopticFiles("eval/val_step4"), MyMetric()]
    results = Evaluator(dataset, batch_size=16, metrics=metrics).run(predictor)   # + "files", MyMetric's entries

The loop predicts; what is measured or written is up to the metrics
(:class:`Metric`: reset, add a batch, combine across hosts, result), so a
new metric is a new object, not an edit of the loop. The shipped ones:
:class:`~pcv.evaluation.metrics.PanopticQuality` (PQ by the COCO rules),
:class:`~pcv.evaluation.metrics.SemanticIoU` (mIoU),
:class:`~pcv.evaluation.metrics.InstanceAP` (COCO AP, with pycocotools),
:class:`~pcv.evaluation.metrics.CocoPanopticFiles` (the predictions as COCO
panoptic files, which rescore to the same PQ with
:func:`pcv.evaluation.pq_compute`) and
:class:`~pcv.evaluation.report.PerImageReport` (every image's PQ).

Many hosts: each host predicts its share of the split (images ``h, h + P,
...`` of P hosts) on its devices; each metric combines its hosts' parts
(sums, gathers), and every host returns the same result. Only process 0
shows progress.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

from pcv.data.pipeline import eval_batches
from pcv.evaluation.metrics import default_metrics
from pcv.evaluation.protocol import Item, Metric, Run
from pcv.inference.predictor import Predictor
from pcv.runtime import distributed
from pcv.runtime.console import ProgressBar


@dataclasses.dataclass
class Evaluator:
    """Runs a predictor over (the first ``num_images`` of) a split and hands its answers to ``metrics``.

    Args:
      dataset: random access over examples, with ``categories`` (every pcv source).
      batch_size: the global batch (a multiple of the devices of the
        predictor's mesh).
      metrics: the :class:`Metric` objects to feed; default
        :func:`~pcv.evaluation.metrics.default_metrics` (PQ, mIoU, AP).
      num_images: evaluate the first n (default all).
      num_shown: keep the first n ``(example, prediction)`` pairs (process 0)
        in :attr:`shown`, for pictures.
      split: the split's name (file names, messages).
      progress: show a progress bar (process 0).
      log: where messages go.
    """

    dataset: object
    batch_size: int
    metrics: Sequence[Metric] | None = None
    num_images: int | None = None
    num_shown: int = 0
    split: str = "val"
    progress: bool = True
    log: Callable[[str], None] = print

    def __post_init__(self):
        n = len(self.dataset)
        if self.num_images is None and n > 10**6:
            raise ValueError(f"split {self.split!r} is unbounded ({n} examples); pass num_images")
        self.count = n if self.num_images is None else min(int(self.num_images), n)
        if self.metrics is None:
            self.metrics = default_metrics()
        self.shown: list = []

    def run(self, predictor: Predictor) -> dict:
        """Every metric's result, merged; the same on every host."""
        hosts, me = distributed.process_count(), distributed.process_index()
        self.shown = []
        run = Run(self.dataset, self.split, self.count, predictor)
        for metric in self.metrics:
            metric.reset(run)
        bar = ProgressBar(self.count, "eval", enabled=self.progress and me == 0)
        batches = eval_batches(
            self.dataset,
            predictor.geometry,
            batch_size=self.batch_size,
            num_images=self.count,
            process_index=me,
            process_count=hosts,
        )
        for batch in batches:
            raw = predictor.run_padded(batch["images"])
            items = [
                Item(
                    int(batch["index"][j]),
                    batch["examples"][j],
                    predictor.to_prediction({k: v[j] for k, v in raw.items()}, batch["meta"][j]),
                )
                for j in range(len(batch["valid"]))
                if batch["valid"][j]
            ]
            for metric in self.metrics:
                metric.add(items)
            if me == 0:
                self.shown += [(i.example, i.prediction) for i in items[: self.num_shown - len(self.shown)]]
            bar.update(int(np.sum(batch["valid"])) * hosts)
        bar.close()
        result: dict = {}
        for metric in self.metrics:
            metric.combine()
        for metric in self.metrics:
            entries = metric.result()
            clash = (set(entries) & set(result)) - {"files"}
            if clash:
                raise ValueError(f"{type(metric).__name__} returns {sorted(clash)}, which another metric returned")
            files = {**result.get("files", {}), **entries.get("files", {})}
            result.update(entries)
            if files:
                result["files"] = files
        return result

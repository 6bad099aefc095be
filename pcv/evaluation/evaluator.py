"""Scoring a :class:`~pcv.Predictor` on a split: in memory (training) or writing COCO files (commands).

::

    evaluator = Evaluator(dataset, batch_size=16)
    results = evaluator.run(predictor)             # {"All", "Things", "Stuff", "per_class", ...}
    Evaluator(dataset, batch_size=16, out_dir="eval/val_step4").run(predictor)   # + COCO files

Both ways score the same predictions with the same rules
(:func:`pcv.evaluation.pq_image_stats`); the files, when written, rescore to
the same numbers with :func:`pcv.evaluation.pq_compute` (a test checks it).

Many hosts: each host predicts its share of the split (images ``h, h + P,
...`` of P hosts) on its devices, the PQ statistics are summed across hosts,
and every host returns the same result. With ``out_dir`` every host writes
its own PNGs; process 0 gathers the segments and writes the JSON files.
Only process 0 shows progress.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from pcv.data.coco_files import CocoPanopticWriter, write_coco_panoptic
from pcv.data.panoptic import example_stem
from pcv.data.pipeline import eval_batches
from pcv.evaluation import metrics
from pcv.evaluation.pq import PQStat, pq_compute, pq_image_stats
from pcv.evaluation.report import image_record
from pcv.inference.predictor import Predictor
from pcv.runtime import distributed
from pcv.runtime.console import ProgressBar


@dataclasses.dataclass
class Evaluator:
    """Runs a predictor over (the first ``num_images`` of) a split and scores it (module docstring).

    Args:
      dataset: random access over examples, with ``categories``,
        ``category_ids``, ``thing_mask`` (every pcv source).
      batch_size: the global batch (a multiple of the devices of the
        predictor's mesh).
      num_images: evaluate the first n (default all).
      num_shown: keep the first n ``(example, prediction)`` pairs (process 0)
        for pictures.
      out_dir: also write COCO panoptic files there: ``panoptic/`` +
        ``predictions.json`` and, unless the dataset has files of its own,
        the ground truth under ``gt/``; and ``instances.json``, the thing
        segments in COCO's results format (RLE masks and scores).
      per_image: keep each image's PQ counts in :attr:`images` (the
        report of ``python -m pcv.evaluate --report``).
      split: the split's name (file names).
      progress: show a progress bar (process 0).
      log: where messages go.
    """

    dataset: object
    batch_size: int
    num_images: int | None = None
    num_shown: int = 0
    out_dir: object = None
    split: str = "val"
    progress: bool = True
    per_image: bool = False
    log: Callable[[str], None] = print

    def __post_init__(self):
        n = len(self.dataset)
        if self.num_images is None and n > 10**6:
            raise ValueError(f"split {self.split!r} is unbounded ({n} examples); pass num_images")
        self.count = n if self.num_images is None else min(int(self.num_images), n)
        self.shown: list = []
        self.files: dict = {}
        self.images: list[dict] = []

    @property
    def out_dir_path(self):
        from pcv.runtime.paths import as_path

        return as_path(self.out_dir)

    def run(self, predictor: Predictor) -> dict:
        """Scores of ``predictor`` on the split, the same on every host.

        ``{"All", "Things", "Stuff", "per_class"}`` (PQ), ``"semantic"``
        (mIoU) and, with pycocotools, ``"instances"`` (COCO AP); see
        :mod:`pcv.evaluation.metrics`.
        """
        hosts, me = distributed.process_count(), distributed.process_index()
        main = me == 0
        self.shown = []
        writer = None
        if self.out_dir is not None:
            writer = CocoPanopticWriter(
                self.out_dir,
                self.dataset.categories,
                info={
                    "description": f"pcv predictions, {self.split} split, step {predictor.step}, flip {predictor.flip}"
                },
            )
        order: list[int] = []  # dataset position of each image written, to sort the gathered entries
        stat = PQStat()
        labels = self.dataset.categories
        category_ids = [int(c["id"]) for c in labels]
        semantic = metrics.SemanticStat(category_ids)
        instances = metrics.InstanceStat(labels) if metrics.have_pycocotools() else None
        images = []
        bar = ProgressBar(self.count, "eval", enabled=self.progress and main)
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
            for j in range(len(batch["valid"])):
                if not batch["valid"][j]:
                    continue
                example = batch["examples"][j]
                prediction = predictor.to_prediction({k: v[j] for k, v in raw.items()}, batch["meta"][j])
                gt = (example["segment_ids"], example["segments_info"])
                pred = (prediction.ids, prediction.segments_info)
                image_stat = pq_image_stats(*gt, *pred, labels, image_id=example.get("image_id"))
                stat += image_stat
                semantic.add(*gt, *pred)
                if instances is not None:
                    instances.add(int(batch["index"][j]), *gt, *pred)
                if self.per_image:
                    images.append(image_record(example, int(batch["index"][j]), image_stat, labels))
                if writer is not None:
                    writer.add(
                        example_stem(example, self.split),
                        example["image_id"],
                        prediction.ids,
                        prediction.segments_info,
                        file_name=example.get("file_name"),
                    )
                    order.append(int(batch["index"][j]))
                if main and len(self.shown) < self.num_shown:
                    self.shown.append((example, prediction))
            bar.update(int(np.sum(batch["valid"])) * hosts)
        bar.close()

        total = PQStat.from_array(distributed.sum_across_hosts(stat.to_array(category_ids)), category_ids)
        result = total.results(labels)
        result["semantic"] = semantic.results(distributed.sum_across_hosts(semantic.matrix))
        detections = None
        if instances is not None:
            merged = instances.merge(distributed.gather_objects(instances.parts()))
            result["instances"] = distributed.broadcast_object(merged.results() if distributed.is_main() else None)
            detections = merged.detections
        if self.per_image:
            self.images = sorted(
                (r for part in distributed.gather_objects(images) for r in part), key=lambda r: r["index"]
            )
        if writer is not None:
            self.files = self._finish_files(writer, order, detections)
        return result

    def _finish_files(self, writer: CocoPanopticWriter, order: list[int], detections) -> dict:
        """Gather every host's entries to process 0, which writes the JSONs (prediction, ground truth, instances)."""
        parts = distributed.gather_objects({"images": writer.images, "annotations": writer.annotations, "order": order})
        files = {}
        if distributed.is_main():
            entries = sorted(
                (i, im, ann) for part in parts for i, im, ann in zip(part["order"], part["images"], part["annotations"])
            )
            writer.images, writer.annotations = [e[1] for e in entries], [e[2] for e in entries]
            pred = writer.close()
            gt = self.ground_truth_files()
            files = {
                "predictions_json": str(pred["json"]),
                "predictions_folder": str(pred["panoptic_folder"]),
                "gt_json": str(gt["json"]),
                "gt_folder": str(gt["panoptic_folder"]),
            }
            if detections is not None:  # detections carry dataset positions; the file, the images' ids
                by_position = {i: ann["image_id"] for i, _, ann in entries}
                path = self.out_dir_path / "instances.json"
                metrics.write_detections(path, [dict(d, image_id=by_position[d["image_id"]]) for d in detections])
                files["instances_json"] = str(path)
        distributed.sync("pcv-evaluator-files")
        return files

    def ground_truth_files(self) -> dict:
        """The evaluated images' ground truth as COCO files: the dataset's own, or written under ``gt/``."""
        own = getattr(self.dataset, "coco_panoptic_files", None)
        if own is not None and self.count == len(self.dataset):
            return own()
        return write_coco_panoptic(
            self.dataset, self.out_dir_path / "gt", split=self.split, indices=range(self.count), images=False
        )

    def rescore_files(self, num_workers: int | None = 0) -> dict:
        """PQ of the files :meth:`run` wrote, by :func:`pcv.evaluation.pq_compute` (what the COCO tools see)."""
        f = self.files
        return pq_compute(
            f["gt_json"], f["predictions_json"], f["gt_folder"], f["predictions_folder"], num_workers=num_workers
        )


# ----------------------------------------------------------------------------
# A trained work dir's checkpoint, scored from the files it exports.
# ----------------------------------------------------------------------------

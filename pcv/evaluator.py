"""Scoring a :class:`~pcv.predictor.Predictor` on a split: in memory (training) or writing COCO files (commands).

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

from pcv import distributed
from pcv.data.panoptic import example_stem
from pcv.data.pipeline import eval_batches
from pcv.evaluation import metrics
from pcv.evaluation.coco_files import CocoPanopticWriter, write_coco_panoptic
from pcv.evaluation.pq import PQStat, pq_compute, pq_image_stats
from pcv.metrics_writer import ProgressBar
from pcv.predictor import Predictor


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
        from pcv.workdir import as_path

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
                    images.append(_image_record(example, int(batch["index"][j]), image_stat, labels))
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


def _image_record(example, index: int, stat: PQStat, categories) -> dict:
    """One image's line of the report: its PQ, and TP / FP / FN and PQ per class present."""
    summary, per_class = stat.pq_average(categories)
    classes = {}
    for c in categories:
        s = stat.pq_per_cat.get(int(c["id"]))
        if s is None or s.tp + s.fp + s.fn == 0:
            continue
        classes[str(c.get("name", c["id"]))] = {"tp": s.tp, "fp": s.fp, "fn": s.fn, "pq": per_class[int(c["id"])]["pq"]}
    return {
        "index": index,
        "image_id": example.get("image_id"),
        "file_name": example.get("file_name"),
        **{k: summary[k] for k in ("pq", "sq", "rq", "n")},
        "tp": sum(v["tp"] for v in classes.values()),
        "fp": sum(v["fp"] for v in classes.values()),
        "fn": sum(v["fn"] for v in classes.values()),
        "classes": classes,
    }


# ----------------------------------------------------------------------------
# A trained work dir's checkpoint, scored from the files it exports.
# ----------------------------------------------------------------------------

#: Config fields ``python -m pcv.evaluate`` may override (they change what is evaluated, not the model).
EVAL_OVERRIDES = ("data.", "inference.", "eval_batch_size", "num_devices")


def evaluate_workdir(
    workdir,
    step: int | None = None,
    *,
    split: str = "val",
    out_dir=None,
    flip: bool = False,
    num_images: int | None = None,
    overrides: dict | None = None,
    num_workers: int | None = None,
    calibrated: bool = True,
    calibrate: bool = False,
    report: int = 0,
    progress: bool = True,
    log=print,
) -> dict:
    """Restore a checkpoint, export its predictions on a split as COCO panoptic files, score those files.

    Args:
      workdir: the trainer's work dir (local or ``gs://``).
      step: checkpoint step; default the newest.
      split: ``"val"``, ``"train"`` or ``"calibration"``.
      out_dir: default ``<workdir>/eval/<split>_step<N>[_flip]``.
      flip: horizontal-flip test-time augmentation.
      num_images: evaluate the first n images (default all).
      overrides: dotted config fields to change for this evaluation
        (``{"inference.threshold": 2.0, "data.data_dir": ...}``; only
        ``data.*``, ``inference.*``, ``eval_batch_size``, ``num_devices``).
      num_workers: processes scoring the files (:func:`pcv.evaluation.pq_compute`).
      calibrated: use the work dir's calibrated post-processing when present.
      calibrate: first choose the post-processing on the calibration split
        (:mod:`pcv.calibration`), write ``calibration.json``, then evaluate with it.
      report: > 0: also write the per-image report (:func:`write_report`)
        with a picture sheet of the ``report`` worst images.
      progress, log: progress bar and where the table goes.
    Returns:
      what ``<out_dir>/results.json`` holds: ``step``, ``split``, ``flip``,
      ``num_images``, ``inference`` (the settings used), ``eval`` (PQ of the
      exported files, mIoU and, with pycocotools, AP) and ``files``.
    """
    import jax
    from jax.sharding import Mesh

    from pcv import config as config_lib
    from pcv.data import make_datasets
    from pcv.errors import ConfigError
    from pcv.evaluation.pq import format_table
    from pcv.workdir import EVAL, Workdir, write_json

    wd = Workdir(workdir)
    wd.require()
    config = wd.read_config()
    overrides = dict(overrides or {})
    for name in overrides:
        if not name.startswith(EVAL_OVERRIDES):
            raise ConfigError(
                f"config.{name}: cannot change when evaluating a trained model (only "
                "data.*, inference.*, eval_batch_size and num_devices)"
            )
    inference = {k.split(".", 1)[1]: v for k, v in overrides.items() if k.startswith("inference.")}
    config = config_lib.replace(config, **overrides)
    devices = jax.devices()[: config.num_devices or None]
    mesh = Mesh(np.array(devices), ("data",))
    predictor = Predictor.from_workdir(
        wd, step, config=config, inference=inference, calibrated=calibrated and not calibrate, flip=flip, mesh=mesh
    )
    splits = make_datasets(config.data, config.seed)
    dataset = splits.get(split)
    batch = config.eval_batch_size or config.batch_size
    batch = -(-batch // len(devices)) * len(devices)
    if calibrate:
        from pcv import calibration

        if splits.calibration is None:
            raise ConfigError(
                "--calibrate needs held-out images: train with --config.data.calibration_images=N (the last N "
                "training images are then never trained on), or pass it here to use them anyway"
            )
        if split == "calibration":
            raise ConfigError("--calibrate chooses settings on the calibration split; report another (--split=val)")
        if wd.read_config().data.calibration_images == 0:
            log("note: the run held no images out (its data.calibration_images is 0): it may have trained on these")
        _, predictor = calibration.calibrate_and_keep(
            predictor, splits.calibration, wd.path, batch_size=batch, progress=progress, log=log
        )
    if dataset.label_space != predictor.label_space:
        raise ConfigError(
            f"the {split} split's categories differ from the model's ({wd.path / 'categories.json'}); "
            "evaluate on the dataset the model was trained for"
        )
    out = out_dir or wd.path / EVAL / f"{split}_step{predictor.step}{'_flip' if flip else ''}"
    evaluator = Evaluator(
        dataset,
        batch_size=batch,
        num_images=num_images,
        out_dir=out,
        split=split,
        progress=progress,
        per_image=report > 0,
        log=log,
    )
    in_memory = evaluator.run(predictor)
    results = None
    if distributed.is_main():
        scores = evaluator.rescore_files(num_workers)
        results = {
            "step": predictor.step,
            "split": split,
            "flip": bool(flip),
            "num_images": evaluator.count,
            "inference": dataclasses.asdict(predictor.inference),
            "eval": {**scores, **{k: in_memory[k] for k in ("semantic", "instances") if k in in_memory}},
            "files": evaluator.files,
            "in_memory_matches_files": _same(scores, {k: in_memory[k] for k in scores}),
        }
        write_json(evaluator.out_dir_path / "results.json", results, indent=2)
        log(f"step {predictor.step}, {split} split, {evaluator.count} images{', flip TTA' if flip else ''}:")
        log(format_table(results["eval"]))
        log(f"wrote {evaluator.out_dir_path}")
    if report > 0:
        write_report(evaluator, predictor, report, log=log)
    return distributed.broadcast_object(results)


def worst_first(records: list[dict]) -> list[dict]:
    """Per-image records from the worst PQ to the best; an image with nothing to find and nothing found counts as 1."""
    return sorted(records, key=lambda r: (r["pq"] if r["n"] else 1.0, -r["fp"] - r["fn"], r["index"]))


def write_report(evaluator: Evaluator, predictor: Predictor, num_pictures: int, log=print) -> dict:
    """``report.json`` (every image's PQ and per-class TP / FP / FN, worst first) and ``worst.png`` in the out dir.

    ``worst.png`` has a row per image, input | ground truth | prediction |
    heatmap, for the ``num_pictures`` worst. Those images are predicted
    again (on every host, which keeps the hosts in step); process 0 writes.
    """
    from pcv import viz
    from pcv.workdir import encode_png, write_atomic, write_json

    ranked = worst_first(evaluator.images)
    worst = ranked[:num_pictures]
    examples = [evaluator.dataset[r["index"]] for r in worst]
    predictions = predictor.predict_batch([e["image"] for e in examples])
    report = {
        "step": predictor.step,
        "split": evaluator.split,
        "order": "worst PQ first (an image with nothing to find and nothing found counts as 1)",
        "images": ranked,
    }
    if distributed.is_main():
        out = evaluator.out_dir_path
        write_json(out / "report.json", report, indent=1)
        titles = [
            f"{r['file_name'] or r['image_id']}: PQ {100 * r['pq']:.1f}, TP {r['tp']} FP {r['fp']} FN {r['fn']}"
            for r in worst
        ]
        sheet = viz.validation_panel(list(zip(examples, predictions)), predictor.label_space, row_titles=titles)
        write_atomic(out / "worst.png", encode_png(sheet))
        log(f"worst images (of {len(ranked)}; all in {out / 'report.json'}, pictures in {out / 'worst.png'}):")
        for title in titles[:5]:
            log(f"  {title}")
    return report


def _same(a, b, tolerance: float = 1e-9) -> bool:
    """Equal results, numbers to ``tolerance`` (IoU sums added in another order differ in the last bits)."""
    if isinstance(a, dict) and isinstance(b, dict):
        a, b = {str(k): v for k, v in a.items()}, {str(k): v for k, v in b.items()}
        return a.keys() == b.keys() and all(_same(a[k], b[k], tolerance) for k in a)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return abs(a - b) <= tolerance * max(1.0, abs(a), abs(b))
    return a == b

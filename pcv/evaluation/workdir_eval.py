"""A work dir's checkpoint scored on a split through the COCO panoptic files it writes (``python -m pcv.evaluate``).

::

    results = evaluate_workdir("workdir/synthetic", flip=True)   # what <out_dir>/results.json holds
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
from jax.sharding import Mesh

from pcv import config as config_lib
from pcv.data.datasets import make_datasets
from pcv.errors import ConfigError
from pcv.evaluation import calibration
from pcv.evaluation.evaluator import Evaluator
from pcv.evaluation.metrics import CocoPanopticFiles, default_metrics, rescore_files
from pcv.evaluation.pq import format_table
from pcv.evaluation.report import PerImageReport, write_report
from pcv.inference.predictor import Predictor
from pcv.runtime import distributed
from pcv.runtime.files import write_json
from pcv.runtime.paths import as_path
from pcv.runtime.workdir import EVAL, Workdir


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
        (``{"inference.threshold": 2.0, "data.data_dir": ...}``, applied after
        the calibration with :func:`pcv.config.override`); what is evaluated
        may change, the network may not.
      num_workers: processes scoring the files (:func:`pcv.evaluation.pq_compute`).
      calibrated: use the work dir's calibrated post-processing when present.
      calibrate: first choose the post-processing on the calibration split
        (:mod:`pcv.evaluation.calibration`), write ``calibration.json``, then evaluate with it.
      report: > 0: also write the per-image report (:func:`write_report`)
        with a picture sheet of the ``report`` worst images.
      progress, log: progress bar and where the table goes.
    Returns:
      what ``<out_dir>/results.json`` holds: ``step``, ``split``, ``flip``,
      ``num_images``, ``inference`` (the settings used), ``eval`` (PQ of the
      exported files, mIoU and, with pycocotools, AP) and ``files``.
    """
    wd = Workdir(workdir)
    wd.require()
    calibrated = calibrated and not calibrate
    config = config_lib.override(wd.read_config(calibrated=calibrated), overrides or {})
    devices = jax.devices()[: config.num_devices or None]
    mesh = Mesh(np.array(devices), ("data",))
    predictor = Predictor.from_workdir(wd, step, overrides=overrides, calibrated=calibrated, flip=flip, mesh=mesh)
    splits = make_datasets(config.data, config.seed)
    dataset = splits.get(split)
    batch = config.eval_batch_size or config.batch_size
    batch = -(-batch // len(devices)) * len(devices)
    if calibrate:
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
    metrics = [*default_metrics(out_dir=out), CocoPanopticFiles(out), *([PerImageReport()] if report > 0 else [])]
    evaluator = Evaluator(
        dataset, batch_size=batch, metrics=metrics, num_images=num_images, split=split, progress=progress, log=log
    )
    in_memory = evaluator.run(predictor)
    results = None
    if distributed.is_main():
        scores = rescore_files(in_memory["files"], num_workers)
        results = {
            "step": predictor.step,
            "split": split,
            "flip": bool(flip),
            "num_images": evaluator.count,
            "inference": dataclasses.asdict(predictor.inference),
            "eval": {**scores, **{k: in_memory[k] for k in ("semantic", "instances") if k in in_memory}},
            "files": in_memory["files"],
            "in_memory_matches_files": _same(scores, {k: in_memory[k] for k in scores}),
        }
        write_json(as_path(out) / "results.json", results, indent=2)
        log(f"step {predictor.step}, {split} split, {evaluator.count} images{', flip TTA' if flip else ''}:")
        log(format_table(results["eval"]))
        log(f"wrote {as_path(out)}")
    if report > 0:
        write_report(in_memory["images"], dataset, predictor, out, report, split=split, log=log)
    return distributed.broadcast_object(results)


def _same(a, b, tolerance: float = 1e-9) -> bool:
    """Equal results, numbers to ``tolerance`` (IoU sums added in another order differ in the last bits)."""
    if isinstance(a, dict) and isinstance(b, dict):
        a, b = {str(k): v for k, v in a.items()}, {str(k): v for k, v in b.items()}
        return a.keys() == b.keys() and all(_same(a[k], b[k], tolerance) for k in a)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return abs(a - b) <= tolerance * max(1.0, abs(a), abs(b))
    return a == b

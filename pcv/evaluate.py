r"""Score a trained checkpoint: ``python -m pcv.evaluate --workdir=...``.

    python -m pcv.evaluate --workdir=workdir/synthetic                 # newest checkpoint, val split
    python -m pcv.evaluate --workdir=workdir/synthetic --step=1000 --flip
    python -m pcv.evaluate --workdir=gs://bucket/run --config.inference.threshold=2.0
    python -m pcv.evaluate --workdir=... --out_dir=/tmp/eval --num_images=100
    python -m pcv.evaluate --workdir=... --report=8      # + report.json and worst.png: where it fails
    python -m pcv.evaluate --workdir=... --calibrate     # choose the post-processing first (pcv.evaluation.calibration)

It restores the checkpoint, predicts every image of the split (sharded over
the devices and hosts), writes the predictions as COCO panoptic files to
``<workdir>/eval/<split>_step<N>[_flip]/`` (``panoptic/*.png``,
``predictions.json`` with the original image sizes and the dataset's
category ids, ``gt/`` when the dataset has no files of its own,
``results.json``), scores those files with :func:`pcv.evaluation.pq_compute`
and prints the PQ table, with the mIoU of the semantic map and (with
pycocotools installed) the COCO instance AP of the thing segments
(:mod:`pcv.evaluation.metrics`; their detections are in ``instances.json``,
COCO's results format). ``--report=N`` adds ``report.json``, every image's
PQ and per-class TP / FP / FN from worst to best, and ``worst.png``, the N
worst images as input | ground truth | prediction | heatmap. ``--config.data.*`` and ``--config.inference.*``
change what is evaluated (not the model). The same files rescore with
``python -m pcv.pq``. Library: :func:`pcv.evaluation.workdir_eval.evaluate_workdir`.
"""

from __future__ import annotations

import sys

from absl import flags

from pcv import cli
from pcv.errors import ConfigError
from pcv.evaluation.workdir_eval import evaluate_workdir
from pcv.runtime import distributed

#: What evaluating a trained model may change: the data it is scored on and how (not the model).
OVERRIDES = ("data.*", "inference.*", "eval_batch_size", "num_devices")


def main(argv=None) -> int:
    fv = cli.new_flags()
    flags.DEFINE_string("workdir", None, "The trainer's work dir (local or gs://).", flag_values=fv)
    flags.DEFINE_integer("step", None, "Checkpoint step (default: the newest).", flag_values=fv)
    flags.DEFINE_string("split", "val", "Split to evaluate: val, train or calibration.", flag_values=fv)
    flags.DEFINE_string("out_dir", None, "Output folder (default <workdir>/eval/<split>_step<N>).", flag_values=fv)
    flags.DEFINE_bool("flip", False, "Horizontal-flip test-time augmentation.", flag_values=fv)
    flags.DEFINE_integer("num_images", None, "Evaluate only the first N images.", flag_values=fv)
    flags.DEFINE_integer("workers", None, "Scoring processes (default: by set size; 0 = in-process).", flag_values=fv)
    flags.DEFINE_bool(
        "calibrate",
        False,
        "First choose threshold, top_t and min_stuff_area by PQ on the calibration split, store them "
        "(calibration.json), then evaluate with them.",
        flag_values=fv,
    )
    flags.DEFINE_integer(
        "report",
        0,
        "Also write report.json (per-image PQ and per-class TP/FP/FN, worst first) and worst.png, "
        "a picture sheet of the N worst images.",
        flag_values=fv,
    )
    flags.DEFINE_bool(
        "calibrated", True, "Use the work dir's calibrated post-processing when it has one.", flag_values=fv
    )

    def program(args, overrides):
        if fv.workdir is None:
            raise ConfigError("--workdir is required: the trainer's work dir")
        if len(args) > 1:
            raise ConfigError(f"unexpected arguments {args[1:]}; flags are --name=value")
        distributed.initialize()
        evaluate_workdir(
            fv.workdir,
            fv.step,
            split=fv.split,
            out_dir=fv.out_dir,
            flip=fv.flip,
            num_images=fv.num_images,
            overrides=overrides,
            num_workers=fv.workers,
            calibrated=fv.calibrated,
            report=fv.report,
            calibrate=fv.calibrate,
        )
        return 0

    return cli.run(fv, program, argv, overrides=OVERRIDES)


if __name__ == "__main__":
    sys.exit(main())

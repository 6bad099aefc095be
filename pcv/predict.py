r"""Run a trained model on your own images: ``python -m pcv.predict --workdir=... PATH...``.

    python -m pcv.predict --workdir=workdir/synthetic photos/ cat.jpg
    python -m pcv.predict --workdir=workdir/synthetic --out_dir=/tmp/pred --heatmap --flip img.png
    python -m pcv.predict --workdir=... --config.inference.threshold=2.0 img.png

PATHs are image files (JPEG, PNG, or anything Pillow reads; 16-bit images
are scaled to 8 bits) or folders (their ``*.jpg``, ``*.jpeg``, ``*.png``,
not recursive). Each image, of any size, goes through the work dir's
:class:`pcv.Predictor` and comes back at its own size. For each image
``<stem>`` the output folder (default ``<workdir>/predict``) gets:

    <stem>.png            COCO panoptic PNG (segment id = R + 256 G + 256^2 B)
    <stem>.json           file_name, height, width, segments_info (id,
                          category_id, category_name, isthing, area, bbox,
                          and for instances score, class_score, peak_heat)
    <stem>_overlay.png    the segmentation over the image, each instance
                          labelled with its class and score, and a legend
    <stem>_heatmap.png    with --heatmap: the vote heatmap, peaks marked

and ``predictions.json`` holds all of them in COCO panoptic format (images,
annotations, categories). Unreadable files are named on stderr and
skipped; the exit code is 1 only when no image could be read.
"""

from __future__ import annotations

import sys

from absl import flags

from pcv import cli
from pcv.errors import ConfigError
from pcv.inference.predict_files import predict_paths
from pcv.inference.predictor import Predictor
from pcv.runtime.workdir import PREDICT


def main(argv=None) -> int:
    fv = cli.new_flags()
    flags.DEFINE_string("workdir", None, "The trainer's work dir (local or gs://).", flag_values=fv)
    flags.DEFINE_integer("step", None, "Checkpoint step (default: the newest).", flag_values=fv)
    flags.DEFINE_string("out_dir", None, "Output folder (default <workdir>/predict).", flag_values=fv)
    flags.DEFINE_bool("heatmap", False, "Also draw the vote heatmap with its peaks.", flag_values=fv)
    flags.DEFINE_bool("flip", False, "Horizontal-flip test-time augmentation.", flag_values=fv)
    flags.DEFINE_bool(
        "calibrated", True, "Use the work dir's calibrated post-processing when it has one.", flag_values=fv
    )

    def program(args, overrides):
        if fv.workdir is None:
            raise ConfigError("--workdir is required: the trainer's work dir")
        if len(args) < 2:
            raise ConfigError("give at least one image file or folder")
        predictor = Predictor.from_workdir(
            fv.workdir, fv.step, overrides=overrides, calibrated=fv.calibrated, flip=fv.flip
        )
        out_dir = fv.out_dir or f"{str(fv.workdir).rstrip('/')}/{PREDICT}"
        summary = predict_paths(predictor, args[1:], out_dir, heatmap=fv.heatmap)
        n, skipped = len(summary["predicted"]), summary["skipped"]
        line = f"predicted {n} image(s) into {out_dir}"
        if skipped:
            line += f"; skipped {len(skipped)}: " + ", ".join(p for p, _ in skipped)
        print(line, file=sys.stderr if skipped else sys.stdout)
        return 0 if n else 1

    return cli.run(fv, program, argv, overrides=cli.MODEL_SETTINGS)


if __name__ == "__main__":
    sys.exit(main())

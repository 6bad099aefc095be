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

import os
import sys
from collections.abc import Sequence
from pathlib import Path

from absl import flags

from pcv import cli, viz
from pcv.errors import ConfigError, DataError
from pcv.evaluation.coco_files import CocoPanopticWriter
from pcv.predictor import Predictor, read_image
from pcv.workdir import PREDICT, as_path, write_atomic, write_json

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def collect_images(paths: Sequence[str | os.PathLike]) -> tuple[list[Path], list[tuple[str, str]]]:
    """``(image files, problems)``: files as given, folders expanded to their images (sorted).

    ``problems`` lists ``(path, reason)`` for paths that do not exist and
    folders with no images.
    """
    files, problems = [], []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            found = sorted(f for f in path.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                problems.append((str(path), f"folder has no {'/'.join(IMAGE_SUFFIXES)} files"))
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            problems.append((str(path), "no such file or folder"))
    return files, problems


def _unique_stem(path: Path, used: set[str]) -> str:
    stem, n = path.stem, 1
    while stem in used:  # same name in two folders
        stem, n = f"{path.stem}_{n}", n + 1
    used.add(stem)
    return stem


def predict_paths(
    predictor: Predictor, paths: Sequence[str | os.PathLike], out_dir, *, heatmap: bool = False, log=print, warn=None
) -> dict:
    """Predict every readable image under ``paths`` and write the outputs (module docstring).

    Returns ``{"predicted": [{"file", "stem", "segments_info", "height",
    "width"}], "skipped": [(path, reason)], "predictions_json": path}``.
    """
    warn = warn or (lambda msg: print(msg, file=sys.stderr))
    out = as_path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files, skipped = collect_images(paths)
    for path, reason in skipped:
        warn(f"skipping {path}: {reason}")
    categories = [dict(c) for c in predictor.label_space.categories]
    writer = CocoPanopticWriter(
        out, categories, png_folder=".", info={"description": f"pcv predictions, step {predictor.step}"}
    )
    predicted, used = [], set()
    for path in files:
        try:
            rgb = read_image(path)
        except DataError as e:
            warn(f"skipping {e}")
            skipped.append((str(path), str(e)))
            continue
        result = predictor(rgb)
        stem = _unique_stem(path, used)
        h, w = rgb.shape[:2]
        writer.add(stem, len(predicted), result.ids, result.segments_info, file_name=path.name)
        write_json(
            out / f"{stem}.json",
            {"file_name": str(path), "height": h, "width": w, "segments_info": result.segments_info},
        )
        fig = viz.overlay(rgb, result.ids, result.segments_info, categories, title=path.name)
        write_atomic(out / f"{stem}_overlay.png", viz.figure_png(fig))
        if heatmap:
            fig = viz.heatmap(
                rgb,
                result.heatmap,
                peaks=result.peaks,
                valid=result.instance_valid,
                scale=result.scale,
                title=f"{path.name}: vote heatmap",
            )
            write_atomic(out / f"{stem}_heatmap.png", viz.figure_png(fig))
        predicted.append(
            {"file": str(path), "stem": stem, "segments_info": result.segments_info, "height": h, "width": w}
        )
        things = sum(s["isthing"] for s in result.segments_info)
        log(f"{path}: {things} instance(s), {len(result.segments_info) - things} stuff segment(s) -> {out / stem}.png")
    files_written = writer.close()
    return {"predicted": predicted, "skipped": skipped, "predictions_json": str(files_written["json"])}


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
        inference = cli.inference_overrides(overrides, "predicting")
        predictor = Predictor.from_workdir(
            fv.workdir, fv.step, inference=inference, calibrated=fv.calibrated, flip=fv.flip
        )
        out_dir = fv.out_dir or f"{str(fv.workdir).rstrip('/')}/{PREDICT}"
        summary = predict_paths(predictor, args[1:], out_dir, heatmap=fv.heatmap)
        n, skipped = len(summary["predicted"]), summary["skipped"]
        line = f"predicted {n} image(s) into {out_dir}"
        if skipped:
            line += f"; skipped {len(skipped)}: " + ", ".join(p for p, _ in skipped)
        print(line, file=sys.stderr if skipped else sys.stdout)
        return 0 if n else 1

    return cli.run(fv, program, argv)


if __name__ == "__main__":
    sys.exit(main())

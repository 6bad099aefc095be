r"""Run a trained PCV model on your own images: ``python -m pcv.predict --workdir=... PATH...``.

    python -m pcv.predict --workdir=workdir/synthetic photos/ cat.jpg
    python -m pcv.predict --workdir=workdir/synthetic --out_dir=/tmp/pred --heatmap --flip img.png

PATHs are image files (JPEG, PNG, or anything Pillow reads) or folders (their
``*.jpg``, ``*.jpeg``, ``*.png``, not recursive). Images of any size are
resized to fit the size the model was trained at, padded to a multiple of 32,
and the prediction is mapped back to the original size (nearest neighbour).
For each image ``<stem>`` the output folder (default ``<workdir>/predict``)
gets:

    <stem>.png            COCO panoptic PNG (segment id = R + 256 G + 256^2 B)
    <stem>.json           file_name, height, width, segments_info (id,
                          category_id, category_name, isthing, area, bbox)
    <stem>_overlay.png    the segmentation over the image, legend of classes
    <stem>_heatmap.png    with --heatmap: the vote heatmap, peaks marked

and ``predictions.json`` holds all of them in COCO panoptic format (images,
annotations, categories) for the COCO tools. Unreadable files are reported
by name on stderr and skipped; the exit status is non-zero only when no
image could be read.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from pcv import evaluate as pcv_evaluate
from pcv import viz
from pcv.evaluation import id2rgb
from pcv.inference import to_coco_panoptic

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


class UnreadableImage(ValueError):
    """An input that is not an image Pillow can decode (the message names the file)."""


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


def read_image(path: str | os.PathLike) -> np.ndarray:
    """uint8 RGB ``[H, W, 3]`` of an image file (EXIF rotation applied; grey, palette, alpha -> RGB).

    Raises :class:`UnreadableImage` naming the file if it cannot be decoded.
    """
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            rgb = np.asarray(im.convert("RGB"))
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise UnreadableImage(f"{path}: not a readable image ({type(e).__name__}: {e})") from None
    if rgb.ndim != 3 or rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise UnreadableImage(f"{path}: empty image {rgb.shape}")
    return rgb


def _unique_stem(path: Path, used: set[str]) -> str:
    stem, n = path.stem, 1
    while stem in used:  # same name in two folders
        stem, n = f"{path.stem}_{n}", n + 1
    used.add(stem)
    return stem


def predict_images(
    model: pcv_evaluate.TrainedModel,
    paths: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    heatmap: bool = False,
    flip: bool = False,
    log=print,
    warn=None,
) -> dict:
    """Predict every readable image under ``paths`` and write the outputs (module docstring).

    Args:
      model: from :func:`pcv.evaluate.restore_model`.
      paths: files and folders.
      out_dir: created if needed.
      heatmap: also draw the vote heatmap.
      flip: horizontal-flip test-time augmentation.
      log, warn: progress lines and per-file problems (default: stdout,
        stderr).
    Returns:
      ``{"predicted": [{"file", "stem", "segments_info", ...}], "skipped":
      [(path, reason)], "predictions_json": path}``.
    """
    warn = warn or (lambda msg: print(msg, file=sys.stderr))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files, skipped = collect_images(paths)
    for path, reason in skipped:
        warn(f"skipping {path}: {reason}")
    labels = model.label_space
    categories = [dict(c) for c in labels.categories]
    name_of = {int(c["id"]): str(c.get("name", c["id"])) for c in categories}
    predict_fn = pcv_evaluate.make_predict_fn(model.graphdef, model.config, model.grid, labels.thing_mask, flip=flip)

    predicted, images, annotations, used = [], [], [], set()
    for path in files:
        try:
            rgb = read_image(path)
        except UnreadableImage as e:
            warn(f"skipping {e}")
            skipped.append((str(path), str(e)))
            continue
        image_id = len(predicted)
        padded, meta = pcv_evaluate.preprocess({"image": rgb, "image_id": image_id}, model.config)
        result = predict_fn(model.state, padded[None])
        one = pcv_evaluate.result_to_original({k: np.asarray(v)[0] for k, v in result.items()}, meta)
        id_map, segments = to_coco_panoptic(one, labels.category_ids, labels.thing_mask)
        for seg in segments:
            seg["category_name"] = name_of[seg["category_id"]]

        stem = _unique_stem(path, used)
        h, w = rgb.shape[:2]
        Image.fromarray(id2rgb(id_map)).save(out / f"{stem}.png")
        record = {"file_name": str(path), "height": h, "width": w, "segments_info": segments}
        (out / f"{stem}.json").write_text(json.dumps(record, indent=1) + "\n")
        fig = viz.overlay(rgb, id_map, segments, categories, title=path.name)
        fig.savefig(out / f"{stem}_overlay.png")
        if heatmap:
            hh, hw = viz.valid_map_size(meta)
            fig = viz.heatmap(
                rgb, one["heatmap"][:hh, :hw], peaks=one["peaks"], valid=one["instance_valid"],
                scale=viz.map_scale(meta), title=f"{path.name}: vote heatmap",
            )
            fig.savefig(out / f"{stem}_heatmap.png")
        images.append({"id": image_id, "file_name": path.name, "height": h, "width": w})
        annotations.append({"image_id": image_id, "file_name": f"{stem}.png", "segments_info": segments})
        predicted.append({"file": str(path), "stem": stem, "segments_info": segments, "height": h, "width": w})
        things = sum(s["isthing"] for s in segments)
        log(f"{path}: {things} instance(s), {len(segments) - things} stuff segment(s) -> {out / stem}.png")

    predictions_json = out / "predictions.json"
    predictions_json.write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": categories}) + "\n"
    )
    return {"predicted": predicted, "skipped": skipped, "predictions_json": str(predictions_json)}


def main(argv=None) -> int:
    from absl import app, flags
    from ml_collections import config_flags

    config_flags.DEFINE_config_file("config", None, "Config file (path[:variant]); default <workdir>/config.json.")
    flags.DEFINE_string("workdir", None, "The trainer's work dir (checkpoints, config.json).", required=True)
    flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")
    flags.DEFINE_string("out_dir", None, "Output folder (default <workdir>/predict).")
    flags.DEFINE_bool("heatmap", False, "Also draw the vote heatmap with its peaks.")
    flags.DEFINE_bool("flip", False, "Horizontal-flip test-time augmentation.")

    def run(paths):
        from absl import logging

        logging.set_verbosity(logging.WARNING)
        f = flags.FLAGS
        if len(paths) < 2:
            print("error: give at least one image file or folder", file=sys.stderr)
            sys.exit(2)
        try:
            model = pcv_evaluate.restore_model(f.workdir, f.config, f.step)
        except (ValueError, FileNotFoundError) as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(1)
        out_dir = f.out_dir or os.path.join(f.workdir, "predict")
        summary = predict_images(model, paths[1:], out_dir, heatmap=f.heatmap, flip=f.flip)
        n, skipped = len(summary["predicted"]), summary["skipped"]
        line = f"predicted {n} image(s) into {out_dir}"
        if skipped:
            line += f"; skipped {len(skipped)}: " + ", ".join(p for p, _ in skipped)
        print(line, file=sys.stderr if skipped else sys.stdout)
        sys.exit(0 if n else 1)

    app.run(run, argv=argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())

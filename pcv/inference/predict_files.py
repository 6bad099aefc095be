"""Predicting image files and writing the answers: ``python -m pcv.predict``'s library part.

For each readable image (JPEG, PNG, or anything Pillow reads; 16-bit images
are scaled to 8 bits) the output folder gets ``<stem>.png`` (COCO panoptic
PNG), ``<stem>.json`` (segments), ``<stem>_overlay.png`` and, on request,
``<stem>_heatmap.png``; ``predictions.json`` holds all of them in COCO
panoptic format. Unreadable files are named and skipped.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from pcv import viz
from pcv.data.coco_files import CocoPanopticWriter
from pcv.data.coco_panoptic import to_rgb8
from pcv.errors import DataError
from pcv.inference.predictor import Predictor
from pcv.runtime.files import write_atomic, write_json
from pcv.runtime.paths import as_path

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


def read_image(path: str | os.PathLike) -> np.ndarray:
    """uint8 RGB ``[H, W, 3]`` of an image file (EXIF rotation applied; grey, palette, alpha, 16-bit -> RGB).

    Raises :class:`pcv.errors.DataError` naming the file if it cannot be decoded.
    """
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            rgb = to_rgb8(im)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"{path}: not a readable image ({type(e).__name__}: {e})") from None
    if rgb.ndim != 3 or rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise DataError(f"{path}: empty image {rgb.shape}")
    return rgb

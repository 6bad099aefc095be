"""Throughput of the training input pipeline at COCO settings: ``python -m pcv.bench pipeline``."""

from __future__ import annotations

import io
import json
import os
import time

import numpy as np
from PIL import Image

from pcv.config import DataConfig
from pcv.data import SyntheticPanoptic, pipeline
from pcv.data.panoptic import LabelSpace
from pcv.evaluation.pq import id2rgb
from pcv.voting import DEFAULT_GRID


class EncodedPanoptic:
    """COCO-like source of encoded files: ``[i]`` decodes a JPEG and a panoptic PNG (like a real reader)."""

    categories = None

    def __init__(self, files, categories, length):

        self.files = files  # [(jpeg bytes, png bytes, segments_info)]
        self.categories = categories
        self.label_space = LabelSpace(categories)
        self.length = length

    def __len__(self):
        return self.length

    def __getitem__(self, i):

        jpeg, png, info = self.files[int(i) % len(self.files)]
        image = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))
        rgb = np.asarray(Image.open(io.BytesIO(png)), np.int32)
        ids = rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]
        return {"image": image, "segment_ids": ids, "segments_info": info, "image_id": int(i)}


def coco_like_files(source_size: tuple[int, int] | None, coco_sample: str | None = None):
    """``(files, categories, description)``: a COCO panoptic sample folder, or synthetic files of ``source_size``.

    ``coco_sample`` is a folder with ``panoptic.json``, ``panoptic/`` and
    ``images/`` (like the tests' sample); without one (or with
    ``source_size``) synthetic 640 x 480 files are encoded here.
    """
    if source_size is None and coco_sample and os.path.exists(os.path.join(coco_sample, "panoptic.json")):
        with open(os.path.join(coco_sample, "panoptic.json")) as f:
            gt = json.load(f)
        files = []
        for ann in gt["annotations"]:
            stem = os.path.splitext(ann["file_name"])[0]
            with open(os.path.join(coco_sample, "images", stem + ".jpg"), "rb") as f:
                jpeg = f.read()
            with open(os.path.join(coco_sample, "panoptic", ann["file_name"]), "rb") as f:
                png = f.read()
            files.append((jpeg, png, ann["segments_info"]))
        sizes = ", ".join(f"{im['height']}x{im['width']}" for im in gt["images"])
        return files, gt["categories"], f"COCO sample ({sizes})"

    h, w = source_size or (480, 640)
    ds = SyntheticPanoptic("val", size=(h, w), num_examples=2, seed=0)
    files = []
    for n in range(2):
        ex = ds[n]
        jpeg, png = io.BytesIO(), io.BytesIO()
        Image.fromarray(ex["image"]).save(jpeg, "JPEG", quality=90)
        Image.fromarray(id2rgb(ex["segment_ids"])).save(png, "PNG")
        files.append((jpeg.getvalue(), png.getvalue(), ex["segments_info"]))
    return files, ds.categories, f"synthetic {h}x{w}"


def bench_pipeline(
    crop: int, base_size: int, batch: int, repeats: int, workers: list[int], source_size=None, coco_sample=None
) -> list[dict]:
    """Images per second of this host's training input pipeline (module docstring)."""
    files, categories, what = coco_like_files(source_size, coco_sample)
    source = EncodedPanoptic(files, categories, length=10_000)
    print(f"  source: {what}, crop {crop}x{crop}, scale 0.5-2.0 of shorter side {base_size}, K={DEFAULT_GRID.num_bins}")
    rows = []

    def row(name, seconds, images, cpu_seconds=None):
        ips = images / seconds
        r = {"what": name, "images": images, "seconds": round(seconds, 6), "images_per_second": round(ips, 2)}
        line = f"  {name:<44} {ips:8.2f} img/s  ({1e3 / ips:7.1f} ms/img)"
        if cpu_seconds is not None:  # CPU time of this process (all threads): load-independent cost
            r["cpu_ms_per_image"] = round(1e3 * cpu_seconds / images, 3)
            line += f"  cpu {r['cpu_ms_per_image']:6.1f} ms/img"
        rows.append(r)
        print(line, flush=True)

    n = max(batch * repeats, 4)
    source[0]  # warm imports
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(n):
        source[i]
    row("decode JPEG + PNG only (floor, 1 thread)", time.perf_counter() - t0, n, time.process_time() - c0)

    configs = []
    for w in workers:
        configs += [(0, 1), (0, 2)] if w == 0 else [(w, 1)]
    for num_workers, threads in configs:
        data = DataConfig(
            crop_size=(crop, crop),
            scale_range=(0.5, 2.0),
            base_size=base_size,
            hflip=True,
            num_workers=num_workers,
            read_threads=threads,
        )
        ds = pipeline.train_dataset(
            source, DEFAULT_GRID, data, batch_size=batch, seed=0, process_index=0, process_count=1
        )
        it = iter(ds)
        try:
            for _ in range(2):  # start-up: worker processes, first batches
                next(it)
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(repeats):
                next(it)
            seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        finally:
            if hasattr(it, "close"):
                it.close()
        name = f"pipeline, {num_workers} workers" if num_workers else f"pipeline, in-process, {threads} thread(s)"
        row(name, seconds, batch * repeats, None if num_workers else cpu)
    return rows

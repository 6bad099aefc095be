"""The COCO panoptic sample the tests read (not a test module).

The annotations and panoptic PNGs live in the repository
(``tests/data/coco_panoptic_sample``, see its README). The two photographs
may not: :data:`SAMPLE` is a folder laid out like the official release
(``panoptic.json``, ``panoptic/``, ``images/``, ``categories.json``) whose
``images/`` are the real photographs when they can be found, else stand-ins
generated at the same sizes. Found means: ``$PCV_SHARED_DATA/coco_panoptic_sample/images``,
or, with ``PCV_SHARED_DATA`` unset, ``../shared/data/coco_panoptic_sample/images``
next to the checkout. ``PCV_SHARED_DATA=none`` (or empty) switches the
lookup off, as in a fresh clone. :data:`REAL_PHOTOS` says which it is.

The folder is built once per test process in a temporary directory that is
removed when the process exits.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

REPO_SAMPLE = Path(__file__).resolve().parent / "data" / "coco_panoptic_sample"


def photo_folder() -> Path | None:
    """The folder of the real sample photographs, or None (module docstring)."""
    setting = os.environ.get("PCV_SHARED_DATA")
    if setting is None:
        root = Path(__file__).resolve().parents[2] / "shared" / "data"
    elif setting.strip().lower() in ("", "none", "0", "off"):
        return None
    else:
        root = Path(setting)
    folder = root / "coco_panoptic_sample" / "images"
    return folder if folder.is_dir() and any(folder.glob("*.jpg")) else None


def stand_in_photo(ids: np.ndarray, colours: dict[int, tuple[int, int, int]], seed: int) -> np.ndarray:
    """A picture of a panoptic label: each segment in its category's colour, plus texture noise."""
    rng = np.random.default_rng(seed)
    out = np.full(ids.shape + (3,), 40, np.float32)  # void: dark grey
    for segment_id, colour in colours.items():
        out[ids == segment_id] = colour
    out += rng.normal(0, 12, out.shape)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _build() -> tuple[Path, bool]:
    root = Path(tempfile.mkdtemp(prefix="pcv_coco_sample_"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    sample = root / "coco_panoptic_sample"
    shutil.copytree(REPO_SAMPLE, sample)
    for path in [sample, *sample.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    images = sample / "images"
    images.mkdir()
    real = photo_folder()
    data = json.loads((sample / "panoptic.json").read_text())
    category_colour = {c["id"]: tuple(c["color"]) for c in data["categories"]}
    for n, (image, ann) in enumerate(zip(data["images"], data["annotations"])):
        if real is not None:
            shutil.copy(real / image["file_name"], images / image["file_name"])
            continue
        rgb = np.asarray(Image.open(sample / "panoptic" / ann["file_name"]), np.int64)
        ids = rgb[..., 0] + 256 * rgb[..., 1] + 256**2 * rgb[..., 2]
        colours = {s["id"]: category_colour[s["category_id"]] for s in ann["segments_info"]}
        assert ids.shape == (image["height"], image["width"])
        Image.fromarray(stand_in_photo(ids, colours, n)).save(images / image["file_name"], quality=90)
    return sample, real is not None


SAMPLE, REAL_PHOTOS = _build()

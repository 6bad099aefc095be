"""COCO panoptic files -> examples: a validating random-access source.

Reads any panoptic dataset in COCO panoptic format: an annotations JSON
(``images``, ``annotations`` with ``file_name`` and ``segments_info``,
``categories`` with ``id``, ``name``, ``isthing`` and ``color``), a folder of
PNGs with segment ids as RGB (id = R + 256 G + 256² B, 0 = void) and a
folder of images. Examples are the dicts of :mod:`pcv.data.panoptic`, plus
``panoptic_file_name`` (the PNG's name)::

    ds = COCOPanoptic("panoptic_val2017.json", "panoptic_val2017", "val2017")
    ds = coco2017("~/data/coco", "val")            # official zips or extracted
    ds = cityscapes("~/data/cityscapes", "val")     # after createPanopticImgs
    ex = ds[0]; ex["image"]  # uint8 [H, W, 3]; ex["segment_ids"] int32 [H, W]
    ds.label_space, ds.category_ids, ds.thing_mask, ds.num_classes

Validation (every problem names the file and, where there is one, the
segment id; the error type is :class:`PanopticDataError`, a ``ValueError``):

- at construction (JSON only, plus whether each file exists): unknown
  category id, duplicate segment id, segment id 0, annotation without an
  ``images`` entry, duplicate image id, missing PNG or image file;
- on reading an example (decoding both files): corrupt or truncated image
  or PNG, a PNG that is not RGB, image / PNG / JSON size mismatch, a PNG
  id with no ``segments_info`` entry or a segment with no pixels, a segment
  whose ``area`` or ``bbox`` disagrees with its pixels.

``on_error="skip"`` skips bad examples instead, never silently: each skip is
logged and recorded in ``skipped`` (file and reason), ``num_skipped`` counts
them. Problems found at construction are skipped there (the example is not
in the index); problems found only by decoding are skipped by
:meth:`COCOPanoptic.iter_records` (what ``python -m pcv.prepare`` uses), while
``ds[i]`` always raises, because a random-access source cannot drop an index
without shifting every later one. Prepare a dataset
(``python -m pcv.prepare``) to have every example checked once.

Images with no segments, or only crowd segments, are valid. Images are
decoded as stored (no EXIF rotation: annotations are in stored pixel
coordinates); greyscale and CMYK images are converted to RGB.

Files can live in folders or inside zip archives, read in place (no
extraction), including a zip inside a zip as in COCO's
``panoptic_annotations_trainval2017.zip``.
"""

from __future__ import annotations

import io
import json
import logging
import os
import struct
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from pcv.data.panoptic import LabelSpace, PanopticSource, segments_from_ids
from pcv.errors import DataError

log = logging.getLogger(__name__)

ON_ERROR = ("raise", "skip")


class PanopticDataError(DataError):
    """Bad panoptic data; the message names the file and, where there is one, the segment id."""


# ----------------------------------------------------------------------------
# File stores: folders and zip archives, read by relative name.
# ----------------------------------------------------------------------------


class FolderStore:
    """Files under a folder, by relative name (``/``-separated)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(os.path.expanduser(str(root)))
        if not self.root.is_dir():
            raise FileNotFoundError(f"folder {self.root} does not exist")

    def where(self, name: str) -> str:
        return str(self.root / name)

    def exists(self, name: str) -> bool:
        return (self.root / name).is_file()

    def read(self, name: str) -> bytes:
        return (self.root / name).read_bytes()

    def __repr__(self) -> str:
        return f"FolderStore({str(self.root)!r})"


class ZipStore:
    """Files inside a zip archive under ``prefix``, read in place.

    ``nested`` names a zip *inside* ``path`` that holds the files (COCO ships
    the panoptic PNGs as ``annotations/panoptic_val2017.zip`` inside
    ``panoptic_annotations_trainval2017.zip``). A nested zip stored without
    compression is read through a window on the outer file (random access,
    no copy); a compressed one is decompressed once to memory, since seeking
    backwards in a deflate stream restarts it from the beginning.

    Picklable: open handles are dropped and reopened lazily (one per process,
    as grain workers need).
    """

    def __init__(self, path: str | os.PathLike, prefix: str = "", nested: str | None = None):
        self.path = Path(os.path.expanduser(str(path)))
        self.prefix = prefix
        self.nested = nested
        self._zip: zipfile.ZipFile | None = None
        self._names: frozenset[str] | None = None

    def _open(self) -> zipfile.ZipFile:
        if self._zip is None:
            outer = zipfile.ZipFile(self.path)
            if self.nested is None:
                self._zip = outer
            else:
                try:
                    info = outer.getinfo(self.nested)
                except KeyError:
                    raise FileNotFoundError(f"{self.path} has no member {self.nested}") from None
                if info.compress_type == zipfile.ZIP_STORED:
                    self._zip = zipfile.ZipFile(
                        _Window(self.path, _member_data_offset(self.path, info), info.file_size)
                    )
                else:
                    self._zip = zipfile.ZipFile(io.BytesIO(outer.read(info)))
                outer.close()
            self._names = frozenset(self._zip.namelist())
        return self._zip

    def where(self, name: str) -> str:
        inner = f"{self.nested}:" if self.nested else ""
        return f"{self.path}:{inner}{self.prefix}{name}"

    def exists(self, name: str) -> bool:
        self._open()
        return self.prefix + name in self._names

    def read(self, name: str) -> bytes:
        try:
            return self._open().read(self.prefix + name)
        except KeyError:
            raise FileNotFoundError(f"no file {self.where(name)}") from None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_zip"] = state["_names"] = None
        return state

    def __repr__(self) -> str:
        return f"ZipStore({str(self.path)!r}, prefix={self.prefix!r}, nested={self.nested!r})"


def _member_data_offset(path: Path, info: zipfile.ZipInfo) -> int:
    """Byte offset of a zip member's data: after its local header (30 bytes + name + extra)."""
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        header = f.read(30)
    if header[:4] != b"PK\x03\x04":
        raise PanopticDataError(f"{path}: corrupt local header for member {info.filename}")
    name_len, extra_len = struct.unpack("<HH", header[26:30])
    return info.header_offset + 30 + name_len + extra_len


class _Window(io.RawIOBase):
    """A read-only seekable view of ``size`` bytes of a file from ``start``."""

    def __init__(self, path: Path, start: int, size: int):
        self._f = open(path, "rb")
        self._start, self._size, self._pos = start, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer) -> int:
        n = max(0, min(len(buffer), self._size - self._pos))
        self._f.seek(self._start + self._pos)
        data = self._f.read(n)
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def close(self) -> None:
        self._f.close()
        super().close()


def as_store(location) -> FolderStore | ZipStore:
    """A store as is, or a :class:`FolderStore` for a folder path."""
    if isinstance(location, (FolderStore, ZipStore)):
        return location
    return FolderStore(location)


# ----------------------------------------------------------------------------
# The source
# ----------------------------------------------------------------------------


def check_categories(categories, where: str) -> list[dict]:
    """The JSON's category list, checked: each has an int ``id``, ``isthing``; ids unique."""
    if not isinstance(categories, list) or not categories:
        raise PanopticDataError(f"{where}: 'categories' must be a non-empty list, got {type(categories).__name__}")
    out, seen = [], set()
    for c in categories:
        if not isinstance(c, Mapping) or "id" not in c or "isthing" not in c:
            raise PanopticDataError(f"{where}: category {c!r} needs at least 'id' and 'isthing'")
        cid = int(c["id"])
        if cid in seen:
            raise PanopticDataError(f"{where}: category id {cid} appears twice")
        seen.add(cid)
        cat = dict(c)
        cat["id"], cat["isthing"] = cid, int(bool(c["isthing"]))
        cat.setdefault("name", str(cid))
        out.append(cat)
    return out


class COCOPanoptic(PanopticSource):
    """Random access over a COCO-format panoptic dataset (module docstring).

    Args:
      annotations: the annotations JSON: a path, or the parsed dict.
      png_dir: the panoptic PNGs: a folder path or a store
        (:class:`FolderStore`, :class:`ZipStore`).
      image_dir: the images: a folder path or a store.
      split: the split's name (for messages and exported file names).
      on_error: ``"raise"`` or ``"skip"`` (module docstring).
      image_name: maps an ``images[...]["file_name"]`` to its path in
        ``image_dir`` (Cityscapes keeps images in per-city folders); must
        be picklable (a module-level function). Default: unchanged.
      where: how to name the JSON in messages (default: its path).

    Attributes:
      categories: the JSON's category dicts, in the JSON's order.
      label_space: :class:`~pcv.data.panoptic.LabelSpace`; ``category_ids``
        (train id -> category id), ``thing_mask`` bool ``[C]``,
        ``num_classes`` C come from it.
      skipped: list of ``{"file", "reason"}`` of skipped examples.
      num_skipped: ``len(skipped)``.
    """

    def __init__(
        self,
        annotations: str | os.PathLike | Mapping,
        png_dir,
        image_dir,
        *,
        split: str = "data",
        on_error: str = "raise",
        image_name: Callable[[str], str] | None = None,
        where: str | None = None,
    ):
        if on_error not in ON_ERROR:
            raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
        self.split = split
        self.on_error = on_error
        self.png_store = as_store(png_dir)
        self.image_store = as_store(image_dir)
        self.image_name = image_name
        self.skipped: list[dict] = []
        if isinstance(annotations, Mapping):
            data, self.where = annotations, where or "<annotations>"
        else:
            path = Path(os.path.expanduser(str(annotations)))
            self.where = where or str(path)
            if not path.is_file():
                raise FileNotFoundError(f"annotations JSON {path} does not exist")
            try:
                with open(path, "rb") as f:
                    data = json.load(f)
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise PanopticDataError(f"{path}: not valid JSON ({e})") from e
        if not isinstance(data, Mapping):
            raise PanopticDataError(f"{self.where}: expected a JSON object, got {type(data).__name__}")
        for key in ("annotations", "images", "categories"):
            if not isinstance(data.get(key), list):
                raise PanopticDataError(f"{self.where}: needs a list {key!r} (COCO panoptic format)")
        self.categories = check_categories(data["categories"], self.where)
        self.label_space = LabelSpace(self.categories)
        self._records = self._index(data)
        if self.skipped:
            log.warning(
                "%s: skipped %d of %d annotations (on_error='skip')",
                self.where,
                len(self.skipped),
                len(self._records) + len(self.skipped),
            )

    # -- protocol ---------------------------------------------------------------

    @property
    def num_skipped(self) -> int:
        return len(self.skipped)

    def __len__(self) -> int:
        return len(self._records)

    def __getitem__(self, index: int) -> dict:
        """Example ``index`` (module docstring); raises :class:`PanopticDataError` on bad files."""
        return decode_record(self.read_record(self._position(index)))

    def __repr__(self) -> str:
        return (
            f"COCOPanoptic(split={self.split!r}, {len(self)} examples, {self.num_classes} classes, json={self.where!r})"
        )

    # -- records: the encoded files plus the JSON's facts, validated --------------

    def read_record(self, index: int) -> dict:
        """The checked *record* of example ``index``: encoded files, not decoded arrays.

        Keys: ``image_bytes``, ``panoptic_bytes`` (the files as stored),
        ``image_id``, ``file_name`` (the image's), ``panoptic_file_name``,
        ``height``, ``width``, ``segments_info`` (each with ``area`` and
        ``bbox`` measured on the PNG: equal to the JSON's, which are
        checked, or filled in where the JSON leaves them out). Both files are
        decoded once to validate them (module docstring).
        """
        rec = self._records[self._position(index)]
        image_bytes = self._read(self.image_store, rec["image_path"], rec)
        panoptic_bytes = self._read(self.png_store, rec["panoptic_file_name"], rec)
        image = decode_image(image_bytes, self.image_store.where(rec["image_path"]))
        ids = _decode_panoptic(panoptic_bytes, self.png_store.where(rec["panoptic_file_name"]))
        measured = check_example(
            image,
            ids,
            rec["segments_info"],
            self.png_store.where(rec["panoptic_file_name"]),
            image_where=self.image_store.where(rec["image_path"]),
            size=(rec["height"], rec["width"]),
        )
        return {
            "image_bytes": image_bytes,
            "panoptic_bytes": panoptic_bytes,
            "image_id": rec["image_id"],
            "file_name": rec["file_name"],
            "panoptic_file_name": rec["panoptic_file_name"],
            "height": image.shape[0],
            "width": image.shape[1],
            "segments_info": measured,
        }

    def iter_records(self) -> Iterator[tuple[int, dict]]:
        """``(index, record)`` for every example, in order; with ``on_error="skip"``
        bad ones are skipped, logged and recorded in ``skipped``."""
        for i, rec in enumerate(self._records):
            try:
                yield i, self.read_record(i)
            except PanopticDataError as e:
                if self.on_error == "raise":
                    raise
                self._skip(self.png_store.where(rec["panoptic_file_name"]), str(e))

    # -- internals ----------------------------------------------------------------

    def _read(self, store, name: str, rec: Mapping) -> bytes:
        try:
            return store.read(name)
        except OSError as e:
            raise PanopticDataError(f"{store.where(name)}: cannot read ({e}); image id {rec['image_id']}") from e

    def _skip(self, file: str, reason: str) -> None:
        log.warning("skipping %s: %s", file, reason)
        self.skipped.append({"file": file, "reason": reason})

    def _index(self, data: Mapping) -> list[dict]:
        images: dict = {}
        for img in data["images"]:
            if not isinstance(img, Mapping) or "id" not in img or "file_name" not in img:
                raise PanopticDataError(f"{self.where}: images entry {img!r} needs 'id' and 'file_name'")
            if img["id"] in images:
                # Not skippable: which of the two entries an annotation means is unknowable.
                raise PanopticDataError(
                    f"{self.where}: image id {img['id']!r} appears twice in 'images' "
                    f"({images[img['id']]['file_name']} and {img['file_name']}); image ids must be unique"
                )
            images[img["id"]] = img
        known = self.label_space.train_id_of_category
        records, seen_images = [], set()
        for ann in data["annotations"]:
            try:
                records.append(self._check_annotation(ann, images, known, seen_images))
            except PanopticDataError as e:
                if self.on_error == "raise":
                    raise
                name = ann.get("file_name", "?") if isinstance(ann, Mapping) else "?"
                self._skip(self.png_store.where(str(name)), str(e))
        unused = len(images) - len(seen_images)
        if unused:
            # Not an error (COCO lists every image; a panoptic subset may not
            # annotate all), but said out loud so nothing vanishes silently.
            log.warning("%s: %d images have no panoptic annotation and are not used", self.where, unused)
        return records

    def _check_annotation(self, ann, images: Mapping, known: Mapping, seen_images: set) -> dict:
        if not isinstance(ann, Mapping) or "file_name" not in ann or "image_id" not in ann:
            raise PanopticDataError(f"{self.where}: annotation {str(ann)[:200]} needs 'file_name' and 'image_id'")
        png_name = str(ann["file_name"])
        png_where = self.png_store.where(png_name)
        image_id = ann["image_id"]
        if image_id not in images:
            raise PanopticDataError(f"{png_where}: image_id {image_id!r} has no entry in {self.where} 'images'")
        if image_id in seen_images:
            raise PanopticDataError(f"{png_where}: image_id {image_id!r} is annotated twice in {self.where}")
        seen_images.add(image_id)
        segments_info = ann.get("segments_info")
        if not isinstance(segments_info, list):
            raise PanopticDataError(f"{png_where}: 'segments_info' must be a list")
        segments, ids = [], set()
        for seg in segments_info:
            if not isinstance(seg, Mapping) or "id" not in seg or "category_id" not in seg:
                raise PanopticDataError(f"{png_where}: segment {seg!r} needs 'id' and 'category_id'")
            sid = int(seg["id"])
            if sid <= 0:
                raise PanopticDataError(f"{png_where}: segment id {sid} is not positive (0 means void)")
            if sid in ids:
                raise PanopticDataError(f"{png_where}: segment id {sid} appears twice in segments_info")
            ids.add(sid)
            cid = int(seg["category_id"])
            if cid not in known:
                raise PanopticDataError(
                    f"{png_where}: segment id {sid} has category_id {cid}, not among the {len(known)} categories"
                )
            out = {"id": sid, "category_id": cid, "iscrowd": int(seg.get("iscrowd", 0))}
            if "area" in seg:
                out["area"] = int(seg["area"])
            if "bbox" in seg:
                out["bbox"] = [int(round(float(v))) for v in seg["bbox"]]
            segments.append(out)
        img = images[image_id]
        file_name = str(img["file_name"])
        image_path = self.image_name(file_name) if self.image_name else file_name
        if not self.png_store.exists(png_name):
            raise PanopticDataError(f"{png_where}: panoptic PNG does not exist (image id {image_id!r})")
        if not self.image_store.exists(image_path):
            raise PanopticDataError(
                f"{self.image_store.where(image_path)}: image does not exist (annotation {png_name})"
            )
        return {
            "image_id": image_id,
            "file_name": file_name,
            "image_path": image_path,
            "panoptic_file_name": png_name,
            "height": int(img["height"]) if "height" in img else None,
            "width": int(img["width"]) if "width" in img else None,
            "segments_info": segments,
        }


# ----------------------------------------------------------------------------
# Decoding and checks (pure functions of bytes and arrays)
# ----------------------------------------------------------------------------


def decode_image(data: bytes, where: str) -> np.ndarray:
    """Encoded image -> uint8 ``[H, W, 3]`` RGB; errors name the file.

    Grey, palette, CMYK and alpha images become RGB. High bit depths are
    scaled to 8 bits, not clipped: 16-bit grey (``I;16``) by ``x * 255 /
    65535``, 32-bit integer and float images by their own range.
    """
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()  # decode now: a truncated file fails here, not later
            return to_rgb8(im)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise PanopticDataError(f"{where}: corrupt or unreadable image ({type(e).__name__}: {e})") from e


def to_rgb8(im: Image.Image) -> np.ndarray:
    """A decoded PIL image as uint8 RGB ``[H, W, 3]`` (:func:`decode_image` for the rules)."""
    if im.mode.startswith("I;16") or im.mode in ("I", "F"):
        x = np.asarray(im).astype(np.float64)
        if im.mode.startswith("I;16"):
            scale = 255.0 / 65535.0
            x = x * scale
        else:
            lo, hi = float(x.min(initial=0)), float(x.max(initial=0))
            x = (x - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(x)
        grey = np.clip(np.rint(x), 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=-1)
    rgb = im.convert("RGB") if im.mode != "RGB" else im
    return np.asarray(rgb, np.uint8).copy()


def _decode_panoptic(data: bytes, where: str) -> np.ndarray:
    """Panoptic PNG bytes -> int32 ``[H, W]`` segment ids (id = R + 256 G + 256² B)."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            mode = im.mode
            rgb = np.asarray(im)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise PanopticDataError(f"{where}: corrupt or unreadable panoptic PNG ({type(e).__name__}: {e})") from e
    if mode != "RGB":
        # A palette or grey PNG would give wrong ids silently; refuse it.
        raise PanopticDataError(f"{where}: panoptic PNG must be RGB (ids as R + 256 G + 256² B), got mode {mode}")
    rgb = rgb.astype(np.int32)  # widen before combining: 256 * G overflows uint8
    return rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]


def check_example(
    image: np.ndarray,
    segment_ids: np.ndarray,
    segments_info: Sequence[Mapping],
    where: str,
    *,
    image_where: str | None = None,
    size: tuple[int | None, int | None] = (None, None),
) -> list[dict]:
    """Raise :class:`PanopticDataError` unless image, id map and segments agree.

    Args:
      image: ``[H, W, 3]``; segment_ids: int ``[H, W]``, 0 = void.
      segments_info: the JSON's segments (``area`` / ``bbox`` checked when present).
      where: the PNG's name for messages; image_where: the image's.
      size: the JSON's ``(height, width)``, or ``None`` where not given.
    Returns:
      The segments as measured on the map (:func:`segments_from_ids`), in
      ``segments_info`` order: equal to it where it gives area and bbox.
    """
    image_where = image_where or where
    ih, iw = image.shape[:2]
    ph, pw = segment_ids.shape
    if (ih, iw) != (ph, pw):
        raise PanopticDataError(f"{where}: panoptic PNG is {ph}x{pw} (HxW) but image {image_where} is {ih}x{iw}")
    jh, jw = size
    if (jh is not None and jh != ih) or (jw is not None and jw != iw):
        raise PanopticDataError(f"{image_where}: image is {ih}x{iw} (HxW) but the JSON says {jh}x{jw}")
    listed = {int(s["id"]): s for s in segments_info}
    present = set(np.unique(segment_ids).tolist()) - {0}
    extra = sorted(present - set(listed))
    if extra:
        raise PanopticDataError(
            f"{where}: segment id {extra[0]} is in the PNG but not in segments_info"
            + (f" (and {len(extra) - 1} more: {extra[1:6]})" if len(extra) > 1 else "")
        )
    absent = sorted(set(listed) - present)
    if absent:
        raise PanopticDataError(
            f"{where}: segment id {absent[0]} in segments_info has no pixels in the PNG"
            + (f" (and {len(absent) - 1} more)" if len(absent) > 1 else "")
        )
    measured = segments_from_ids(
        segment_ids, {sid: (s["category_id"], s.get("iscrowd", 0)) for sid, s in listed.items()}
    )
    for m in measured:
        s = listed[m["id"]]
        if "area" in s and int(s["area"]) != m["area"]:
            raise PanopticDataError(
                f"{where}: segment id {m['id']} has area {s['area']} in the JSON, {m['area']} pixels in the PNG"
            )
        if "bbox" in s and list(s["bbox"]) != m["bbox"]:
            raise PanopticDataError(
                f"{where}: segment id {m['id']} has bbox {list(s['bbox'])} in the JSON, {m['bbox']} in the PNG"
            )
    by_id = {m["id"]: m for m in measured}
    return [by_id[int(s["id"])] for s in segments_info]


def decode_record(record: Mapping) -> dict:
    """A record (:meth:`COCOPanoptic.read_record`, or one read back from a
    prepared dataset) -> the example dict of :mod:`pcv.data.panoptic`."""
    pan_where = str(record.get("panoptic_file_name", "<panoptic>"))
    image = decode_image(record["image_bytes"], str(record.get("file_name", "<image>")))
    ids = _decode_panoptic(record["panoptic_bytes"], pan_where)
    if image.shape[:2] != ids.shape:
        raise PanopticDataError(f"{pan_where}: panoptic PNG is {ids.shape} but the image is {image.shape[:2]}")
    segments = []
    for s in record["segments_info"]:
        seg = {"id": int(s["id"]), "category_id": int(s["category_id"]), "iscrowd": int(s.get("iscrowd", 0))}
        if "area" in s:
            seg["area"] = int(s["area"])
        if "bbox" in s:
            seg["bbox"] = [int(v) for v in s["bbox"]]
        segments.append(seg)
    return {
        "image": image,
        "segment_ids": ids,
        "segments_info": segments,
        "image_id": record["image_id"],
        "file_name": record["file_name"],
        "panoptic_file_name": record.get("panoptic_file_name"),
    }


# ----------------------------------------------------------------------------
# Known layouts
# ----------------------------------------------------------------------------


def coco2017(manual_dir: str | os.PathLike, split: str, **kwargs) -> COCOPanoptic:
    """COCO 2017 panoptic ``split`` ("train" or "val") from the official files.

    ``manual_dir`` holds either the official zips, read in place::

        panoptic_annotations_trainval2017.zip   (annotations/panoptic_{split}2017.json
                                                 and a nested annotations/panoptic_{split}2017.zip)
        {split}2017.zip                         ({split}2017/*.jpg)

    or their extracted folders (folders win where both exist)::

        annotations/panoptic_{split}2017.json
        annotations/panoptic_{split}2017/*.png
        {split}2017/*.jpg

    ``kwargs`` go to :class:`COCOPanoptic` (e.g. ``on_error``).
    """
    if split not in ("train", "val"):
        raise ValueError(f"COCO 2017 panoptic split must be 'train' or 'val', got {split!r}")
    root = Path(os.path.expanduser(str(manual_dir)))
    if not root.is_dir():
        raise FileNotFoundError(f"manual_dir {root} does not exist")
    name = f"panoptic_{split}2017"
    ann_zip = root / "panoptic_annotations_trainval2017.zip"
    json_path = root / "annotations" / f"{name}.json"
    if json_path.is_file():
        annotations, where = json_path, str(json_path)
    elif ann_zip.is_file():
        member = f"annotations/{name}.json"
        with zipfile.ZipFile(ann_zip) as z:
            if member not in z.namelist():
                raise FileNotFoundError(f"{ann_zip} has no {member}")
            annotations, where = json.loads(z.read(member)), f"{ann_zip}:{member}"
    else:
        raise FileNotFoundError(f"no COCO panoptic annotations in {root}: expected {json_path} or {ann_zip}")
    png_folder = root / "annotations" / name
    if png_folder.is_dir():
        png_store = FolderStore(png_folder)
    elif ann_zip.is_file():
        png_store = ZipStore(ann_zip, prefix=f"{name}/", nested=f"annotations/{name}.zip")
    else:
        raise FileNotFoundError(f"no COCO panoptic PNGs in {root}: expected {png_folder}/ or {ann_zip}")
    image_folder, image_zip = root / f"{split}2017", root / f"{split}2017.zip"
    if image_folder.is_dir():
        image_store = FolderStore(image_folder)
    elif image_zip.is_file():
        image_store = ZipStore(image_zip, prefix=f"{split}2017/")
    else:
        raise FileNotFoundError(f"no COCO images in {root}: expected {image_folder}/ or {image_zip}")
    return COCOPanoptic(annotations, png_store, image_store, split=split, where=where, **kwargs)


def cityscapes_image_name(file_name: str) -> str:
    """Cityscapes image path below ``leftImg8bit/{split}/`` for an ``images`` file name.

    ``{city}_{seq}_{frame}_leftImg8bit.png`` lives in ``{city}/``; a name
    ending in ``_gtFine_panoptic.png`` (the PNG's) is mapped to the image's.
    """
    base = os.path.basename(file_name)
    if base.endswith("_gtFine_panoptic.png"):
        base = base[: -len("_gtFine_panoptic.png")] + "_leftImg8bit.png"
    elif not base.endswith("_leftImg8bit.png"):
        stem = os.path.splitext(base)[0]
        base = stem + "_leftImg8bit.png"
    return f"{base.split('_')[0]}/{base}"


def cityscapes(manual_dir: str | os.PathLike, split: str, **kwargs) -> COCOPanoptic:
    """Cityscapes ``split`` after cityscapesscripts' ``createPanopticImgs``.

    Layout under ``manual_dir``::

        gtFine/cityscapes_panoptic_{split}.json   (or ..._{split}_trainId.json, from --use-train-id)
        gtFine/cityscapes_panoptic_{split}/*_gtFine_panoptic.png
        leftImg8bit/{split}/{city}/*_leftImg8bit.png
    """
    root = Path(os.path.expanduser(str(manual_dir)))
    if not root.is_dir():
        raise FileNotFoundError(f"manual_dir {root} does not exist")
    candidates = [root / "gtFine" / f"cityscapes_panoptic_{split}{sfx}" for sfx in ("", "_trainId")]
    for base in candidates:
        if base.with_suffix(".json").is_file():
            break
    else:
        raise FileNotFoundError(
            f"no Cityscapes panoptic JSON for split {split!r}: expected {candidates[0]}.json or "
            f"{candidates[1]}.json (run cityscapesscripts' createPanopticImgs first)"
        )
    json_path = base.with_suffix(".json")
    return COCOPanoptic(
        json_path, base, root / "leftImg8bit" / split, split=split, image_name=cityscapes_image_name, **kwargs
    )


def custom(json_path, png_dir, image_dir, split: str = "train", **kwargs) -> COCOPanoptic:
    """A user's own COCO-format panoptic split: three explicit paths."""
    return COCOPanoptic(json_path, png_dir, image_dir, split=split, **kwargs)

"""Panoptic quality (PQ) evaluation with the COCO panoptic rules.

Two layers:

- In memory, for the trainer: ``pq_image_stats`` scores one image given two
  ``[H, W]`` integer segment-id maps (0 = void) and their COCO
  ``segments_info`` lists, and returns a ``PQStat``; stats add up with ``+=``
  (or ``to_array`` / ``from_array`` to sum them across hosts), and
  ``PQStat.results(categories)`` turns the total into the result dict.
- On files, like the COCO panoptic API: ``pq_compute(gt_json_file,
  pred_json_file, gt_folder=None, pred_folder=None)`` reads the COCO panoptic
  JSONs and PNGs (segment id = R + 256 G + 256**2 B) and returns

      {"All":    {"pq": float, "sq": float, "rq": float, "n": int},
       "Things": {...}, "Stuff": {...},
       "per_class": {category_id (int): {"pq": float, "sq": float, "rq": float}}}

  with values as fractions in [0, 1]. ``per_class`` keys are the integer
  category ids, like the COCO API; ``json.dumps`` turns them into strings, so
  a result read back from JSON has string keys (``"1"``, not ``1``).

The rules (for one image; counts then add up over the whole set):

- A predicted segment and a ground-truth segment match only if they have the
  same category and IoU > 0.5 (strictly). The union leaves out the part of
  the prediction lying on void (gt id 0), so a prediction is not punished for
  covering unlabelled pixels. IoU > 0.5 makes matches unique.
- Ground-truth crowd segments (``iscrowd == 1``) are never matched and never
  false negatives.
- An unmatched prediction is not a false positive if more than half of its
  area lies on void plus the crowd regions of its own category.
- Per category: PQ = sum IoU / (TP + FP/2 + FN/2), SQ = sum IoU / TP,
  RQ = TP / (TP + FP/2 + FN/2), SQ = RQ = PQ = 0 when TP = 0. Categories with
  TP + FP + FN = 0 are left out of the averages and of ``n`` (their
  ``per_class`` entry is all zeros). A group with ``n == 0`` (say a split
  with no stuff segment at all) reports ``n = 0`` and PQ = SQ = RQ = 0.0
  instead of dividing by zero.

Segment areas are counted from the id maps (the JSON ``area`` fields are not
used). Inputs that break the format raise ``PQInputError`` naming the image
and the segment.

Command line: ``python -m pcv.pq`` (:mod:`pcv.pq`). Files may be local or
on ``gs://``.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from etils import epath
from PIL import Image

from pcv.data.panoptic import id2rgb, rgb2id
from pcv.errors import PcvError

VOID = 0
#: The three rows of the COCO summary, and which categories each averages.
GROUPS: tuple[tuple[str, bool | None], ...] = (("All", None), ("Things", True), ("Stuff", False))
#: Below this many images per worker a process pool costs more than it saves.
IMAGES_PER_WORKER = 50


class PQInputError(PcvError, ValueError):
    """Predictions or ground truth that break the COCO panoptic format."""


# ----------------------------------------------------------------------------
# Accumulator
# ----------------------------------------------------------------------------


@dataclass
class PQStatCat:
    """Counts for one category: summed IoU of matches, TP, FP, FN."""

    iou: float = 0.0
    tp: int = 0
    fp: int = 0
    fn: int = 0

    def __iadd__(self, other: PQStatCat) -> PQStatCat:
        self.iou += other.iou
        self.tp += other.tp
        self.fp += other.fp
        self.fn += other.fn
        return self


class PQStat:
    """Per-category PQ counts; ``stat[category_id]`` is a ``PQStatCat``.

    Add stats of images or shards with ``+=`` / ``+``. To merge across hosts
    (e.g. an all-gather of per-process stats), turn them into a fixed-layout
    array with ``to_array(category_ids)``, sum, and read back with
    ``from_array``. Picklable, so worker processes can return it.
    """

    def __init__(self):
        self.pq_per_cat: dict[int, PQStatCat] = {}

    def __getitem__(self, category_id: int) -> PQStatCat:
        category_id = int(category_id)
        if category_id not in self.pq_per_cat:
            self.pq_per_cat[category_id] = PQStatCat()
        return self.pq_per_cat[category_id]

    def __iadd__(self, other: PQStat) -> PQStat:
        for category_id, stat in other.pq_per_cat.items():
            mine = self[category_id]
            mine += stat  # in place: PQStatCat.__iadd__
        return self

    def __add__(self, other: PQStat) -> PQStat:
        out = PQStat()
        out += self
        out += other
        return out

    def __eq__(self, other) -> bool:
        if not isinstance(other, PQStat):
            return NotImplemented
        # An all-zero entry (created by a lookup) is the same as no entry.
        zero = PQStatCat()
        keys = set(self.pq_per_cat) | set(other.pq_per_cat)
        return all(self.pq_per_cat.get(k, zero) == other.pq_per_cat.get(k, zero) for k in keys)

    def __repr__(self) -> str:
        return f"PQStat({self.pq_per_cat!r})"

    def to_array(self, category_ids: Sequence[int]) -> np.ndarray:
        """``[C, 4]`` float64 rows ``(iou, tp, fp, fn)`` in ``category_ids`` order.

        Counts stay exact in float64 up to 2**53. Categories of the stat that
        are not listed would be lost, so they raise.
        """
        category_ids = [int(c) for c in category_ids]
        missing = {c for c, s in self.pq_per_cat.items() if s != PQStatCat()} - set(category_ids)
        if missing:
            raise ValueError(f"PQStat.to_array: categories {sorted(missing)} are not in category_ids")
        out = np.zeros((len(category_ids), 4), np.float64)
        for row, category_id in enumerate(category_ids):
            s = self.pq_per_cat.get(category_id, PQStatCat())
            out[row] = (s.iou, s.tp, s.fp, s.fn)
        return out

    @classmethod
    def from_array(cls, array, category_ids: Sequence[int]) -> PQStat:
        """Inverse of ``to_array``: ``array`` is ``[C, 4]`` rows ``(iou, tp, fp, fn)``."""
        array = np.asarray(array, np.float64)
        if array.shape != (len(category_ids), 4):
            raise ValueError(f"PQStat.from_array: expected shape ({len(category_ids)}, 4), got {array.shape}")
        out = cls()
        for category_id, (iou, tp, fp, fn) in zip(category_ids, array):
            if iou or tp or fp or fn:
                out.pq_per_cat[int(category_id)] = PQStatCat(float(iou), int(tp), int(fp), int(fn))
        return out

    def pq_average(self, categories, isthing: bool | None = None) -> tuple[dict, dict]:
        """Average PQ / SQ / RQ over the categories of one group.

        Args:
          categories: COCO category dicts (with ``id``, ``isthing``), as a
            sequence or a mapping keyed by id.
          isthing: True for things, False for stuff, None for all.

        Returns:
          ``({"pq", "sq", "rq", "n"}, {category_id: {"pq", "sq", "rq"}})``.
          Categories with no TP, FP or FN are left out of ``n`` and the means
          (their per-class entry is zeros); ``n == 0`` gives zeros, not NaN.
        """
        pq = sq = rq = 0.0
        n = 0
        per_class = {}
        for category_id, category in _category_map(categories).items():
            if isthing is not None and (category.get("isthing", 0) == 1) != isthing:
                continue
            s = self.pq_per_cat.get(category_id, PQStatCat())
            if s.tp + s.fp + s.fn == 0:
                per_class[category_id] = {"pq": 0.0, "sq": 0.0, "rq": 0.0}
                continue
            n += 1
            denominator = s.tp + 0.5 * s.fp + 0.5 * s.fn
            pq_class = s.iou / denominator
            sq_class = s.iou / s.tp if s.tp else 0.0
            rq_class = s.tp / denominator
            per_class[category_id] = {"pq": float(pq_class), "sq": float(sq_class), "rq": float(rq_class)}
            pq += pq_class
            sq += sq_class
            rq += rq_class
        if n == 0:
            return {"pq": 0.0, "sq": 0.0, "rq": 0.0, "n": 0}, per_class
        return {"pq": float(pq / n), "sq": float(sq / n), "rq": float(rq / n), "n": n}, per_class

    def results(self, categories) -> dict[str, Any]:
        """The COCO result dict: ``All`` / ``Things`` / ``Stuff`` and ``per_class``.

        ``per_class`` is keyed by int category id and lists every category
        given (zeros for those left out of ``n``).
        """
        out: dict[str, Any] = {}
        for name, isthing in GROUPS:
            out[name], per_class = self.pq_average(categories, isthing=isthing)
            if isthing is None:
                all_per_class = per_class
        out["per_class"] = all_per_class
        return out


def _category_map(categories) -> dict[int, Mapping]:
    """``{id: category}`` from a mapping keyed by id or a sequence of dicts."""
    if isinstance(categories, Mapping):
        return {int(k): v for k, v in categories.items()}
    return {int(c["id"]): c for c in categories}


def _category_ids(categories) -> set[int]:
    if isinstance(categories, Mapping):
        return {int(k) for k in categories}
    return {int(c["id"]) if isinstance(c, Mapping) else int(c) for c in categories}


# ----------------------------------------------------------------------------
# One image
# ----------------------------------------------------------------------------


def _describe(image_id, file_name) -> str:
    if file_name is not None and image_id is not None:
        return f"image {file_name} (image_id {image_id})"
    if file_name is not None:
        return f"image {file_name}"
    if image_id is not None:
        return f"image_id {image_id}"
    return "image"


def _segments_by_id(
    segments: Iterable[Mapping], known_categories: set[int], what: str, where: str
) -> dict[int, Mapping]:
    """``{segment id: segment}``, checking ids are unique and categories known."""
    out: dict[int, Mapping] = {}
    for segment in segments:
        try:
            segment_id = int(segment["id"])
            category_id = int(segment["category_id"])
        except (KeyError, TypeError, ValueError) as e:
            raise PQInputError(f"{where}: {what} segment {segment!r} lacks an integer 'id' or 'category_id'") from e
        if segment_id == VOID:
            raise PQInputError(f"{where}: {what} segments_info has segment id 0, which is reserved for void")
        if segment_id in out:
            raise PQInputError(f"{where}: {what} segments_info has segment id {segment_id} more than once")
        if category_id not in known_categories:
            raise PQInputError(f"{where}: {what} segment id {segment_id} has unknown category_id {category_id}")
        out[segment_id] = segment
    return out


def _check_id_map(ids, what: str, where: str) -> np.ndarray:
    ids = np.asarray(ids)
    if ids.ndim != 2:
        raise PQInputError(f"{where}: {what} id map must be [H, W], got shape {ids.shape}")
    if not np.issubdtype(ids.dtype, np.integer):
        raise PQInputError(f"{where}: {what} id map must be integer, got dtype {ids.dtype}")
    ids = ids.astype(np.int64)
    if ids.size and ids.min() < 0:
        raise PQInputError(f"{where}: {what} id map has negative segment ids")
    return ids


def _check_png_matches_json(areas: Mapping[int, int], segments: Mapping[int, Mapping], what: str, where: str):
    """Every non-void id of the map is in segments_info and vice versa."""
    for segment_id in sorted(areas):
        if segment_id != VOID and segment_id not in segments:
            rgb = f" (RGB {id2rgb(segment_id)})" if segment_id < 256**3 else ""
            raise PQInputError(
                f"{where}: {what} segment id {segment_id}{rgb} is in the PNG "
                f"({areas[segment_id]} pixels) but not in the JSON segments_info"
            )
    for segment_id, segment in segments.items():
        if segment_id not in areas:
            raise PQInputError(
                f"{where}: {what} segment id {segment_id} (category_id {segment['category_id']}) "
                f"is in the JSON segments_info but not in the PNG"
            )


def pq_image_stats(
    gt_ids,
    gt_segments: Iterable[Mapping],
    pred_ids,
    pred_segments: Iterable[Mapping],
    categories,
    *,
    image_id=None,
    file_name: str | None = None,
) -> PQStat:
    """PQ counts of one image, by the COCO panoptic rules (module docstring).

    Args:
      gt_ids: ``[H, W]`` integer ground-truth segment ids, 0 = void.
      gt_segments: COCO ``segments_info`` of the ground truth: mappings with
        ``id``, ``category_id`` and ``iscrowd`` (missing = 0).
      pred_ids: ``[H, W]`` integer predicted segment ids, 0 = void (no
        prediction there).
      pred_segments: ``segments_info`` of the prediction (``id``,
        ``category_id``; ``iscrowd`` is ignored).
      categories: the known categories: a mapping keyed by category id, a
        sequence of COCO category dicts, or of ids.
      image_id, file_name: only used to name the image in errors.

    Returns:
      A ``PQStat`` with this image's TP / FP / FN / summed IoU per category.

    Raises:
      PQInputError: shapes differ, a segment id is in the map but not in its
        ``segments_info`` or the other way round, a ``segments_info`` repeats
        an id, or a segment has an unknown category.
    """
    where = _describe(image_id, file_name)
    gt_ids = _check_id_map(gt_ids, "ground truth", where)
    pred_ids = _check_id_map(pred_ids, "prediction", where)
    if gt_ids.shape != pred_ids.shape:
        raise PQInputError(
            f"{where}: prediction is {pred_ids.shape[1]}x{pred_ids.shape[0]} (WxH) but the ground truth is "
            f"{gt_ids.shape[1]}x{gt_ids.shape[0]}"
        )
    known = _category_ids(categories)
    gt_segms = _segments_by_id(gt_segments, known, "ground-truth", where)
    pred_segms = _segments_by_id(pred_segments, known, "prediction", where)

    # One pass over the pixels: count every (gt id, pred id) pair. Everything
    # else (areas, intersections, void and crowd overlaps) follows from it.
    offset = int(pred_ids.max(initial=0)) + 1
    pairs, counts = np.unique(gt_ids * offset + pred_ids, return_counts=True)
    intersection: dict[tuple[int, int], int] = {}
    gt_area: dict[int, int] = {}
    pred_area: dict[int, int] = {}
    for pair, count in zip(pairs.tolist(), counts.tolist()):
        gt_id, pred_id = divmod(pair, offset)
        intersection[gt_id, pred_id] = count
        gt_area[gt_id] = gt_area.get(gt_id, 0) + count
        pred_area[pred_id] = pred_area.get(pred_id, 0) + count
    _check_png_matches_json(gt_area, gt_segms, "ground-truth", where)
    _check_png_matches_json(pred_area, pred_segms, "prediction", where)

    stat = PQStat()
    gt_matched, pred_matched = set(), set()
    for (gt_id, pred_id), inter in intersection.items():
        if gt_id == VOID or pred_id == VOID:
            continue
        gt_segment, pred_segment = gt_segms[gt_id], pred_segms[pred_id]
        if gt_segment.get("iscrowd", 0) == 1:
            continue
        category_id = int(gt_segment["category_id"])
        if category_id != int(pred_segment["category_id"]):
            continue
        # The prediction's pixels on void are not its fault: out of the union.
        union = pred_area[pred_id] + gt_area[gt_id] - inter - intersection.get((VOID, pred_id), 0)
        # IoU > 0.5, in integers so that exactly one half is never a match.
        if 2 * inter > union:
            stat[category_id].tp += 1
            stat[category_id].iou += inter / union
            gt_matched.add(gt_id)
            pred_matched.add(pred_id)

    crowd_ids_by_category: dict[int, list[int]] = {}
    for gt_id, gt_segment in gt_segms.items():
        if gt_segment.get("iscrowd", 0) == 1:
            crowd_ids_by_category.setdefault(int(gt_segment["category_id"]), []).append(gt_id)
        elif gt_id not in gt_matched:
            stat[gt_segment["category_id"]].fn += 1

    for pred_id, pred_segment in pred_segms.items():
        if pred_id in pred_matched:
            continue
        category_id = int(pred_segment["category_id"])
        # COCO has at most one crowd region per category and image; summing
        # over all of them is the same there and well-defined elsewhere.
        ignored = intersection.get((VOID, pred_id), 0) + sum(
            intersection.get((crowd_id, pred_id), 0) for crowd_id in crowd_ids_by_category.get(category_id, ())
        )
        if 2 * ignored > pred_area[pred_id]:
            continue  # mostly on unlabelled or crowd pixels: not a false positive
        stat[category_id].fp += 1
    return stat


# ----------------------------------------------------------------------------
# Files: COCO panoptic JSON + PNG
# ----------------------------------------------------------------------------


def read_id_png(path: str | os.PathLike, what: str = "PNG", where: str | None = None) -> np.ndarray:
    """``[H, W]`` int64 segment ids of a COCO panoptic RGB PNG.

    Raises ``PQInputError`` naming the path if it is missing, unreadable or
    not an RGB image.
    """
    suffix = f" ({where})" if where else ""
    try:
        with epath.Path(path).open("rb") as f, Image.open(f) as image:
            image.load()
            mode = image.mode
            rgb = np.asarray(image)
    except FileNotFoundError as e:
        raise PQInputError(f"{what} not found: {path}{suffix}") from e
    except (OSError, SyntaxError, ValueError) as e:
        raise PQInputError(f"cannot read {what} {path}{suffix}: {e}") from e
    if mode != "RGB":
        raise PQInputError(f"{what} {path}{suffix} has mode {mode}; COCO panoptic PNGs are RGB")
    return rgb2id(rgb)


def _image_stats_from_files(
    gt_ann: Mapping, pred_ann: Mapping, gt_folder: str, pred_folder: str, category_ids
) -> PQStat:
    where = _describe(gt_ann["image_id"], gt_ann["file_name"])
    gt_path = f"{gt_folder.rstrip('/')}/{gt_ann['file_name']}"
    pred_path = f"{pred_folder.rstrip('/')}/{pred_ann['file_name']}"
    gt_ids = read_id_png(gt_path, "ground-truth PNG", where)
    pred_ids = read_id_png(pred_path, "prediction PNG", where)
    if gt_ids.shape != pred_ids.shape:
        raise PQInputError(
            f"{where}: prediction PNG {pred_path} is {pred_ids.shape[1]}x{pred_ids.shape[0]} (WxH) but "
            f"ground-truth PNG {gt_path} is {gt_ids.shape[1]}x{gt_ids.shape[0]}"
        )
    return pq_image_stats(
        gt_ids,
        gt_ann["segments_info"],
        pred_ids,
        pred_ann["segments_info"],
        category_ids,
        image_id=gt_ann["image_id"],
        file_name=gt_ann["file_name"],
    )


def _pq_chunk(pairs, gt_folder: str, pred_folder: str, category_ids) -> list[PQStat]:
    """Per-image stats of a chunk of (gt annotation, pred annotation) pairs.

    Returns one stat per image rather than their sum, so the parent adds them
    in image order whatever the chunking: the float IoU sums are then
    bit-identical with any number of workers.
    """
    return [_image_stats_from_files(g, p, gt_folder, pred_folder, category_ids) for g, p in pairs]


def _load_json(path, what: str) -> dict:
    try:
        data = json.loads(epath.Path(path).read_text())
    except FileNotFoundError as e:
        raise PQInputError(f"{what} JSON not found: {path}") from e
    except (OSError, ValueError) as e:
        raise PQInputError(f"cannot read {what} JSON {path}: {e}") from e
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
        raise PQInputError(f"{what} JSON {path} has no 'annotations' list")
    for ann in data["annotations"]:
        if not isinstance(ann, dict) or not {"image_id", "file_name", "segments_info"} <= ann.keys():
            raise PQInputError(
                f"{what} JSON {path}: annotation {str(ann)[:200]} lacks 'image_id', 'file_name' or 'segments_info'"
            )
        if not isinstance(ann["segments_info"], list):
            raise PQInputError(
                f"{what} JSON {path}: annotation of image_id {ann['image_id']!r} ({ann['file_name']}) has "
                f"segments_info {ann['segments_info']!r}; expected a list (empty for an image without segments)"
            )
        for seg in ann["segments_info"]:
            if not isinstance(seg, dict):
                raise PQInputError(
                    f"{what} JSON {path}: image_id {ann['image_id']!r} has a segment {seg!r}; "
                    "expected an object with 'id' and 'category_id'"
                )
    return data


def _default_folder(json_file) -> str:
    json_file = os.fspath(json_file)
    return json_file[: -len(".json")] if json_file.endswith(".json") else json_file


def _available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def pq_compute(gt_json_file, pred_json_file, gt_folder=None, pred_folder=None, num_workers: int | None = None) -> dict:
    """COCO panoptic quality of a prediction set against its ground truth.

    Every ground-truth annotation (image) is scored against the prediction
    annotation with the same ``image_id``; predictions for other images are
    ignored. Categories (and thing / stuff) come from the ground-truth JSON.

    Args:
      gt_json_file: COCO panoptic ground-truth JSON (``annotations`` with
        ``image_id``, ``file_name``, ``segments_info``; ``categories``).
      pred_json_file: predictions in the same format (``categories`` not
        needed).
      gt_folder, pred_folder: folders of the PNGs; default: the JSON path
        without its ``.json`` suffix (``panoptic_val2017.json`` ->
        ``panoptic_val2017``).
      num_workers: processes to read and score images with. None picks one
        per ``IMAGES_PER_WORKER`` images up to the CPU count, so small sets
        run in this process; 0 or 1 forces this process. The result is
        identical for any value.

    Returns:
      ``{"All" | "Things" | "Stuff": {"pq", "sq", "rq", "n"}, "per_class":
      {category_id: {"pq", "sq", "rq"}}}``: fractions in [0, 1] as Python
      floats, ``n`` the number of categories averaged (those with any TP, FP
      or FN), ``per_class`` keyed by int category id with every gt category.
      A group with no such category has ``n = 0`` and zeros. ``json.dumps``
      works on it (the keys then become strings).

    Raises:
      PQInputError: a gt image has no prediction, a PNG is missing or
        unreadable, sizes differ, segment ids of a PNG and its JSON disagree,
        a segments_info repeats an id, or a category id is unknown. The
        message names the image and the segment.
    """
    gt_json = _load_json(gt_json_file, "ground-truth")
    pred_json = _load_json(pred_json_file, "prediction")
    gt_folder = _default_folder(gt_json_file) if gt_folder is None else os.fspath(gt_folder)
    pred_folder = _default_folder(pred_json_file) if pred_folder is None else os.fspath(pred_folder)
    if not isinstance(gt_json.get("categories"), list):
        raise PQInputError(f"ground-truth JSON {gt_json_file} has no 'categories' list")
    categories = _category_map(gt_json["categories"])

    pred_by_image: dict = {}
    for ann in pred_json["annotations"]:
        if ann["image_id"] in pred_by_image:
            raise PQInputError(
                f"prediction JSON {pred_json_file}: image_id {ann['image_id']} ({ann['file_name']}) "
                "has more than one annotation"
            )
        pred_by_image[ann["image_id"]] = ann
    pairs = []
    for gt_ann in gt_json["annotations"]:
        pred_ann = pred_by_image.get(gt_ann["image_id"])
        if pred_ann is None:
            raise PQInputError(
                f"no prediction for image {gt_ann['file_name']} (image_id {gt_ann['image_id']}) in {pred_json_file}"
            )
        pairs.append((gt_ann, pred_ann))

    category_ids = sorted(categories)
    if num_workers is None:
        num_workers = min(_available_cpus(), len(pairs) // IMAGES_PER_WORKER)
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0 or None, got {num_workers}")
    num_workers = min(num_workers, len(pairs))
    if num_workers <= 1:
        per_image = _pq_chunk(pairs, gt_folder, pred_folder, category_ids)
    else:
        # A few chunks per worker so a slow chunk does not hold up the rest.
        chunk_size = math.ceil(len(pairs) / (4 * num_workers))
        chunks = [pairs[i : i + chunk_size] for i in range(0, len(pairs), chunk_size)]
        # spawn, not fork: the caller (the trainer) has JAX's threads running,
        # and forking a multithreaded process can deadlock.
        with multiprocessing.get_context("spawn").Pool(num_workers) as pool:
            per_chunk = pool.starmap(_pq_chunk, [(c, gt_folder, pred_folder, category_ids) for c in chunks])
        per_image = [stat for chunk in per_chunk for stat in chunk]

    total = PQStat()
    for stat in per_image:
        total += stat
    return total.results(categories)


# ----------------------------------------------------------------------------
# The summary table
# ----------------------------------------------------------------------------


def format_table(results: Mapping[str, Any]) -> str:
    """The All / Things / Stuff summary: PQ, SQ, RQ in percent and N; then mIoU and AP when present."""
    lines = [f"{'':10s}| {'PQ':>6s} {'SQ':>6s} {'RQ':>6s} {'N':>5s}", "-" * 38]
    for name, _ in GROUPS:
        row = results[name]
        lines.append(f"{name:10s}| {100 * row['pq']:6.1f} {100 * row['sq']:6.1f} {100 * row['rq']:6.1f} {row['n']:5d}")
    extra = []
    if "semantic" in results:
        extra.append(f"mIoU {100 * results['semantic']['miou']:.1f}")
    if "instances" in results:
        names = {"ap": "AP", "ap50": "AP50", "ap75": "AP75", "aps": "APs", "apm": "APm", "apl": "APl"}
        ap = results["instances"]
        extra.append(
            " ".join(f"{names.get(k, k)} {100 * v:.1f}" if v >= 0 else f"{names.get(k, k)} -" for k, v in ap.items())
        )
    if extra:
        lines.append("   ".join(extra))
    return "\n".join(lines)


if __name__ == "__main__":  # round 1 ran the PQ command here; the library never imports a command
    sys.stderr.write("error: the PQ command is python -m pcv.pq --gt_json=... --pred_json=...\n")
    sys.exit(2)

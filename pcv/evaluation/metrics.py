"""The Evaluator's metrics: PQ, mIoU of the semantic map, COCO instance AP, and the COCO panoptic files.

:func:`default_metrics` is what training and ``python -m pcv.evaluate`` score
(:class:`PanopticQuality`, :class:`SemanticIoU`, :class:`InstanceAP`);
:class:`CocoPanopticFiles` writes the predictions as COCO files. Each is a
:class:`~pcv.evaluation.evaluator.Metric`.

Both score what PQ scores, the panoptic answer (an id map and its
``segments_info``) against the panoptic ground truth, so they need nothing
the evaluator does not already have.

mIoU (:class:`SemanticStat`): each pixel's category in the ground truth
against the category of the predicted segment that covers it. Ground-truth
void is ignored; crowd regions count as their category. A pixel the
prediction leaves void is a miss (it adds to its ground-truth category's
union and to no category's false positives). Per category, IoU = TP / (TP +
FP + FN) over the whole split; mIoU is the mean over the categories that
occur in the ground truth or the prediction.

AP (:class:`InstanceStat`): COCO's instance-segmentation AP, computed by
pycocotools (``COCOeval``, ``iouType="segm"``, an optional dependency:
``pip install pycocotools``). Detections are the prediction's thing
segments, as run-length-encoded masks with their ``score``
(:func:`pcv.inference.segments.to_coco_panoptic`; 1.0 when a segment has none); the
ground truth is the thing segments, crowd regions marked ``iscrowd`` (a
detection matching one is neither right nor wrong) and areas in pixels.
Reported: AP, AP50, AP75 and AP for small / medium / large objects, in
[0, 1] (-1 where COCO has nothing to measure). :func:`write_detections`
writes the detections in COCO's results format, which pycocotools scores
to the same numbers.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from pcv.data.coco_files import CocoPanopticWriter, plain_id, write_coco_panoptic
from pcv.data.panoptic import example_stem
from pcv.errors import MissingDependency
from pcv.evaluation.pq import PQStat, pq_compute, pq_image_stats
from pcv.evaluation.protocol import Item, Metric, Run
from pcv.runtime import distributed
from pcv.runtime.files import write_atomic
from pcv.runtime.paths import as_path

AP_KEYS = ("ap", "ap50", "ap75", "aps", "apm", "apl")


def _category_index(ids: np.ndarray, segments: Sequence[Mapping], index: Mapping[int, int], void: int) -> np.ndarray:
    """Per pixel, the index of its segment's category (``void`` for id 0 or an id not in ``segments``)."""
    uniq, inverse = np.unique(np.asarray(ids), return_inverse=True)
    category = {int(s["id"]): index[int(s["category_id"])] for s in segments}
    lut = np.array([category.get(int(u), void) if u != 0 else void for u in uniq], np.int64)
    return lut[inverse.reshape(np.shape(ids))]


class SemanticStat:
    """The split's pixel confusion of categories (module docstring); add images, sum over hosts, read mIoU.

    ``matrix[g, p]``: pixels of ground-truth category g predicted as p, the
    last column for void predictions.
    """

    def __init__(self, category_ids: Sequence[int]):
        self.category_ids = [int(c) for c in category_ids]
        self.index = {c: i for i, c in enumerate(self.category_ids)}
        c = len(self.category_ids)
        self.matrix = np.zeros((c, c + 1), np.int64)

    def add(self, gt_ids, gt_segments, pred_ids, pred_segments) -> None:
        """Count one image's pixels."""
        c = len(self.category_ids)
        gt = _category_index(gt_ids, gt_segments, self.index, -1)
        pred = _category_index(pred_ids, pred_segments, self.index, c)
        keep = gt >= 0
        self.matrix += np.bincount(gt[keep] * (c + 1) + pred[keep], minlength=c * (c + 1)).reshape(c, c + 1)

    def results(self, matrix: np.ndarray | None = None) -> dict:
        """``{"miou", "n", "per_class": {category_id: iou}}`` (classes in neither left out of the mean)."""
        m = self.matrix if matrix is None else np.asarray(matrix)
        c = len(self.category_ids)
        tp = np.diag(m[:, :c]).astype(np.float64)
        gt = m.sum(1)
        pred = m[:, :c].sum(0)
        union = gt + pred - tp
        present = union > 0
        iou = np.where(present, tp / np.maximum(union, 1), 0.0)
        per_class = {cid: float(iou[i]) for i, cid in enumerate(self.category_ids) if present[i]}
        n = int(present.sum())
        return {"miou": float(iou[present].mean()) if n else 0.0, "n": n, "per_class": per_class}


def _pycocotools():
    try:
        from pycocotools import mask as mask_utils
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError:
        raise MissingDependency("COCO instance AP needs pycocotools: pip install pycocotools") from None
    return mask_utils, COCO, COCOeval


def have_pycocotools() -> bool:
    try:
        _pycocotools()
    except MissingDependency:
        return False
    return True


def _rle(mask: np.ndarray) -> dict:
    mask_utils = _pycocotools()[0]
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")  # JSON-ready, as COCO's files hold it
    return rle


def thing_segments(ids, segments: Sequence[Mapping], things: set[int], *, detections: bool) -> list[dict]:
    """The thing segments of one image as COCO instance annotations (RLE masks; scores for detections)."""
    ids = np.asarray(ids)
    out = []
    for seg in segments:
        if int(seg["category_id"]) not in things:
            continue
        mask = ids == int(seg["id"])
        area = int(mask.sum())
        if not area:
            continue
        entry = {"category_id": int(seg["category_id"]), "segmentation": _rle(mask)}
        if detections:
            entry["score"] = float(seg.get("score", 1.0))
        else:
            entry.update(iscrowd=int(seg.get("iscrowd", 0)), area=area)
        out.append(entry)
    return out


class InstanceStat:
    """Thing segments of ground truth and prediction, image by image, for COCO AP (module docstring)."""

    def __init__(self, categories: Sequence[Mapping]):
        self.categories = [dict(c) for c in categories]
        self.things = {int(c["id"]) for c in self.categories if c.get("isthing")}
        self.images: list[dict] = []
        self.gt: list[dict] = []
        self.detections: list[dict] = []

    def add(self, image_id, gt_ids, gt_segments, pred_ids, pred_segments) -> None:
        h, w = np.shape(gt_ids)[:2]
        self.images.append({"id": image_id, "height": int(h), "width": int(w)})
        for entry in thing_segments(gt_ids, gt_segments, self.things, detections=False):
            self.gt.append({**entry, "image_id": image_id})
        for entry in thing_segments(pred_ids, pred_segments, self.things, detections=True):
            self.detections.append({**entry, "image_id": image_id})

    def parts(self) -> dict:
        return {"images": self.images, "gt": self.gt, "detections": self.detections}

    def merge(self, parts: Sequence[Mapping]) -> InstanceStat:
        """Every host's :meth:`parts` in one (images in the order given)."""
        out = InstanceStat(self.categories)
        for part in parts:
            out.images += part["images"]
            out.gt += part["gt"]
            out.detections += part["detections"]
        return out

    def results(self) -> dict:
        """``{"ap", "ap50", "ap75", "aps", "apm", "apl"}`` by pycocotools (:class:`MissingDependency` without it)."""
        return coco_ap(self.images, self.gt, self.detections, self.categories)


def coco_ap(images, gt: Sequence[Mapping], detections: Sequence[Mapping], categories) -> dict:
    """COCOeval segm AP of ``detections`` (COCO results format) against ``gt`` instance annotations."""
    _, COCO, COCOeval = _pycocotools()
    things = [dict(c) for c in categories if c.get("isthing")]
    result = dict.fromkeys(AP_KEYS, -1.0)
    if not gt or not images:
        return result
    coco_gt = COCO()
    coco_gt.dataset = {
        "images": [dict(im) for im in images],
        "annotations": [dict(a, id=i + 1) for i, a in enumerate(gt)],
        "categories": things,
    }
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        coco_gt.createIndex()
        if not detections:  # nothing detected: 0 wherever COCO has ground truth to find
            areas = [a["area"] for a in gt if not a.get("iscrowd")]
            ranges = {"aps": (0, 32**2), "apm": (32**2, 96**2), "apl": (96**2, float("inf"))}
            found = {k: any(lo <= a < hi for a in areas) for k, (lo, hi) in ranges.items()}
            return {k: (0.0 if k in AP_KEYS[:3] or found[k] else -1.0) for k in AP_KEYS}
        coco_dt = coco_gt.loadRes([dict(d) for d in detections])
        evaluation = COCOeval(coco_gt, coco_dt, iouType="segm")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return {key: float(evaluation.stats[i]) for i, key in enumerate(AP_KEYS)}


def write_detections(path, detections: Sequence[Mapping]) -> None:
    """The detections as a COCO results file (a JSON list of image_id, category_id, segmentation, score)."""
    write_atomic(path, json.dumps([dict(d) for d in detections]))


# ----------------------------------------------------------------------------
# The metric objects the Evaluator feeds (pcv.evaluation.evaluator.Metric).
# ----------------------------------------------------------------------------


def _gt(item: Item) -> tuple:
    return item.example["segment_ids"], item.example["segments_info"]


def _pred(item: Item) -> tuple:
    return item.prediction.ids, item.prediction.segments_info


class PanopticQuality(Metric):
    """PQ, SQ and RQ by the COCO rules (:func:`pcv.evaluation.pq_image_stats`), summed over hosts.

    Result: ``{"All", "Things", "Stuff"}`` (``pq``, ``sq``, ``rq``, ``n``) and
    ``"per_class"``, as :func:`pcv.evaluation.pq_compute` returns them.
    """

    def reset(self, run: Run) -> None:
        self.categories = run.dataset.categories
        self.category_ids = [int(c["id"]) for c in self.categories]
        self.stat = PQStat()

    def add(self, items: Sequence[Item]) -> None:
        for item in items:
            self.stat += pq_image_stats(
                *_gt(item), *_pred(item), self.categories, image_id=item.example.get("image_id")
            )

    def combine(self) -> None:
        summed = distributed.sum_across_hosts(self.stat.to_array(self.category_ids))
        self.stat = PQStat.from_array(summed, self.category_ids)

    def result(self) -> dict:
        return self.stat.results(self.categories)


class SemanticIoU(Metric):
    """mIoU of the semantic map (:class:`SemanticStat`), summed over hosts. Result: ``{"semantic": {...}}``."""

    def reset(self, run: Run) -> None:
        self.stat = SemanticStat([int(c["id"]) for c in run.dataset.categories])

    def add(self, items: Sequence[Item]) -> None:
        for item in items:
            self.stat.add(*_gt(item), *_pred(item))

    def combine(self) -> None:
        self.stat.matrix = distributed.sum_across_hosts(self.stat.matrix)

    def result(self) -> dict:
        return {"semantic": self.stat.results()}


class InstanceAP(Metric):
    """COCO instance AP of the thing segments (:class:`InstanceStat`, pycocotools). Result: ``{"instances": {...}}``.

    With ``out_dir``, process 0 also writes the detections in COCO's results
    format to ``<out_dir>/instances.json`` (result: ``{"files":
    {"instances_json": path}}`` too).
    """

    def __init__(self, out_dir=None):
        self.out_dir = out_dir

    def reset(self, run: Run) -> None:
        self.stat = InstanceStat(run.dataset.categories)
        self.image_ids: dict[int, Any] = {}  # position in the split -> the image's id in the files

    def add(self, items: Sequence[Item]) -> None:
        for item in items:
            self.stat.add(item.index, *_gt(item), *_pred(item))
            self.image_ids[item.index] = plain_id(item.example.get("image_id", item.index))

    def combine(self) -> None:
        parts = distributed.gather_objects({"stat": self.stat.parts(), "ids": self.image_ids})
        self.stat = self.stat.merge([p["stat"] for p in parts])
        self.image_ids = {k: v for p in parts for k, v in p["ids"].items()}
        self.ap = distributed.broadcast_object(self.stat.results() if distributed.is_main() else None)
        self.files = {}
        if self.out_dir is not None:
            path = as_path(self.out_dir) / "instances.json"
            if distributed.is_main():  # detections carry positions in the split; the file, the images' ids
                write_detections(path, [dict(d, image_id=self.image_ids[d["image_id"]]) for d in self.stat.detections])
            self.files = {"instances_json": str(path)}
            distributed.sync("pcv-instances-json")

    def result(self) -> dict:
        return {"instances": self.ap, **({"files": self.files} if self.files else {})}


class CocoPanopticFiles(Metric):
    """The predictions as COCO panoptic files in ``out_dir``, with the ground truth they are scored against.

    Every host writes its own PNGs (``panoptic/``); process 0 gathers the
    segments and writes ``predictions.json`` (image order of the split, the
    dataset's category ids, the images' own sizes) and, unless the dataset
    has COCO files of its own, the ground truth under ``gt/``. Result:
    ``{"files": {"predictions_json", "predictions_folder", "gt_json",
    "gt_folder"}}``, which :func:`rescore_files` scores with
    :func:`pcv.evaluation.pq_compute`.
    """

    def __init__(self, out_dir):
        self.out_dir = out_dir

    def reset(self, run: Run) -> None:
        self.run = run
        info = f"pcv predictions, {run.split} split, step {run.predictor.step}, flip {run.predictor.flip}"
        self.writer = CocoPanopticWriter(self.out_dir, run.dataset.categories, info={"description": info})
        self.order: list[int] = []  # position in the split of each image written, to sort the gathered entries
        self.files: dict = {}

    def add(self, items: Sequence[Item]) -> None:
        for item in items:
            example, prediction = item.example, item.prediction
            self.writer.add(
                example_stem(example, self.run.split),
                example["image_id"],
                prediction.ids,
                prediction.segments_info,
                file_name=example.get("file_name"),
            )
            self.order.append(item.index)

    def combine(self) -> None:
        w = self.writer
        parts = distributed.gather_objects({"images": w.images, "annotations": w.annotations, "order": self.order})
        if distributed.is_main():
            entries = sorted(
                (i, im, ann) for part in parts for i, im, ann in zip(part["order"], part["images"], part["annotations"])
            )
            w.images, w.annotations = [e[1] for e in entries], [e[2] for e in entries]
            pred = w.close()
            gt = self.ground_truth_files()
            self.files = {
                "predictions_json": str(pred["json"]),
                "predictions_folder": str(pred["panoptic_folder"]),
                "gt_json": str(gt["json"]),
                "gt_folder": str(gt["panoptic_folder"]),
            }
        self.files = distributed.broadcast_object(self.files)

    def ground_truth_files(self) -> dict:
        """The evaluated images' ground truth as COCO files: the dataset's own, or written under ``gt/``."""
        dataset, count = self.run.dataset, self.run.count
        own = getattr(dataset, "coco_panoptic_files", None)
        if own is not None and count == len(dataset):
            return own()
        return write_coco_panoptic(
            dataset, as_path(self.out_dir) / "gt", split=self.run.split, indices=range(count), images=False
        )

    def result(self) -> dict:
        return {"files": self.files}


def rescore_files(files: Mapping, num_workers: int | None = 0) -> dict:
    """PQ of the files :class:`CocoPanopticFiles` wrote, by :func:`pcv.evaluation.pq_compute`, as COCO tools see it."""
    return pq_compute(
        files["gt_json"],
        files["predictions_json"],
        files["gt_folder"],
        files["predictions_folder"],
        num_workers=num_workers,
    )


def default_metrics(*, out_dir=None) -> list[Metric]:
    """PQ, mIoU and, with pycocotools installed, AP (its detections written to ``out_dir`` when given)."""
    metrics: list[Metric] = [PanopticQuality(), SemanticIoU()]
    if have_pycocotools():
        metrics.append(InstanceAP(out_dir))
    return metrics

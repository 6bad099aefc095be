"""Tests of the COCO panoptic-quality evaluation (pcv.evaluation.pq).

The fast path (pair counting with one np.unique) is checked against a slow,
obvious reimplementation with one boolean mask per segment, on the real COCO
sample and on perturbed / synthetic predictions; each COCO rule has a tiny
hand-made case with exact numbers.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pcv.data import id2rgb, rgb2id
from pcv.evaluation import (
    PQInputError,
    PQStat,
    PQStatCat,
    format_table,
    pq_compute,
    pq_image_stats,
)
from pcv.pq import main as pq_command

REPO = Path(__file__).parents[1]
from shared_data import SAMPLE  # noqa: E402

SAMPLE_JSON = SAMPLE / "panoptic.json"


# Tiny cases: two thing categories and one stuff category.
CATS = [
    {"id": 1, "name": "person", "isthing": 1},
    {"id": 2, "name": "car", "isthing": 1},
    {"id": 3, "name": "grass", "isthing": 0},
]


# ----------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------


def seg(segment_id, category_id, iscrowd=0):
    return {"id": segment_id, "category_id": category_id, "iscrowd": iscrowd}


def load_sample():
    data = json.loads(SAMPLE_JSON.read_text())
    maps = {
        ann["image_id"]: rgb2id(np.asarray(Image.open(SAMPLE / "panoptic" / ann["file_name"])))
        for ann in data["annotations"]
    }
    return data, maps


def write_set(root: Path, name: str, images, categories=CATS) -> Path:
    """Write a COCO panoptic set: ``root/name.json`` and ``root/name/*.png``.

    ``images`` is a list of ``(image_id, file_name, ids [H, W], segments_info)``.
    """
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    annotations = []
    for image_id, file_name, ids, segments in images:
        Image.fromarray(id2rgb(np.asarray(ids))).save(folder / file_name)
        annotations.append({"image_id": image_id, "file_name": file_name, "segments_info": segments})
    path = root / f"{name}.json"
    path.write_text(json.dumps({"annotations": annotations, "categories": list(categories)}))
    return path


def segments_of(ids, category_of, crowd=()):
    """segments_info for the non-void ids present in ``ids``."""
    return [seg(int(i), category_of[int(i)], int(int(i) in crowd)) for i in np.unique(ids) if i != 0]


def reference_pq(images, categories):
    """Slow, obvious PQ: a boolean mask per segment, every pair tried.

    ``images`` is a list of ``(gt_ids, gt_segments, pred_ids, pred_segments)``.
    Returns the COCO result dict (per_class with int keys).
    """
    cats = {c["id"]: c for c in categories}
    iou_sum = {c: 0.0 for c in cats}
    tp = {c: 0 for c in cats}
    fp = {c: 0 for c in cats}
    fn = {c: 0 for c in cats}
    for gt, gt_segments, pred, pred_segments in images:
        matched_gt, matched_pred = set(), set()
        for g in gt_segments:
            if g["iscrowd"]:
                continue
            for p in pred_segments:
                if p["category_id"] != g["category_id"]:
                    continue
                gm, pm = gt == g["id"], pred == p["id"]
                inter = np.sum(gm & pm)
                # pred pixels on void do not count in the union
                union = np.sum(gm | (pm & (gt != 0)))
                if inter / union > 0.5:
                    tp[g["category_id"]] += 1
                    iou_sum[g["category_id"]] += inter / union
                    matched_gt.add(g["id"])
                    matched_pred.add(p["id"])
        for g in gt_segments:
            if not g["iscrowd"] and g["id"] not in matched_gt:
                fn[g["category_id"]] += 1
        for p in pred_segments:
            if p["id"] in matched_pred:
                continue
            crowd = [g["id"] for g in gt_segments if g["iscrowd"] and g["category_id"] == p["category_id"]]
            pm = pred == p["id"]
            ignored = np.sum(pm & ((gt == 0) | np.isin(gt, crowd)))
            if ignored / np.sum(pm) <= 0.5:
                fp[p["category_id"]] += 1

    result = {"per_class": {}}
    for name, want in (("All", None), ("Things", 1), ("Stuff", 0)):
        rows = []
        for c, info in cats.items():
            if want is not None and info["isthing"] != want:
                continue
            if tp[c] + fp[c] + fn[c] == 0:
                if want is None:
                    result["per_class"][c] = {"pq": 0.0, "sq": 0.0, "rq": 0.0}
                continue
            d = tp[c] + fp[c] / 2 + fn[c] / 2
            row = {"pq": iou_sum[c] / d, "sq": iou_sum[c] / tp[c] if tp[c] else 0.0, "rq": tp[c] / d}
            rows.append(row)
            if want is None:
                result["per_class"][c] = row
        n = len(rows)
        result[name] = {k: (sum(r[k] for r in rows) / n if n else 0.0) for k in ("pq", "sq", "rq")}
        result[name]["n"] = n
    return result


def assert_results_close(got, want, tol=1e-12):
    for name in ("All", "Things", "Stuff"):
        assert got[name]["n"] == want[name]["n"], name
        for k in ("pq", "sq", "rq"):
            assert got[name][k] == pytest.approx(want[name][k], abs=tol), (name, k)
    assert set(got["per_class"]) == set(want["per_class"])
    for c, row in want["per_class"].items():
        for k in ("pq", "sq", "rq"):
            assert got["per_class"][c][k] == pytest.approx(row[k], abs=tol), (c, k)


def erode(mask, steps):
    """4-neighbour binary erosion, pixels beyond the border count as outside."""
    for _ in range(steps):
        padded = np.pad(mask, 1)
        mask = mask & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask


def image_result(gt, gt_segments, pred, pred_segments, categories=CATS):
    return pq_image_stats(gt, gt_segments, pred, pred_segments, categories, file_name="tiny.png").results(categories)


# ----------------------------------------------------------------------------
# rgb2id / id2rgb
# ----------------------------------------------------------------------------


def test_rgb2id_widens_before_combining():
    white = np.full((1, 2, 3), 255, np.uint8)
    np.testing.assert_array_equal(rgb2id(white), [[256**3 - 1, 256**3 - 1]])
    assert rgb2id((1, 2, 3)) == 1 + 2 * 256 + 3 * 256**2
    assert id2rgb(1 + 2 * 256 + 3 * 256**2) == (1, 2, 3)


def test_id2rgb_round_trip():
    ids = np.random.default_rng(0).integers(0, 256**3, size=(7, 5))
    rgb = id2rgb(ids)
    assert rgb.shape == (7, 5, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb2id(rgb), ids)
    with pytest.raises(ValueError):
        id2rgb(np.array([256**3]))


# ----------------------------------------------------------------------------
# The real COCO sample
# ----------------------------------------------------------------------------


def test_sample_gt_against_itself_is_perfect():
    data = json.loads(SAMPLE_JSON.read_text())
    isthing = {c["id"]: c["isthing"] for c in data["categories"]}
    present = {s["category_id"] for a in data["annotations"] for s in a["segments_info"] if not s["iscrowd"]}
    # the sample has crowd segments, so this also checks crowd predictions are not FPs
    assert any(s["iscrowd"] for a in data["annotations"] for s in a["segments_info"])

    result = pq_compute(SAMPLE_JSON, SAMPLE_JSON)  # folders default to .../panoptic

    expected_n = {
        "All": len(present),
        "Things": sum(isthing[c] == 1 for c in present),
        "Stuff": sum(isthing[c] == 0 for c in present),
    }
    assert expected_n == {"All": 8, "Things": 4, "Stuff": 4}
    for name, n in expected_n.items():
        assert result[name] == {"pq": 1.0, "sq": 1.0, "rq": 1.0, "n": n}
    assert set(result["per_class"]) == set(isthing)
    for c, row in result["per_class"].items():
        want = 1.0 if c in present else 0.0
        assert row == {"pq": want, "sq": want, "rq": want}
    json.dumps(result)


def test_sample_perturbed_against_reference(tmp_path):
    data, maps = load_sample()
    cats = data["categories"]
    gt_ann = {a["image_id"]: a for a in data["annotations"]}
    pred_images, reference_images = [], []
    for image_id, gt in maps.items():
        gt_segments = gt_ann[image_id]["segments_info"]
        category_of = {s["id"]: s["category_id"] for s in gt_segments}
        pred = gt.copy()
        crowd = {s["id"] for s in gt_segments if s["iscrowd"]}
        if image_id == 142238:
            category_of[3937500] = 2  # relabel a person as a bicycle: FN person, FP bicycle
            pred[pred == 16757838] = 0  # remove the only category-37 segment: FN
            pred[pred == 4260062] = 2035955  # merge two persons: at most one can match
            # erode a stuff segment until its IoU falls, the rest goes to void
            m = gt == 11829830
            pred[m & ~erode(m, 6)] = 0
        else:
            # shift everything: large segments still match, small ones do not;
            # shifted predictions land on void and crowd pixels
            pred = np.roll(pred, (6, -9), axis=(0, 1))
            pred[:6] = 0
            # a person prediction lying on the crowd region of persons
            crowd_mask = gt == 5120499
            pred[crowd_mask & erode(crowd_mask, 2)] = 999
            category_of[999] = 1
        pred_segments = segments_of(pred, category_of, crowd=crowd)
        file_name = gt_ann[image_id]["file_name"]
        pred_images.append((image_id, file_name, pred, pred_segments))
        reference_images.append((gt, gt_segments, pred, pred_segments))

    pred_json = write_set(tmp_path, "pred", pred_images, cats)
    result = pq_compute(SAMPLE_JSON, pred_json, gt_folder=SAMPLE / "panoptic")

    want = reference_pq(reference_images, cats)
    assert_results_close(result, want)
    # the perturbations did what they were meant to
    assert 0.3 < result["All"]["pq"] < 0.95
    assert result["per_class"][37] == {"pq": 0.0, "sq": 0.0, "rq": 0.0}
    assert result["per_class"][2]["rq"] == 0.0 and result["Things"]["n"] == 5  # bicycle: FP only
    assert result["per_class"][187]["sq"] < 1.0


# ----------------------------------------------------------------------------
# One rule per case, exact numbers
# ----------------------------------------------------------------------------


def test_iou_exactly_half_is_not_a_match():
    gt = np.ones((10, 10), np.int32)  # one person, 100 px
    pred = np.zeros_like(gt)
    pred[:5] = 7  # 50 px inside: IoU = 50 / 100
    stat = pq_image_stats(gt, [seg(1, 1)], pred, [seg(7, 1)], CATS)
    assert stat[1] == PQStatCat(iou=0.0, tp=0, fp=1, fn=1)
    assert image_result(gt, [seg(1, 1)], pred, [seg(7, 1)])["All"] == {"pq": 0.0, "sq": 0.0, "rq": 0.0, "n": 1}


def test_iou_just_above_half_is_a_match():
    gt = np.ones((10, 10), np.int32)
    pred = np.zeros_like(gt)
    pred[:5] = 7
    pred[5, 0] = 7  # 51 px: IoU = 0.51
    stat = pq_image_stats(gt, [seg(1, 1)], pred, [seg(7, 1)], CATS)
    assert stat[1] == PQStatCat(iou=0.51, tp=1, fp=0, fn=0)
    result = image_result(gt, [seg(1, 1)], pred, [seg(7, 1)])
    assert result["All"] == {"pq": 0.51, "sq": 0.51, "rq": 1.0, "n": 1}


def test_void_is_left_out_of_the_union():
    gt = np.zeros((4, 4), np.int32)
    gt[:, :2] = 1  # person on the left half, void on the right
    pred = np.full((4, 4), 5, np.int32)  # the prediction covers both halves
    result = image_result(gt, [seg(1, 1)], pred, [seg(5, 1)])
    assert result["All"] == {"pq": 1.0, "sq": 1.0, "rq": 1.0, "n": 1}  # IoU 8 / 8, not 8 / 16

    gt[:, 2:] = 2  # the same right half labelled grass: now it is in the union
    segments = [seg(1, 1), seg(2, 3)]
    stat = pq_image_stats(gt, segments, pred, [seg(5, 1)], CATS)
    assert stat[1] == PQStatCat(0.0, tp=0, fp=1, fn=1)  # IoU 8 / 16 = 0.5
    assert stat[3] == PQStatCat(0.0, tp=0, fp=0, fn=1)


def crowd_scene():
    """4 x 4: columns 0-1 person crowd (id 9), column 2 a person (id 3), column 3 void."""
    gt = np.zeros((4, 4), np.int32)
    gt[:, :2] = 9
    gt[:, 2] = 3
    return gt, [seg(9, 1, iscrowd=1), seg(3, 1)]


def test_crowd_alone_is_not_a_false_negative():
    gt, segments = crowd_scene()
    gt[gt == 3] = 0
    result = image_result(gt, segments[:1], np.zeros_like(gt), [])
    # nothing to count: the crowd category is not even in n
    assert result["All"]["n"] == 0 and result["per_class"][1] == {"pq": 0.0, "sq": 0.0, "rq": 0.0}


def test_prediction_mostly_on_own_crowd_is_not_a_false_positive():
    gt, segments = crowd_scene()
    pred = np.zeros_like(gt)
    pred[:3, :2] = 5  # 6 px on the crowd
    pred[:2, 2] = 5  # 2 px on person 3: IoU 2 / 10, no match
    stat = pq_image_stats(gt, segments, pred, [seg(5, 1)], CATS)
    assert stat[1] == PQStatCat(0.0, tp=0, fp=0, fn=1)  # 6 / 8 ignored: not a FP; person 3 missed


def test_prediction_on_crowd_of_another_category_is_a_false_positive():
    gt, segments = crowd_scene()
    pred = np.zeros_like(gt)
    pred[:3, :2] = 5
    pred[:2, 2] = 5
    stat = pq_image_stats(gt, segments, pred, [seg(5, 2)], CATS)  # a car on the person crowd
    assert stat[2] == PQStatCat(0.0, tp=0, fp=1, fn=0)
    assert stat[1] == PQStatCat(0.0, tp=0, fp=0, fn=1)


def test_prediction_exactly_half_on_crowd_is_a_false_positive():
    gt, segments = crowd_scene()
    pred = np.zeros_like(gt)
    pred[:2, :2] = 5  # 4 px on the crowd
    pred[:, 2] = 5  # all 4 px of person 3: IoU 4 / 8, no match either
    stat = pq_image_stats(gt, segments, pred, [seg(5, 1)], CATS)
    assert stat[1] == PQStatCat(0.0, tp=0, fp=1, fn=1)


def test_void_and_crowd_add_up_for_the_false_positive_rule():
    gt, segments = crowd_scene()
    pred = np.zeros_like(gt)
    pred[0, :2] = 5  # 2 px on the crowd
    pred[0, 3] = 5  # 1 px on void
    pred[1:3, 2] = 5  # 2 px on person 3
    # 3 of 5 px ignored (> half), though neither void (1) nor crowd (2) alone is
    stat = pq_image_stats(gt, segments, pred, [seg(5, 1)], CATS)
    assert stat[1] == PQStatCat(0.0, tp=0, fp=0, fn=1)


def test_different_categories_never_match():
    gt = np.ones((4, 4), np.int32)
    pred = np.ones((4, 4), np.int32)  # the very same mask, labelled car
    stat = pq_image_stats(gt, [seg(1, 1)], pred, [seg(1, 2)], CATS)
    assert stat[1] == PQStatCat(0.0, tp=0, fp=0, fn=1)
    assert stat[2] == PQStatCat(0.0, tp=0, fp=1, fn=0)
    result = stat.results(CATS)
    assert result["Things"] == {"pq": 0.0, "sq": 0.0, "rq": 0.0, "n": 2}


def test_absent_categories_are_left_out_and_empty_group_is_zero():
    gt = np.zeros((4, 6), np.int32)
    gt[:, :3], gt[:, 3:] = 1, 2
    segments = [seg(1, 1), seg(2, 1)]
    pred = np.where(gt == 1, 11, 0)
    pred[0, 3:] = 12  # 3 of person 2's 12 px: no match
    result = image_result(gt, segments, pred, [seg(11, 1), seg(12, 1)])
    # person: tp 1 (IoU 1), fp 1, fn 1 -> PQ = 1 / 2, SQ = 1, RQ = 1 / 2;
    # car and grass have no segments anywhere: out of n and of the means
    assert result["All"] == {"pq": 0.5, "sq": 1.0, "rq": 0.5, "n": 1}
    assert result["Things"] == {"pq": 0.5, "sq": 1.0, "rq": 0.5, "n": 1}
    assert result["Stuff"] == {"pq": 0.0, "sq": 0.0, "rq": 0.0, "n": 0}
    assert result["per_class"] == {
        1: {"pq": 0.5, "sq": 1.0, "rq": 0.5},
        2: {"pq": 0.0, "sq": 0.0, "rq": 0.0},
        3: {"pq": 0.0, "sq": 0.0, "rq": 0.0},
    }
    back = json.loads(json.dumps(result))
    assert back["per_class"]["1"] == result["per_class"][1]  # keys become strings in JSON


def test_stuff_matches_and_all_averages_over_categories():
    gt = np.full((4, 4), 2, np.int32)
    gt[:2, :2] = 1  # a person on grass
    pred = np.full((4, 4), 20, np.int32)
    pred[:2, :3] = 10  # the person grown by 2 px: IoU 4 / 6
    result = image_result(gt, [seg(1, 1), seg(2, 3)], pred, [seg(10, 1), seg(20, 3)])
    assert result["Things"] == pytest.approx({"pq": 2 / 3, "sq": 2 / 3, "rq": 1.0, "n": 1})
    assert result["Stuff"] == pytest.approx({"pq": 10 / 12, "sq": 10 / 12, "rq": 1.0, "n": 1})
    assert result["All"] == pytest.approx({"pq": (2 / 3 + 10 / 12) / 2, "sq": (2 / 3 + 10 / 12) / 2, "rq": 1.0, "n": 2})


# ----------------------------------------------------------------------------
# PQStat
# ----------------------------------------------------------------------------


def test_pqstat_adds_and_round_trips_through_arrays():
    a, b = PQStat(), PQStat()
    a[1].tp, a[1].iou, a[3].fn = 2, 1.5, 1
    b[1].fp, b[2].tp, b[2].iou = 1, 1, 0.75
    total = a + b
    assert total[1] == PQStatCat(1.5, 2, 1, 0)
    assert total[2] == PQStatCat(0.75, 1, 0, 0)
    assert total[3] == PQStatCat(0.0, 0, 0, 1)
    a += b
    assert a == total
    ids = [1, 2, 3]
    array = total.to_array(ids)
    assert array.shape == (3, 4)
    assert PQStat.from_array(array, ids) == total
    # what a cross-host sum does
    assert PQStat.from_array(array + array, ids) == total + total
    with pytest.raises(ValueError):
        total.to_array([1, 2])


# ----------------------------------------------------------------------------
# Processes
# ----------------------------------------------------------------------------


def synthetic_sets(tmp_path, num_images, seed=0, categories=CATS):
    """Random rectangles of random categories (some crowd) and shifted predictions."""
    rng = np.random.default_rng(seed)
    cat_ids = [c["id"] for c in categories]
    gt_images, pred_images, reference = [], [], []
    for image_id in range(num_images):
        h, w = 24 + image_id % 3, 32
        gt = np.zeros((h, w), np.int32)
        gt_cat, crowd = {}, set()
        for k in range(1, 7):
            y, x = rng.integers(0, h - 4), rng.integers(0, w - 4)
            gt[y : y + rng.integers(4, 12), x : x + rng.integers(4, 14)] = 100 + k
            gt_cat[100 + k] = int(rng.choice(cat_ids))
            if rng.random() < 0.15:
                crowd.add(100 + k)
        gt_segments = segments_of(gt, gt_cat, crowd)
        pred = np.roll(np.where(gt > 0, gt + 1000, 0), tuple(rng.integers(-2, 3, size=2)), axis=(0, 1))
        pred_cat = {i + 1000: c if rng.random() > 0.15 else int(rng.choice(cat_ids)) for i, c in gt_cat.items()}
        pred_segments = segments_of(pred, pred_cat)
        name = f"img_{image_id}.png"
        gt_images.append((image_id, name, gt, gt_segments))
        pred_images.append((image_id, name, pred, pred_segments))
        reference.append((gt, gt_segments, pred, pred_segments))
    gt_json = write_set(tmp_path, "gt", gt_images, categories)
    return gt_json, write_set(tmp_path, "pred", pred_images, categories), reference


def test_multiprocess_equals_in_process(tmp_path):
    gt_json, pred_json, reference = synthetic_sets(tmp_path, 24)
    in_process = pq_compute(gt_json, pred_json, num_workers=0)
    pooled = pq_compute(gt_json, pred_json, num_workers=2)
    assert pooled == in_process  # bit-identical, not just close
    assert_results_close(in_process, reference_pq(reference, CATS))
    assert 0.0 < in_process["All"]["pq"] < 1.0


def test_things_only_set_has_an_empty_stuff_row(tmp_path):
    things = [c for c in CATS if c["isthing"]]
    gt_json, pred_json, _ = synthetic_sets(tmp_path, 3, seed=1, categories=things)
    # the gt JSON lists a stuff category that never occurs
    data = json.loads(gt_json.read_text())
    data["categories"] = CATS
    gt_json.write_text(json.dumps(data))
    result = pq_compute(gt_json, pred_json)
    assert result["Stuff"] == {"pq": 0.0, "sq": 0.0, "rq": 0.0, "n": 0}
    assert result["Things"]["n"] == 2 and result["All"] == result["Things"]
    json.dumps(result)


# ----------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------


def small_set(tmp_path, pred_segments=None, pred=None):
    gt = np.zeros((8, 10), np.int32)
    gt[:4], gt[4:] = 41, 42
    gt_segments = [seg(41, 1), seg(42, 3)]
    pred = gt.copy() if pred is None else pred
    pred_segments = gt_segments if pred_segments is None else pred_segments
    gt_json = write_set(tmp_path, "gt", [(7, "img_7.png", gt, gt_segments)])
    pred_json = write_set(tmp_path, "pred", [(7, "img_7.png", pred, pred_segments)])
    return gt_json, pred_json


@contextlib.contextmanager
def raises_naming(*parts):
    """pytest.raises(PQInputError) whose message contains every one of ``parts``."""
    with pytest.raises(PQInputError) as info:
        yield info
    message = str(info.value)
    for part in parts:
        assert str(part) in message, (part, message)


def test_error_pred_png_segment_missing_from_json(tmp_path):
    pred = np.zeros((8, 10), np.int32)
    pred[:4], pred[4:] = 41, 42
    pred[0, 0] = 999
    gt_json, pred_json = small_set(tmp_path, pred=pred)
    with raises_naming("img_7.png", "999", "not in the JSON"):
        pq_compute(gt_json, pred_json)


def test_error_json_segment_missing_from_png(tmp_path):
    gt_json, pred_json = small_set(tmp_path, pred_segments=[seg(41, 1), seg(42, 3), seg(555, 2)])
    with raises_naming("img_7.png", "555", "not in the PNG"):
        pq_compute(gt_json, pred_json)


def test_error_gt_image_without_prediction(tmp_path):
    gt_json, pred_json = small_set(tmp_path)
    data = json.loads(pred_json.read_text())
    data["annotations"] = []
    pred_json.write_text(json.dumps(data))
    with raises_naming("img_7.png", "image_id 7", "no prediction"):
        pq_compute(gt_json, pred_json)


def test_error_unknown_category(tmp_path):
    gt_json, pred_json = small_set(tmp_path, pred_segments=[seg(41, 1), seg(42, 4242)])
    with raises_naming("img_7.png", "42", "4242"):
        pq_compute(gt_json, pred_json)


def test_error_missing_png(tmp_path):
    gt_json, pred_json = small_set(tmp_path)
    (tmp_path / "pred" / "img_7.png").unlink()
    with raises_naming(str(tmp_path / "pred" / "img_7.png"), "not found"):
        pq_compute(gt_json, pred_json)


def test_error_unreadable_png(tmp_path):
    gt_json, pred_json = small_set(tmp_path)
    (tmp_path / "gt" / "img_7.png").write_bytes(b"not a png")
    with raises_naming(str(tmp_path / "gt" / "img_7.png"), "cannot read"):
        pq_compute(gt_json, pred_json)


def test_error_size_mismatch(tmp_path):
    pred = np.zeros((8, 9), np.int32)
    pred[:4], pred[4:] = 41, 42
    gt_json, pred_json = small_set(tmp_path, pred=pred)
    with raises_naming("img_7.png", "9x8", "10x8"):
        pq_compute(gt_json, pred_json)
    with raises_naming("tiny.png", "3x2", "2x2"):
        pq_image_stats(np.zeros((2, 2), int), [], np.zeros((2, 3), int), [], CATS, file_name="tiny.png")


@pytest.mark.parametrize("side", ["gt", "pred"])
def test_error_duplicate_segment_ids(tmp_path, side):
    gt_json, pred_json = small_set(tmp_path)
    path = gt_json if side == "gt" else pred_json
    data = json.loads(path.read_text())
    data["annotations"][0]["segments_info"].append(seg(42, 3))
    path.write_text(json.dumps(data))
    with raises_naming("img_7.png", "42", "more than once"):
        pq_compute(gt_json, pred_json)


def test_input_error_is_a_value_error():
    assert issubclass(PQInputError, ValueError)


# ----------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------


def test_cli_prints_table_and_writes_json(tmp_path, capsys):
    out = tmp_path / "result.json"
    rc = pq_command([f"--gt_json={SAMPLE_JSON}", f"--pred_json={SAMPLE_JSON}", f"--output={out}"])
    assert rc == 0
    printed = capsys.readouterr().out
    lines = printed.splitlines()
    for name, n in (("All", 8), ("Things", 4), ("Stuff", 4)):
        row = next(line for line in lines if line.startswith(name))
        assert row.split("|")[1].split() == ["100.0", "100.0", "100.0", str(n)]
    assert "PQ" in lines[0] and "SQ" in lines[0] and "RQ" in lines[0]
    expected = pq_compute(SAMPLE_JSON, SAMPLE_JSON)
    assert format_table(expected) in printed
    assert json.loads(out.read_text()) == json.loads(json.dumps(expected))


def test_cli_bad_input_exits_nonzero_without_traceback(tmp_path, capsys):
    gt_json, pred_json = small_set(tmp_path, pred_segments=[seg(41, 1), seg(42, 3), seg(555, 2)])
    rc = pq_command([f"--gt_json={gt_json}", f"--pred_json={pred_json}"])
    captured = capsys.readouterr()
    assert rc == 1
    assert captured.err.startswith("error:") and "555" in captured.err and "img_7.png" in captured.err
    assert captured.err.count("\n") == 1


def test_cli_null_segments_info_is_one_line(tmp_path, capsys):
    gt_json, pred_json = small_set(tmp_path)
    pred = json.loads(pred_json.read_text())
    pred["annotations"][0]["segments_info"] = None
    pred_json.write_text(json.dumps(pred))
    assert pq_command([f"--gt_json={gt_json}", f"--pred_json={pred_json}"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "segments_info None; expected a list" in err and str(pred_json) in err
    assert pq_command([f"--gt_json={tmp_path}/missing.json", f"--pred_json={pred_json}"]) == 1
    assert "missing.json" in capsys.readouterr().err


def test_cli_runs_as_module(tmp_path):
    gt_json, pred_json = small_set(tmp_path)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run(
        [sys.executable, "-W", "error", "-m", "pcv.pq"] + [f"--gt_json={gt_json}", f"--pred_json={pred_json}"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert "All       |  100.0  100.0  100.0     2" in proc.stdout


def test_the_library_module_points_to_the_command():
    # python -m pcv.evaluation.pq was round 1's command; it must not run nothing and exit 0.
    proc = subprocess.run([sys.executable, "-m", "pcv.evaluation.pq"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == "error: the PQ command is python -m pcv.pq --gt_json=... --pred_json=...\n"

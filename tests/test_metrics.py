"""mIoU and COCO instance AP beside PQ: hand-made cases, the COCO sample against itself, files, per-image report."""

import json

import numpy as np
import pytest

from pcv.evaluation import metrics, read_id_png
from pcv.evaluation.evaluator import Evaluator
from pcv.evaluation.pq import format_table, pq_image_stats
from pcv.evaluation.protocol import Metric
from pcv.evaluation.report import PerImageReport, worst_first
from pcv.evaluation.workdir_eval import evaluate_workdir

from shared_data import REPO_SAMPLE
from smoke_model import voting_predictor

CATEGORIES = [
    {"id": 1, "name": "person", "isthing": 1},
    {"id": 2, "name": "car", "isthing": 1},
    {"id": 5, "name": "sky", "isthing": 0},
]


def test_miou_by_hand():
    # Ground truth: sky on top (2 rows), a person (crowd) bottom-left, a car bottom-right, one void pixel.
    gt = np.array([[3, 3, 3, 3], [3, 3, 3, 3], [1, 1, 2, 2], [1, 1, 2, 0]])
    gt_segments = [{"id": 3, "category_id": 5}, {"id": 1, "category_id": 1, "iscrowd": 1}, {"id": 2, "category_id": 2}]
    # Prediction: sky grows one row down over the person's top-left pixel; the car is left void; id 9 = person.
    pred = np.array([[4, 4, 4, 4], [4, 4, 4, 4], [4, 9, 0, 0], [9, 9, 0, 7]])
    pred_segments = [{"id": 4, "category_id": 5}, {"id": 9, "category_id": 1}, {"id": 7, "category_id": 2}]
    stat = metrics.SemanticStat([1, 2, 5])
    stat.add(gt, gt_segments, pred, pred_segments)
    result = stat.results()
    # person: TP 3, FN 1 (predicted sky); car: TP 0 of 3 (2 void, the void gt pixel is ignored, so its car is no FP)
    # sky: TP 8, FP 1.
    assert result["per_class"] == {1: 3 / 4, 2: 0.0, 5: 8 / 9}
    assert result["miou"] == pytest.approx((3 / 4 + 0 + 8 / 9) / 3) and result["n"] == 3
    # A class in neither is left out of the mean.
    stat = metrics.SemanticStat([1, 2, 5, 6])
    stat.add(gt, gt_segments, pred, pred_segments)
    assert stat.results()["n"] == 3 and 6 not in stat.results()["per_class"]


def _instances(shape, boxes):
    ids = np.zeros(shape, np.int32)
    for i, (y0, x0, y1, x1) in enumerate(boxes, 1):
        ids[y0:y1, x0:x1] = i
    return ids


def test_ap_by_hand():
    # Two people to find; a crowd of cars. Detections: one person exactly (0.9), a false person (0.8), one
    # person-sized detection on the crowd (0.95), which COCO neither counts right nor wrong.
    gt = _instances((64, 64), [(0, 0, 10, 10), (20, 20, 30, 30), (40, 40, 60, 60)])
    gt_segments = [
        {"id": 1, "category_id": 1},
        {"id": 2, "category_id": 1},
        {"id": 3, "category_id": 2, "iscrowd": 1},
    ]
    pred = _instances((64, 64), [(0, 0, 10, 10), (0, 50, 8, 58), (42, 42, 50, 50)])
    pred_segments = [
        {"id": 1, "category_id": 1, "score": 0.9},
        {"id": 2, "category_id": 1, "score": 0.8},
        {"id": 3, "category_id": 2, "score": 0.95},
    ]
    stat = metrics.InstanceStat(CATEGORIES)
    stat.add(7, gt, gt_segments, pred, pred_segments)
    result = stat.results()
    # Precision 1 up to recall 1/2, then nothing: 51 of COCO's 101 recall points, at every IoU threshold.
    assert result["ap"] == pytest.approx(51 / 101) and result["ap50"] == pytest.approx(51 / 101)
    assert result["aps"] == pytest.approx(51 / 101) and result["apm"] == -1.0 and result["apl"] == -1.0
    # Nothing detected: 0 where there is something to find, -1 where COCO has nothing to measure.
    empty = metrics.InstanceStat(CATEGORIES)
    empty.add(7, gt, gt_segments, np.zeros_like(pred), [])
    assert empty.results() == {"ap": 0.0, "ap50": 0.0, "ap75": 0.0, "aps": 0.0, "apm": -1.0, "apl": -1.0}
    # Stuff is never an instance; the table prints both metrics.
    assert {d["category_id"] for d in stat.detections} == {1, 2}
    table = format_table(
        {g: {"pq": 0, "sq": 0, "rq": 0, "n": 0} for g in ("All", "Things", "Stuff")}
        | {"semantic": {"miou": 0.5}, "instances": result}
    )
    assert table.splitlines()[-1] == "mIoU 50.0   AP 50.5 AP50 50.5 AP75 50.5 APs 50.5 APm - APl -"


def test_the_coco_sample_scored_against_itself():
    gt = json.loads((REPO_SAMPLE / "panoptic.json").read_text())
    categories = json.loads((REPO_SAMPLE / "categories.json").read_text())
    semantic = metrics.SemanticStat([c["id"] for c in categories])
    instances = metrics.InstanceStat(categories)
    for ann in gt["annotations"]:
        ids = read_id_png(REPO_SAMPLE / "panoptic" / ann["file_name"])
        segments = ann["segments_info"]
        semantic.add(ids, segments, ids, segments)
        instances.add(ann["image_id"], ids, segments, ids, segments)
    sem = semantic.results()
    assert sem["miou"] == 1.0 and sem["n"] == len(
        {s["category_id"] for a in gt["annotations"] for s in a["segments_info"]}
    )
    ap = instances.results()
    assert len(instances.gt) > 10 and any(a["iscrowd"] for a in instances.gt)
    assert {k: v for k, v in ap.items() if v != -1.0} == dict.fromkeys([k for k, v in ap.items() if v != -1.0], 1.0)
    assert ap["ap"] == 1.0


@pytest.fixture(scope="module")
def evaluator_with_files(smoke_workdir, tmp_path_factory):
    from pcv.data.datasets import make_datasets
    from pcv.runtime.workdir import Workdir

    predictor = voting_predictor(smoke_workdir)
    dataset = make_datasets(Workdir(smoke_workdir).read_config().data).val
    out = tmp_path_factory.mktemp("eval")
    chosen = [*metrics.default_metrics(out_dir=out), metrics.CocoPanopticFiles(out), PerImageReport()]
    evaluator = Evaluator(dataset, batch_size=4, metrics=chosen, progress=False)
    return evaluator, evaluator.run(predictor)


def test_the_detections_file_rescores_to_the_same_ap(evaluator_with_files):
    """instances.json (COCO results format) scored by pycocotools from the written files, as another tool would."""
    evaluator, result = evaluator_with_files
    files = result["files"]
    detections = json.loads(open(files["instances_json"]).read())
    assert detections and all({"image_id", "category_id", "segmentation", "score"} == set(d) for d in detections)
    gt = json.loads(open(files["gt_json"]).read())
    categories = gt["categories"]
    things = {c["id"] for c in categories if c["isthing"]}
    images, annotations = [], []
    for ann in gt["annotations"]:
        ids = read_id_png(f"{files['gt_folder']}/{ann['file_name']}")
        images.append({"id": ann["image_id"], "height": ids.shape[0], "width": ids.shape[1]})
        for entry in metrics.thing_segments(ids, ann["segments_info"], things, detections=False):
            annotations.append({**entry, "image_id": ann["image_id"]})
    again = metrics.coco_ap(images, annotations, detections, categories)
    assert again == result["instances"]
    # Each detection is a predicted thing segment of its image: same pixels, class and score.
    from pycocotools import mask as mask_utils

    predictions = json.loads(open(files["predictions_json"]).read())["annotations"]
    assert len(detections) == sum(s["isthing"] for a in predictions for s in a["segments_info"]) >= 4
    for ann in predictions:
        ids = read_id_png(f"{files['predictions_folder']}/{ann['file_name']}")
        mine = [d for d in detections if d["image_id"] == ann["image_id"]]
        segments = [s for s in ann["segments_info"] if s["isthing"]]
        assert len(mine) == len(segments)
        for seg, det in zip(segments, mine):
            assert (det["category_id"], det["score"]) == (seg["category_id"], seg["score"])
            np.testing.assert_array_equal(mask_utils.decode(det["segmentation"]), ids == seg["id"])


def test_the_per_image_report_is_each_images_pq_worst_first(evaluator_with_files):
    evaluator, result = evaluator_with_files
    files = result["files"]
    gt = {a["image_id"]: a for a in json.loads(open(files["gt_json"]).read())["annotations"]}
    pred = {a["image_id"]: a for a in json.loads(open(files["predictions_json"]).read())["annotations"]}
    categories = evaluator.dataset.categories
    records = result["images"]
    assert [r["index"] for r in records] == list(range(evaluator.count))
    for r in records:  # the report's numbers are the PQ of that image's files
        g, p = gt[r["image_id"]], pred[r["image_id"]]
        stat = pq_image_stats(
            read_id_png(f"{files['gt_folder']}/{g['file_name']}"),
            g["segments_info"],
            read_id_png(f"{files['predictions_folder']}/{p['file_name']}"),
            p["segments_info"],
            categories,
        )
        summary, _ = stat.pq_average(categories)
        assert r["pq"] == pytest.approx(summary["pq"]) and r["n"] == summary["n"]
        assert r["tp"] == sum(s.tp for s in stat.pq_per_cat.values())
        assert r["fp"] == sum(c["fp"] for c in r["classes"].values())
    ranked = worst_first(records)
    assert [r["pq"] for r in ranked] == sorted(r["pq"] for r in records)


class InstancesPerImage(Metric):
    """A metric of a user's own: the mean number of instances found per image, summed over hosts."""

    def reset(self, run):
        self.images, self.instances = 0, 0

    def add(self, items):
        self.images += len(items)
        self.instances += sum(s["isthing"] for i in items for s in i.prediction.segments_info)

    def combine(self):
        from pcv.runtime.distributed import sum_across_hosts

        self.images, self.instances = map(int, sum_across_hosts(np.array([self.images, self.instances])))

    def result(self):
        return {"instances_per_image": self.instances / self.images}


def test_a_metric_of_your_own_joins_the_results_without_editing_the_loop(smoke_workdir, evaluator_with_files):
    from pcv.data.datasets import make_datasets
    from pcv.runtime.workdir import Workdir

    evaluator, expected = evaluator_with_files
    dataset = make_datasets(Workdir(smoke_workdir).read_config().data).val
    mine = InstancesPerImage()
    result = Evaluator(dataset, batch_size=4, metrics=[*metrics.default_metrics(), mine], progress=False).run(
        voting_predictor(smoke_workdir)
    )
    predictions = json.loads(open(expected["files"]["predictions_json"]).read())["annotations"]
    found = sum(s["isthing"] for a in predictions for s in a["segments_info"])
    assert found >= 4 and result["instances_per_image"] == found / len(predictions)
    assert result["All"] == expected["All"] and result["semantic"] == expected["semantic"]  # the others unchanged
    with pytest.raises(ValueError, match="returns \\['semantic'\\], which another metric returned"):
        Evaluator(dataset, batch_size=4, metrics=[metrics.SemanticIoU(), metrics.SemanticIoU()], progress=False).run(
            voting_predictor(smoke_workdir)
        )


def test_evaluate_report_writes_the_ranking_and_a_picture_sheet(smoke_workdir, tmp_path):
    lines = []
    results = evaluate_workdir(
        smoke_workdir, out_dir=tmp_path, report=2, progress=False, log=lines.append, num_workers=0
    )
    report = json.loads((tmp_path / "report.json").read_text())
    assert len(report["images"]) == results["num_images"] == 4
    assert report["images"] == worst_first(report["images"])
    assert lines[-3].startswith("worst images (of 4;") and lines[-2].startswith(
        f"  {report['images'][0]['image_id']}: PQ"
    )
    from PIL import Image

    with Image.open(tmp_path / "worst.png") as sheet:
        assert sheet.size[1] > 1.5 * sheet.size[0] / 4  # two rows of four cells
    assert {"semantic", "instances"} <= set(results["eval"])

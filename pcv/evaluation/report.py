"""Where a model fails, image by image: ``report.json`` (PQ and per-class TP / FP / FN, worst first), ``worst.png``.

:class:`PerImageReport` is the metric that keeps every image's record during
an evaluation; :func:`write_report` writes them, worst first, with a picture
sheet of the worst images (``python -m pcv.evaluate --report=N``).
"""

from __future__ import annotations

from collections.abc import Sequence

from pcv import viz
from pcv.evaluation.pq import PQStat, pq_image_stats
from pcv.evaluation.protocol import Item, Metric, Run
from pcv.inference.predictor import Predictor
from pcv.runtime import distributed
from pcv.runtime.files import encode_png, write_atomic, write_json
from pcv.runtime.paths import as_path


def image_record(example, index: int, stat: PQStat, categories) -> dict:
    """One image's line of the report: its PQ, and TP / FP / FN and PQ per class present."""
    summary, per_class = stat.pq_average(categories)
    classes = {}
    for c in categories:
        s = stat.pq_per_cat.get(int(c["id"]))
        if s is None or s.tp + s.fp + s.fn == 0:
            continue
        classes[str(c.get("name", c["id"]))] = {"tp": s.tp, "fp": s.fp, "fn": s.fn, "pq": per_class[int(c["id"])]["pq"]}
    return {
        "index": index,
        "image_id": example.get("image_id"),
        "file_name": example.get("file_name"),
        **{k: summary[k] for k in ("pq", "sq", "rq", "n")},
        "tp": sum(v["tp"] for v in classes.values()),
        "fp": sum(v["fp"] for v in classes.values()),
        "fn": sum(v["fn"] for v in classes.values()),
        "classes": classes,
    }


class PerImageReport(Metric):
    """Every image's PQ and per-class TP / FP / FN (:func:`image_record`), gathered from every host.

    Result: ``{"images": [record, ...]}`` in the split's order.
    """

    def reset(self, run: Run) -> None:
        self.categories = run.dataset.categories
        self.records: list[dict] = []

    def add(self, items: Sequence[Item]) -> None:
        for item in items:
            example, prediction = item.example, item.prediction
            stat = pq_image_stats(
                example["segment_ids"],
                example["segments_info"],
                prediction.ids,
                prediction.segments_info,
                self.categories,
                image_id=example.get("image_id"),
            )
            self.records.append(image_record(example, item.index, stat, self.categories))

    def combine(self) -> None:
        gathered = distributed.gather_objects(self.records)
        self.records = sorted((r for part in gathered for r in part), key=lambda r: r["index"])

    def result(self) -> dict:
        return {"images": self.records}


def worst_first(records: list[dict]) -> list[dict]:
    """Per-image records from the worst PQ to the best; an image with nothing to find and nothing found counts as 1."""
    return sorted(records, key=lambda r: (r["pq"] if r["n"] else 1.0, -r["fp"] - r["fn"], r["index"]))


def write_report(
    records: list[dict], dataset, predictor: Predictor, out_dir, num_pictures: int, *, split: str = "val", log=print
) -> dict:
    """``report.json`` (``records``, worst first) and ``worst.png`` in ``out_dir``.

    ``records``: :class:`PerImageReport`'s. ``worst.png`` has a row per image,
    input | ground truth | prediction | heatmap, for the ``num_pictures``
    worst of ``dataset``. Those images are predicted again (on every host,
    which keeps the hosts in step); process 0 writes.
    """
    ranked = worst_first(records)
    worst = ranked[:num_pictures]
    examples = [dataset[r["index"]] for r in worst]
    predictions = predictor.predict_batch([e["image"] for e in examples])
    report = {
        "step": predictor.step,
        "split": split,
        "order": "worst PQ first (an image with nothing to find and nothing found counts as 1)",
        "images": ranked,
    }
    if distributed.is_main():
        out = as_path(out_dir)
        write_json(out / "report.json", report, indent=1)
        titles = [
            f"{r['file_name'] or r['image_id']}: PQ {100 * r['pq']:.1f}, TP {r['tp']} FP {r['fp']} FN {r['fn']}"
            for r in worst
        ]
        sheet = viz.validation_panel(list(zip(examples, predictions)), predictor.label_space, row_titles=titles)
        write_atomic(out / "worst.png", encode_png(sheet))
        log(f"worst images (of {len(ranked)}; all in {out / 'report.json'}, pictures in {out / 'worst.png'}):")
        for title in titles[:5]:
            log(f"  {title}")
    return report

"""Where a model fails, image by image: ``report.json`` (PQ and per-class TP / FP / FN, worst first), ``worst.png``."""

from __future__ import annotations

from pcv.evaluation.pq import PQStat
from pcv.inference.predictor import Predictor
from pcv.runtime import distributed


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


def worst_first(records: list[dict]) -> list[dict]:
    """Per-image records from the worst PQ to the best; an image with nothing to find and nothing found counts as 1."""
    return sorted(records, key=lambda r: (r["pq"] if r["n"] else 1.0, -r["fp"] - r["fn"], r["index"]))


def write_report(evaluator, predictor: Predictor, num_pictures: int, log=print) -> dict:
    """``report.json`` (every image's PQ and per-class TP / FP / FN, worst first) and ``worst.png`` in the out dir.

    ``worst.png`` has a row per image, input | ground truth | prediction |
    heatmap, for the ``num_pictures`` worst. Those images are predicted
    again (on every host, which keeps the hosts in step); process 0 writes.
    """
    from pcv import viz
    from pcv.runtime.files import encode_png, write_atomic, write_json

    ranked = worst_first(evaluator.images)
    worst = ranked[:num_pictures]
    examples = [evaluator.dataset[r["index"]] for r in worst]
    predictions = predictor.predict_batch([e["image"] for e in examples])
    report = {
        "step": predictor.step,
        "split": evaluator.split,
        "order": "worst PQ first (an image with nothing to find and nothing found counts as 1)",
        "images": ranked,
    }
    if distributed.is_main():
        out = evaluator.out_dir_path
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

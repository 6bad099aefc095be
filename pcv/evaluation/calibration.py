"""Calibrated post-processing: the peak threshold, ``top_t`` and minimum stuff area chosen by PQ on held-out images.

    python -m pcv.evaluate --workdir=runs/mine --calibrate        # the calibration split, then val
    python -m pcv.train ... --config.data.calibration_images=64   # hold them out; calibrated at the end

The images come from the ``calibration`` split: the last
``config.data.calibration_images`` images of the training split, which the
run did not train on, so the split a model is reported on is never the one
its settings were chosen on. The network runs once per image; only the
post-processing runs per setting: for each ``top_t`` one compiled program
maps every (threshold, minimum stuff area) pair over the batch's logits
(:func:`pcv.inference.panoptic_inference` takes both as traced values).

The choice is the highest PQ (All); on a tie, the setting closest to the
run's own. On a few images the best of many settings beats the run's own by
luck as often as by merit, so it is kept only when it wins on at least
:data:`CONFIDENCE` of bootstrap resamples of the images (paired: the same
resample for both); otherwise the run keeps its own settings and says so.
The record goes to the work dir's ``calibration.json`` (the choice, PQ
before and after, the confidence, every setting's PQ), which
:meth:`pcv.Predictor.from_workdir` and so ``pcv.evaluate``, ``pcv.predict``
and ``pcv.export`` then use (``--calibrated=false`` ignores it).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools

import jax
import numpy as np

from pcv.config import InferenceConfig
from pcv.data.pipeline import eval_batches
from pcv.evaluation.pq import PQStat, pq_image_stats
from pcv.inference.postprocess import panoptic_inference
from pcv.runtime import distributed
from pcv.runtime.console import ProgressBar
from pcv.runtime.workdir import Workdir

#: The settings tried, besides the run's own.
THRESHOLDS = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)
TOP_T = (1, 2, 3)
MIN_STUFF_AREAS = (0, 64, 256, 1024, 4096)
#: Bootstrap resamples of the images, and the share of them the best setting must win to replace the run's own.
RESAMPLES = 1000
CONFIDENCE = 0.9
#: Settings post-processed in one call: their maps and working memory are held
#: together, so this bounds memory (at COCO scale each costs tens of MiB).
SETTINGS_PER_CALL = 8


def candidates(current: InferenceConfig) -> list[InferenceConfig]:
    """Every combination of the lists above and the run's own values."""
    thresholds = sorted(set(THRESHOLDS) | {current.threshold})
    tops = sorted(set(TOP_T) | {current.top_t})
    areas = sorted(set(MIN_STUFF_AREAS) | {current.min_stuff_area})
    return [
        dataclasses.replace(current, threshold=float(t), top_t=int(k), min_stuff_area=int(a))
        for k, t, a in itertools.product(tops, thresholds, areas)
    ]


@functools.lru_cache(maxsize=8)
def _post_many(grid, thing_mask: tuple, config: InferenceConfig, out_hw: tuple):
    """One program: a batch's logits -> results for every (threshold, area) pair, ``[B, S, ...]``."""

    def run(semantic, votes, thresholds, areas):
        def one(t, a):
            return panoptic_inference(
                semantic, votes, grid, thing_mask, config, output_size=out_hw, threshold=t, min_stuff_area=a
            )

        return jax.vmap(one, out_axes=1)(thresholds, areas)  # [B, S, ...]: the batch stays the sharded axis

    return jax.jit(run)


def _score(predictor, batch, raw, members, per_image, labels) -> None:
    """Each valid image's PQ statistics under each setting of ``members`` (``raw``: ``[B, S, ...]``).

    ``per_image[i]`` gets ``(position in the split, PQStat)`` for setting ``i``.
    """
    for j in range(len(batch["valid"])):
        if not batch["valid"][j]:
            continue
        example = batch["examples"][j]
        for m, i in enumerate(members):
            prediction = predictor.to_prediction({k: v[j, m] for k, v in raw.items()}, batch["meta"][j])
            stat = pq_image_stats(
                example["segment_ids"], example["segments_info"], prediction.ids, prediction.segments_info, labels
            )
            per_image[i].append((int(batch["index"][j]), stat))


def _pq_of_sums(sums: np.ndarray) -> np.ndarray:
    """PQ (All) of ``[..., C, 4]`` sums of ``(iou, tp, fp, fn)``: the mean over the categories that occur."""
    iou, tp, fp, fn = np.moveaxis(sums, -1, 0)
    present = tp + fp + fn > 0
    pq = np.where(present, iou / np.maximum(tp + 0.5 * fp + 0.5 * fn, 1e-12), 0.0)
    return pq.sum(-1) / np.maximum(present.sum(-1), 1)


def win_rate(mine: np.ndarray, theirs: np.ndarray, *, resamples: int = RESAMPLES, seed: int = 0) -> float:
    """The share of bootstrap resamples of the images on which ``mine`` has the higher PQ.

    ``mine``, ``theirs``: ``[N, C, 4]`` per-image ``(iou, tp, fp, fn)`` of two
    settings on the same N images; each resample draws N images with
    replacement and scores both settings on the same draw.
    """
    n = len(mine)
    counts = np.random.default_rng(seed).multinomial(n, np.full(n, 1.0 / n), size=resamples)  # [R, N]
    a = _pq_of_sums(np.einsum("rn,nck->rck", counts, mine))
    b = _pq_of_sums(np.einsum("rn,nck->rck", counts, theirs))
    return float(np.mean(a > b))


def _closeness(setting: InferenceConfig, current: InferenceConfig) -> tuple:
    return (
        abs(np.log(max(setting.threshold, 1e-6) / max(current.threshold, 1e-6))),
        abs(setting.top_t - current.top_t),
        abs(np.log1p(setting.min_stuff_area) - np.log1p(current.min_stuff_area)),
    )


def calibrate(predictor, dataset, *, batch_size: int, num_images: int | None = None, progress=True, log=print):
    """PQ of every candidate setting on ``dataset``; returns the record ``calibration.json`` holds (module docstring).

    ``predictor``: a :class:`pcv.Predictor` (its settings are "before").
    """
    current = predictor.inference
    settings = candidates(current)
    labels = dataset.categories
    category_ids = [int(c["id"]) for c in labels]
    thing_mask = tuple(bool(t) for t in predictor.label_space.thing_mask)
    per_image: list[list[tuple[int, PQStat]]] = [[] for _ in settings]
    groups: dict[int, list[int]] = {}
    for i, s in enumerate(settings):
        groups.setdefault(s.top_t, []).append(i)
    count = len(dataset) if num_images is None else min(num_images, len(dataset))
    hosts = distributed.process_count()
    bar = ProgressBar(count, "calibrate", enabled=progress and distributed.is_main())
    for batch in eval_batches(
        dataset,
        predictor.geometry,
        batch_size=batch_size,
        num_images=count,
        process_index=distributed.process_index(),
        process_count=hosts,
    ):
        logits = predictor.logits(batch["images"])  # the network, once
        out_hw = tuple(np.shape(batch["images"])[1:3])
        for top_t, group in groups.items():
            config = dataclasses.replace(current, top_t=top_t)
            post = _post_many(predictor.grid, thing_mask, config, out_hw)
            for start in range(0, len(group), SETTINGS_PER_CALL):
                members = group[start : start + SETTINGS_PER_CALL]
                padded = members + members[-1:] * (SETTINGS_PER_CALL - len(members))  # one program shape
                thresholds = np.array([settings[i].threshold for i in padded], np.float32)
                areas = np.array([settings[i].min_stuff_area for i in padded], np.int32)
                raw = predictor.to_host(post(logits["semantic"], logits["votes"], thresholds, areas))
                _score(predictor, batch, raw, members, per_image, labels)
        bar.update(int(np.sum(batch["valid"])) * hosts)
    bar.close()
    rows = []
    for setting, images in zip(settings, per_image):
        stat = sum((s for _, s in images), PQStat())
        total = PQStat.from_array(distributed.sum_across_hosts(stat.to_array(category_ids)), category_ids)
        result = total.results(labels)
        rows.append({"setting": _fields(setting), "pq": result["All"]["pq"], "results": result})
    own = settings.index(current)
    before = rows[own]
    best = max(range(len(rows)), key=lambda i: (rows[i]["pq"], tuple(-x for x in _closeness(settings[i], current))))
    confidence = _confidence(per_image[best], per_image[own], category_ids) if best != own else 1.0
    kept = best != own and confidence < CONFIDENCE
    chosen = before if kept else rows[best]
    record = {
        "chosen": chosen["setting"],
        "before": {"setting": before["setting"], **{g: before["results"][g] for g in ("All", "Things", "Stuff")}},
        "after": {"setting": chosen["setting"], **{g: chosen["results"][g] for g in ("All", "Things", "Stuff")}},
        "split": getattr(dataset, "split", "calibration"),
        "num_images": count,
        "step": predictor.step,
        "best": {"setting": rows[best]["setting"], "pq": rows[best]["pq"], "confidence": confidence},
        "tried": [{**r["setting"], "pq": r["pq"]} for r in rows],
    }
    head = f"calibrated on {count} {record['split']} images: PQ {100 * before['pq']:.1f} with"
    if kept:
        log(
            f"{head} {_describe(before['setting'])}; kept: the best, {100 * rows[best]['pq']:.1f} with "
            f"{_describe(rows[best]['setting'])}, won on only {100 * confidence:.0f} % of resamples of these images"
        )
    else:
        log(f"{head} {_describe(before['setting'])} -> {100 * chosen['pq']:.1f} with {_describe(chosen['setting'])}")
    return record


def _confidence(best: list, own: list, category_ids: list[int]) -> float:
    """:func:`win_rate` of two settings' per-image statistics, gathered from every host (the same on each)."""
    parts = distributed.gather_objects(
        [(i, a.to_array(category_ids), b.to_array(category_ids)) for (i, a), (_, b) in zip(best, own)]
    )
    rows = sorted((r for part in parts for r in part), key=lambda r: r[0])
    rate = win_rate(np.stack([r[1] for r in rows]), np.stack([r[2] for r in rows])) if distributed.is_main() else 0.0
    return float(distributed.broadcast_object(rate))


def calibrate_and_keep(predictor, dataset, workdir, **kwargs):
    """:func:`calibrate`, keep the record in the work dir's ``calibration.json`` (process 0), and return
    ``(record, predictor with the chosen settings)``."""
    record = calibrate(predictor, dataset, **kwargs)
    if distributed.is_main():
        Workdir(workdir).write_calibration(record)
    return record, predictor.replace(inference=dataclasses.replace(predictor.inference, **record["chosen"]))


def _fields(setting: InferenceConfig) -> dict:
    return {"threshold": setting.threshold, "top_t": setting.top_t, "min_stuff_area": setting.min_stuff_area}


def _describe(fields: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in fields.items())

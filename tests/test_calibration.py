"""Calibrated post-processing: chosen by PQ on held-out images, the network run once, then used everywhere."""

import dataclasses
import json
import shutil

import jax
import numpy as np
import pytest

from pcv.config import InferenceConfig
from pcv.data.datasets import make_datasets
from pcv.errors import ConfigError, WorkdirError
from pcv.evaluation import calibration
from pcv.evaluation.evaluator import Evaluator
from pcv.evaluation.workdir_eval import evaluate_workdir
from pcv.inference.postprocess import panoptic_inference
from pcv.inference.predictor import Predictor
from pcv.runtime.workdir import CALIBRATION, Workdir
from pcv.voting import VoteGrid

from smoke_model import voting_model_state

GRID = VoteGrid(((1, 1), (3, 1)))


def test_traced_settings_give_the_configs_answers():
    rng = np.random.default_rng(0)
    sem = rng.normal(0, 2, (2, 12, 16, 5)).astype(np.float32)
    votes = rng.normal(0, 2, (2, 12, 16, GRID.num_bins + 1)).astype(np.float32)
    things = (True, True, False, False, False)
    config = InferenceConfig(max_instances=8)
    settings = [(0.5, 0), (1.0, 64), (2.5, 256)]
    t = np.array([a for a, _ in settings], np.float32)
    m = np.array([b for _, b in settings], np.int32)
    many = jax.jit(
        jax.vmap(
            lambda t, m: panoptic_inference(
                sem, votes, GRID, things, config, output_size=(48, 64), threshold=t, min_stuff_area=m
            )
        )
    )(t, m)
    for i, (threshold, area) in enumerate(settings):
        one = panoptic_inference(
            sem, votes, GRID, things, dataclasses.replace(config, threshold=threshold, min_stuff_area=area), (48, 64)
        )
        for key in one:  # maps, ids and counts exactly; scores and heat (another program) to float rounding
            a, b, where = np.asarray(many[key][i]), np.asarray(one[key]), f"{key} at {threshold}, {area}"
            if np.issubdtype(b.dtype, np.floating):
                np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6, err_msg=where)
            else:
                np.testing.assert_array_equal(a, b, err_msg=where)
    assert len({int(np.asarray(many["instance_valid"][i]).sum()) for i in range(3)}) > 1  # the settings differ


@pytest.fixture(scope="module")
def predictor(smoke_workdir):
    p = Predictor.from_workdir(smoke_workdir)
    return p.replace(model_state=voting_model_state(p.model_state))


def test_calibration_scores_each_setting_as_the_evaluator_does(predictor, smoke_workdir):
    config = Workdir(smoke_workdir).read_config()
    held = make_datasets(dataclasses.replace(config.data, calibration_images=4)).calibration
    lines = []
    record = calibration.calibrate(predictor, held, batch_size=4, progress=False, log=lines.append)
    tried = record["tried"]
    assert len(tried) == len(calibration.candidates(predictor.inference))
    best = max(r["pq"] for r in tried)
    assert record["after"]["All"]["pq"] == best >= record["before"]["All"]["pq"]
    assert record["before"]["setting"]["threshold"] == predictor.inference.threshold
    assert len({r["pq"] for r in tried}) > 3  # the settings matter on this model
    # The network once + many post-processings == the evaluator with each setting, for a few settings.
    for fields in (record["chosen"], record["before"]["setting"], tried[5], tried[-1]):
        fields = {k: fields[k] for k in ("threshold", "top_t", "min_stuff_area")}
        result = Evaluator(held, batch_size=4, progress=False).run(
            predictor.replace(inference=dataclasses.replace(predictor.inference, **fields))
        )
        pq = next(r["pq"] for r in tried if {k: r[k] for k in fields} == fields)
        assert result["All"]["pq"] == pytest.approx(pq, abs=1e-12), fields
    assert lines == [
        f"calibrated on 4 calibration images: PQ {100 * record['before']['All']['pq']:.1f} with "
        + ", ".join(f"{k} {v}" for k, v in record["before"]["setting"].items())
        + f" -> {100 * best:.1f} with "
        + ", ".join(f"{k} {v}" for k, v in record["chosen"].items())
    ]


@pytest.fixture()
def few_candidates(monkeypatch):
    """Fewer settings to try: these tests are about where the choice goes, not how it is made."""
    monkeypatch.setattr(calibration, "THRESHOLDS", (0.5, 2.0))
    monkeypatch.setattr(calibration, "TOP_T", (1,))
    monkeypatch.setattr(calibration, "MIN_STUFF_AREAS", (0,))


def test_a_run_with_held_out_images_is_calibrated_and_everything_uses_it(tmp_path, few_candidates):
    from pcv.training.trainer import train_and_evaluate

    from smoke_model import smoke_config

    config = smoke_config(steps=4, checkpoint_every=4, **{"data.num_val": 4, "data.calibration_images": 4})
    results = train_and_evaluate(config, str(tmp_path / "run"), log=lambda *a, **k: None)
    stored = json.loads((tmp_path / "run" / CALIBRATION).read_text())
    assert results["calibration"]["chosen"] == stored["chosen"]
    assert stored["split"] == "calibration" and stored["num_images"] == 4
    used = Predictor.from_workdir(tmp_path / "run").inference
    assert {k: getattr(used, k) for k in stored["chosen"]} == stored["chosen"]
    ignored = Predictor.from_workdir(tmp_path / "run", calibrated=False).inference
    assert ignored == Workdir(tmp_path / "run").read_config().inference


def test_evaluate_calibrate(smoke_workdir, tmp_path, few_candidates):
    run = tmp_path / "run"
    shutil.copytree(smoke_workdir, run)  # calibration.json must not reach the shared work dir
    quiet = {"progress": False, "num_workers": 0}
    with pytest.raises(ConfigError, match="--calibrate needs held-out images"):
        evaluate_workdir(run, calibrate=True, out_dir=tmp_path / "a", log=lambda *a: None, **quiet)
    assert not (run / CALIBRATION).exists()
    lines = []
    overrides = {"data.calibration_images": 4}
    results = evaluate_workdir(
        run, calibrate=True, overrides=overrides, out_dir=tmp_path / "b", log=lines.append, **quiet
    )
    assert lines[0].startswith("note: the run held no images out (its data.calibration_images is 0)")
    assert lines[1].startswith("calibrated on 4 calibration images: PQ ")
    chosen = json.loads((run / CALIBRATION).read_text())["chosen"]
    assert {k: results["inference"][k] for k in chosen} == chosen
    # Later evaluations use it unless told not to.
    again = evaluate_workdir(run, out_dir=tmp_path / "c", log=lambda *a: None, **quiet)
    assert again["inference"] == results["inference"]
    plain = evaluate_workdir(run, calibrated=False, out_dir=tmp_path / "d", log=lambda *a: None, **quiet)
    assert plain["inference"] == dataclasses.asdict(Workdir(run).read_config().inference)


def test_a_damaged_calibration_file_is_one_line_naming_it(smoke_workdir, tmp_path, capsys):
    from pcv import evaluate

    run = tmp_path / "run"
    shutil.copytree(smoke_workdir, run)
    path = run / CALIBRATION
    for text, why in (
        ('{"chosen": {"threshold": "high", "top_t": 1, "min_stuff_area": 0}}', "must hold a threshold"),
        ('{"chosen": {"threshold": 1.0, "top_t": 0, "min_stuff_area": 0}}', "top_t: must be >= 1"),
        ('{"before": {}}', "must hold a threshold"),
        ("{", "is not valid JSON"),
    ):
        path.write_text(text)
        with pytest.raises(WorkdirError, match=why) as info:
            Predictor.from_workdir(run)
        assert str(path) in str(info.value)
    assert Predictor.from_workdir(run, calibrated=False).inference == Workdir(run).read_config().inference
    assert evaluate.main([f"--workdir={run}"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path} is not valid JSON") and err.count("\n") == 1


def test_a_setting_replaces_the_runs_own_only_when_it_wins_on_most_resamples():
    from pcv.evaluation.calibration import win_rate

    rng = np.random.default_rng(0)
    # Per image (iou, tp, fp, fn) of one category: a setting that finds more on every image wins every resample.
    tp = rng.integers(1, 4, 30)
    own = np.stack([0.8 * tp, tp, np.ones(30), np.ones(30)], -1)[:, None, :]
    better = np.stack([0.8 * (tp + 1), tp + 1, np.zeros(30), np.zeros(30)], -1)[:, None, :]
    assert win_rate(better, own) == 1.0 and win_rate(own, better) == 0.0
    assert win_rate(own, own) == 0.0  # a tie is no win
    # Better on half the images, worse on the other half by as much: about a coin toss, below the bar.
    mixed = own.copy()
    mixed[:15] = better[:15]
    mixed[15:, 0, 1:] = own[15:, 0, 1:] + [[-1, 1, 1]]
    mixed[15:, 0, 0] = 0.8 * mixed[15:, 0, 1]
    assert 0.05 < win_rate(mixed, own) < 0.9

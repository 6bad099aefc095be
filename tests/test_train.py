"""The trainer end to end on the smoke config (fake devices, CPU)."""

import json

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from pcv.errors import ConfigError
from pcv.evaluation.metrics import AP_KEYS
from pcv.training.trainer import train_and_evaluate

from smoke_model import run_command, smoke_config


def quiet(*args, **kwargs):
    pass


def load_params(workdir, step=None):
    """``(params, step)`` of a checkpoint, read with plain Orbax (any saving topology)."""
    mngr = ocp.CheckpointManager(f"{workdir}/checkpoints", item_names=("state", "data"))
    step = mngr.latest_step() if step is None else step
    restored = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.PyTreeRestore()))
    mngr.close()
    return restored["state"]["params"], step


def flat(tree):
    return np.concatenate([np.asarray(x, np.float64).ravel() for x in jax.tree.leaves(tree)])


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("smoke")
    # One fixed batch, no flips: the loss must fall on data the model has seen.
    config = smoke_config(**{"data.num_train": 8, "data.hflip": False})
    results = train_and_evaluate(config, str(workdir), log=quiet)
    return workdir, results


def test_smoke_run_writes_results_and_learns(smoke_run):
    workdir, results = smoke_run
    saved = json.loads((workdir / "results.json").read_text())
    assert saved["step"] == 6 and np.isfinite(saved["train_loss"])
    for group in ("All", "Things", "Stuff"):
        assert {"pq", "sq", "rq", "n"} <= set(saved["eval"][group])
    assert saved["eval"]["per_class"]
    assert 0 <= saved["eval"]["semantic"]["miou"] <= 1 and set(saved["eval"]["instances"]) == set(AP_KEYS)
    lines = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    losses = [line["loss"] for line in lines if "loss" in line]
    assert len(losses) >= 2 and losses[-1] < losses[0], losses
    assert (workdir / "panel.png").stat().st_size > 0
    assert list(workdir.glob("events.out.tfevents.*"))
    recorded = json.loads((workdir / "config.json").read_text())
    assert recorded["steps"] == 6 and recorded["data"]["num_train"] == 8
    assert not (workdir / "lock.json").exists()  # released at the end


def test_parameters_move(smoke_run):
    workdir, _ = smoke_run
    params, step = load_params(workdir)
    assert step == 6
    first, _ = load_params(workdir, 3)
    assert np.abs(flat(params) - flat(first)).max() > 0


def test_rerunning_a_finished_run_changes_nothing(smoke_run, capsys):
    workdir, results = smoke_run
    before = {p.name: p.stat().st_mtime_ns for p in workdir.iterdir()}
    again = train_and_evaluate(smoke_config(**{"data.num_train": 8, "data.hflip": False}), str(workdir))
    assert again == results
    assert "is complete" in capsys.readouterr().out
    assert {p.name: p.stat().st_mtime_ns for p in workdir.iterdir()} == before


def test_one_device_and_four_devices_agree(tmp_path):
    runs = {}
    for n in (1, 4):
        config = smoke_config(
            steps=1, num_devices=n, checkpoint_every=1, **{"data.num_val": 1, "optimizer.warmup_steps": 0}
        )
        results = train_and_evaluate(config, str(tmp_path / f"d{n}"), log=quiet)
        runs[n] = (results["train_loss"], flat(load_params(tmp_path / f"d{n}")[0]))
    assert runs[1][0] == pytest.approx(runs[4][0], rel=1e-5)
    np.testing.assert_allclose(runs[1][1], runs[4][1], rtol=1e-4, atol=1e-6)


def test_resume_equals_uninterrupted(tmp_path):
    config = smoke_config(steps=4, checkpoint_every=2, **{"data.num_val": 1})
    straight = train_and_evaluate(config, str(tmp_path / "straight"), log=quiet)
    stopped = train_and_evaluate(config, str(tmp_path / "resumed"), stop_at=2, log=quiet)
    assert stopped == {"step": 2, "preempted": True}
    assert not (tmp_path / "resumed" / "results.json").exists()
    resumed = train_and_evaluate(config, str(tmp_path / "resumed"), log=quiet)
    assert resumed["step"] == straight["step"] == 4
    np.testing.assert_allclose(
        flat(load_params(tmp_path / "resumed")[0]), flat(load_params(tmp_path / "straight")[0]), rtol=1e-6, atol=1e-7
    )
    assert resumed["train_loss"] == pytest.approx(straight["train_loss"], rel=1e-6)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    config = smoke_config(steps=6, log_every=1, checkpoint_every=1, **{"optimizer.learning_rate": 1e12})
    with pytest.raises(FloatingPointError, match="loss is"):
        train_and_evaluate(config, str(tmp_path), log=quiet)
    params, step = load_params(tmp_path)
    assert 1 <= step < 6
    assert np.isfinite(flat(params)).all()


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("steps", 0, "config.steps"),
        ("batch_size", 3, "config.batch_size"),
        ("data.image_size", (60, 64), "config.data.image_size"),
        ("data.crop_size", (48, 64), "config.data.crop_size"),
        ("data.scale_range", (2.0, 1.0), "config.data.scale_range"),
        ("data.color_jitter", 1.5, "config.data.color_jitter"),
        ("data.num_workers", -1, "config.data.num_workers"),
        ("grid", ((2, 1),), "config.grid"),
        ("optimizer.schedule", "cosine", "config.optimizer.schedule"),
        ("inference.max_instances", 0, "config.inference.max_instances"),
        ("keep_checkpoints", 0, "config.keep_checkpoints"),
    ],
)
def test_bad_config_values_name_the_field(field, value, message, tmp_path):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        train_and_evaluate(smoke_config(**{field: value}), str(tmp_path / "run"), log=quiet)
    assert not (tmp_path / "run").exists()  # failed before writing anything


def test_command_line_errors_are_one_line(tmp_path):
    unknown = run_command("pcv.train", "--config=synthetic:smoke", "--config.stepz=3", f"--workdir={tmp_path}")
    assert unknown.returncode == 1
    assert unknown.stderr.strip() == "error: config.stepz: no such field (did you mean steps?)"
    wrong_type = run_command("pcv.train", "--config=synthetic:smoke", "--config.steps=ten", f"--workdir={tmp_path}")
    assert wrong_type.returncode == 1
    assert wrong_type.stderr.strip() == "error: config.steps: expected an integer, got 'ten'"
    missing = run_command("pcv.train", f"--config={tmp_path}/nope.py", f"--workdir={tmp_path}")
    assert missing.returncode == 1 and missing.stderr.count("\n") == 1 and "nope.py does not exist" in missing.stderr
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    file_workdir = run_command("pcv.train", "--config=synthetic:smoke", f"--workdir={not_a_dir}")
    assert file_workdir.returncode == 1 and "is a file, not a folder" in file_workdir.stderr
    assert file_workdir.stderr.count("\n") == 1

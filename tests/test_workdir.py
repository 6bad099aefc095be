"""The work dir keeps what a run made: identity, lock, damaged checkpoints, full disks, kill -9, one-line errors.

A full disk is simulated with the file-size limit (``RLIMIT_FSIZE``) of a
trainer started as a subprocess: every write past the limit fails with
``EFBIG`` ("File too large") in the trainer's own writers and in
TensorStore's, the same code path as ``ENOSPC`` on a full disk, without
needing a small filesystem (which needs root and mount rights CI lacks).
"""

import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from pcv.errors import CheckpointError, ConfigError, WorkdirError
from pcv.evaluation.workdir_eval import evaluate_workdir
from pcv.inference.predictor import Predictor
from pcv.runtime.files import finite, json_text, write_atomic
from pcv.runtime.lock import RunLock
from pcv.runtime.paths import as_path
from pcv.runtime.workdir import LOCK, Workdir
from pcv.training.trainer import train_and_evaluate

from smoke_model import ROOT, reaped, run_command, smoke_config


def quiet(*args, **kwargs):
    pass


def params(workdir, step=None):
    state = Predictor.from_workdir(workdir, step).model_state["params"]
    return np.concatenate([np.asarray(x, np.float64).ravel() for x in jax.tree.leaves(state)])


CONFIG = {"steps": 6, "checkpoint_every": 2, "data.num_val": 2}


@pytest.fixture(scope="module")
def partial_run(tmp_path_factory):
    """A run of 6 steps stopped (as if preempted) at step 4: checkpoints 2 and 4, no results.json."""
    workdir = tmp_path_factory.mktemp("partial") / "run"
    assert train_and_evaluate(smoke_config(**CONFIG), str(workdir), stop_at=4, log=quiet)["preempted"]
    return workdir


@pytest.fixture()
def run_copy(partial_run, tmp_path):
    target = tmp_path / "run"
    shutil.copytree(partial_run, target)
    return target


# ----------------------------------------------------------------------------
# Paths and atomic files.
# ----------------------------------------------------------------------------


def test_paths_local_and_gcs_other_urls_refused():
    assert str(as_path("gs://bucket/run")) == "gs://bucket/run"
    assert str(as_path("~/x")).startswith("/") and "~" not in str(as_path("~/x"))
    with pytest.raises(WorkdirError, match="s3:// is not supported"):
        as_path("s3://bucket/run")
    with pytest.raises(WorkdirError, match="did you mean gs://bucket/run"):
        as_path("gs:/bucket/run")


def test_atomic_write_leaves_the_old_file_or_the_new_one(tmp_path):
    target = tmp_path / "results.json"
    write_atomic(target, "old\n")
    with pytest.raises(WorkdirError, match="cannot write .*missing_dir"):
        write_atomic(tmp_path / "missing_dir" / "x.json", "new")
    assert target.read_text() == "old\n" and sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]
    assert json.loads(json_text({"loss": float("nan"), "pq": np.float32(0.5)})) == {"loss": None, "pq": 0.5}
    assert finite({1: [float("inf")]}) == {"1": [None]}


# ----------------------------------------------------------------------------
# The lock.
# ----------------------------------------------------------------------------


def test_a_live_lock_is_refused_naming_its_holder(tmp_path):
    wd = Workdir(tmp_path)
    holder = RunLock(wd)
    holder.acquire(quiet)
    try:
        info = json.loads((tmp_path / LOCK).read_text())
        assert info["pid"] == os.getpid() and info["host"] == socket.gethostname()
        with pytest.raises(
            WorkdirError, match=f"in use by another run \\(host {socket.gethostname()}, pid {os.getpid()}, started "
        ):
            RunLock(wd).acquire(quiet)
    finally:
        holder.release()
    assert not (tmp_path / LOCK).exists()


def test_stale_locks_are_taken_over(tmp_path):
    wd = Workdir(tmp_path)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock = RunLock(wd)
    stale = dict(lock.info, pid=dead.pid, process_start="1", token="old")
    (tmp_path / LOCK).write_text(json.dumps(stale))  # a killed run's lock on this machine
    said = []
    lock.acquire(said.append)
    assert "stale lock" in said[0] and f"process {dead.pid} is gone" in said[0]
    assert json.loads((tmp_path / LOCK).read_text())["token"] == lock.token
    lock.release()
    # Held from another machine: stale once its heartbeat is older than the timeout.
    other = dict(lock.info, host="elsewhere", boot_id="x", token="remote")
    (tmp_path / LOCK).write_text(json.dumps(dict(other, heartbeat=time.time())))
    with pytest.raises(WorkdirError, match="host elsewhere"):
        RunLock(wd, timeout=60).acquire(quiet)
    (tmp_path / LOCK).write_text(json.dumps(dict(other, heartbeat=time.time() - 120)))
    said = []
    taker = RunLock(wd, timeout=60)
    taker.acquire(said.append)
    assert "heartbeat stopped" in said[0]
    taker.release()


def test_the_heartbeat_keeps_a_lock_fresh(tmp_path):
    lock = RunLock(Workdir(tmp_path), timeout=4)  # beats every second
    lock.acquire(quiet)
    try:
        first = json.loads((tmp_path / LOCK).read_text())["heartbeat"]
        time.sleep(2.5)
        assert json.loads((tmp_path / LOCK).read_text())["heartbeat"] > first
    finally:
        lock.release()


# ----------------------------------------------------------------------------
# The run's identity.
# ----------------------------------------------------------------------------


def test_a_restart_must_train_the_same_run(run_copy):
    recorded = (run_copy / "config.json").read_text()
    with pytest.raises(ConfigError, match=r"config\.model\.backbone: 'resnet51'"):  # typo: nothing written
        train_and_evaluate(smoke_config(**CONFIG, **{"model.backbone": "resnet51"}), str(run_copy), log=quiet)
    for field, value in (("grid", ((1, 1), (3, 1))), ("batch_size", 16), ("optimizer.learning_rate", 0.1)):
        with pytest.raises(ConfigError, match=f"differs from the one .* was started with: {field}:"):
            train_and_evaluate(smoke_config(**CONFIG, **{field: value}), str(run_copy), log=quiet)
    assert (run_copy / "config.json").read_text() == recorded
    assert not (run_copy / "lock.json").exists()
    # Evaluate and predict keep working on the work dir.
    assert Predictor.from_workdir(run_copy).step == 4
    # Fields that do not change what is trained may change.
    said = []
    done = train_and_evaluate(
        smoke_config(**CONFIG, log_every=1, **{"inference.threshold": 0.5}), str(run_copy), log=said.append
    )
    assert done["step"] == 6 and any("resumed from step 4" in line for line in said)
    assert json.loads((run_copy / "config.json").read_text())["inference"]["threshold"] == 0.5


def test_an_accepted_change_is_recorded(run_copy):
    changed = smoke_config(**CONFIG, **{"optimizer.learning_rate": 0.1})
    results = train_and_evaluate(changed, str(run_copy), allow_config_change=True, log=quiet)
    assert results["step"] == 6
    (line,) = (run_copy / "config_changes.jsonl").read_text().splitlines()
    record = json.loads(line)
    assert record["changes"] == [{"field": "optimizer.learning_rate", "old": 0.05, "new": 0.1}] and record["time"]
    assert json.loads((run_copy / "config.json").read_text())["optimizer"]["learning_rate"] == 0.1


def test_nothing_is_recorded_before_the_model_is_built(tmp_path):
    bad_weights = tmp_path / "broken.safetensors"
    bad_weights.write_bytes(b"not a weight file")
    config = smoke_config(**{"model.pretrained": str(bad_weights), "model.backbone_norm": "frozen"})
    with pytest.raises(ValueError, match="broken.safetensors"):
        train_and_evaluate(config, str(tmp_path / "run"), log=quiet)
    assert not (tmp_path / "run" / "config.json").exists() and not (tmp_path / "run" / "lock.json").exists()


# ----------------------------------------------------------------------------
# Damaged checkpoints.
# ----------------------------------------------------------------------------


def damage(run, step, how):
    target = run / "checkpoints" / str(step) / "state"
    if how == "truncated data":
        data = [p for p in target.rglob("*") if p.is_file() and p.parent.name == "d"]  # the arrays' data files
        assert data, f"no data files under {target}"
        for p in data:
            p.write_bytes(p.read_bytes()[:100])  # writes cut short
    else:
        (target / "_METADATA").write_text("{ this is not json")  # the tree's metadata, damaged


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # orbax's aborted reads
@pytest.mark.parametrize("how", ["truncated data", "damaged json"])
def test_a_damaged_newest_checkpoint_is_set_aside_and_the_run_resumes_from_the_one_before(run_copy, how):
    damage(run_copy, 4, how)
    with pytest.raises(CheckpointError, match=r"checkpoint step 4 in .* cannot be restored: \w+"):
        Predictor.from_workdir(run_copy, step=4)
    said = []
    results = train_and_evaluate(smoke_config(**CONFIG), str(run_copy), log=said.append)
    moved = [line for line in said if line.startswith("checkpoint step 4 is damaged")]
    assert len(moved) == 1 and "\n" not in moved[0] and "tensorstore_spec" not in moved[0]
    assert any("resumed from step 2" in line for line in said) and results["step"] == 6
    (aside,) = (run_copy / "damaged").iterdir()
    assert aside.name.startswith("4-")  # kept, not deleted
    assert sorted(int(p.name) for p in (run_copy / "checkpoints").iterdir() if p.name.isdigit())[-1] == 6


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_evaluate_names_a_damaged_step_in_one_line(run_copy):
    damage(run_copy, 4, "truncated data")
    proc = run_command("pcv.evaluate", f"--workdir={run_copy}", "--step=4")
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1
    assert "checkpoint step 4 in" in proc.stderr and "cannot be restored" in proc.stderr


# ----------------------------------------------------------------------------
# Processes: a second trainer, kill -9, a full disk.
# ----------------------------------------------------------------------------


def trainer(workdir, *args, limit_bytes=None, **popen):
    def limit():
        if limit_bytes:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG) instead
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    cmd = [sys.executable, "-m", "pcv.train", "--config=synthetic:smoke", f"--workdir={workdir}", *args]
    return subprocess.Popen(
        cmd,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=limit,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        **popen,
    )


def test_second_trainer_kill_9_and_resume(tmp_path):
    run = tmp_path / "run"
    args = ["--config.steps=12", "--config.log_every=1", "--config.checkpoint_every=2", "--config.data.num_val=2"]
    with reaped(trainer(run, *args)) as first:
        for line in first.stdout:
            if "step 7/12" in line:
                break
        first.send_signal(signal.SIGSTOP)  # alive and holding the lock, but no further (the steps are fast)
        second = trainer(run, *args)
        out, err = second.communicate(timeout=120)
        assert second.returncode == 1
        assert err.count("\n") == 1 and f"pid {first.pid}" in err and "in use by another run" in err
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    assert (run / "lock.json").exists() and not (run / "results.json").exists()
    config = smoke_config(steps=12, log_every=1, checkpoint_every=2, **{"data.num_val": 2})
    said = []
    resumed = train_and_evaluate(config, str(run), log=said.append)
    assert any("taking over the stale lock" in line and f"process {first.pid} is gone" in line for line in said)
    # From the newest checkpoint finished before the kill (one being written then is ignored).
    (resumed_from,) = [int(line.split()[3]) for line in said if line.startswith("resumed from step ")]
    assert resumed_from % 2 == 0 and 4 <= resumed_from < 12 and resumed["step"] == 12
    straight = train_and_evaluate(config, str(tmp_path / "straight"), log=quiet)
    np.testing.assert_array_equal(params(run), params(tmp_path / "straight"))  # bit-identical resume
    assert resumed["train_loss"] == straight["train_loss"]


def test_a_failed_checkpoint_save_stops_at_once_and_keeps_the_last_good_one(run_copy):
    proc = trainer(
        run_copy, "--config.steps=6", "--config.checkpoint_every=1", "--config.data.num_val=2", limit_bytes=200_000
    )  # the checkpoint's array data (~1.7 MB) cannot be written
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err[-3000:]
    assert err.count("\n") == 1 and err.startswith("error: saving a checkpoint to ")
    assert ": File too large); training stopped" in err and "the last good checkpoint is kept (step 4)" in err
    assert not (run_copy / "results.json").exists()
    assert Predictor.from_workdir(run_copy).step == 4  # still restores


def test_a_full_disk_at_the_end_leaves_no_half_written_results(run_copy):
    finished = train_and_evaluate(smoke_config(**CONFIG), str(run_copy), log=quiet)
    for name in ("results.json", "panel.png"):
        (run_copy / name).unlink()  # as if the run died after its last checkpoint
    proc = trainer(
        run_copy, "--config.steps=6", "--config.checkpoint_every=2", "--config.data.num_val=2", limit_bytes=20_000
    )  # panel.png (~40 KB) does not fit
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1 and err.count("\n") == 1 and "File too large" in err, err[-3000:]
    assert not (run_copy / "results.json").exists() and not (run_copy / "panel.png").exists()
    assert not [p.name for p in run_copy.iterdir() if ".tmp-" in p.name]
    again = train_and_evaluate(smoke_config(**CONFIG), str(run_copy), log=quiet)  # room again: completes
    assert again["eval"] == finished["eval"] and (run_copy / "panel.png").stat().st_size > 0


def test_unusable_work_dirs_are_one_line_errors(tmp_path):
    unwritable = "/sys/pcv_test_workdir"
    if not os.path.isdir("/sys") or os.access("/sys", os.W_OK) and not os.path.ismount("/sys"):
        pytest.skip("needs a read-only /sys to stand for a folder nobody may write into")
    proc = run_command("pcv.train", "--config=synthetic:smoke", f"--workdir={unwritable}")
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1
    assert unwritable in proc.stderr and ("not permitted" in proc.stderr or "ermission" in proc.stderr)
    missing = run_command("pcv.evaluate", f"--workdir={tmp_path / 'none'}")
    assert missing.returncode == 1 and missing.stderr.strip() == f"error: work dir {tmp_path / 'none'} does not exist"
    predict = run_command("pcv.predict", f"--workdir={tmp_path}", "x.png")
    assert predict.returncode == 1 and "config.json not found" in predict.stderr
    assert predict.stderr.count("\n") == 1


def test_evaluate_after_a_failed_restart(run_copy):
    with pytest.raises(ConfigError):
        train_and_evaluate(smoke_config(**CONFIG, **{"grid": ((1, 1),)}), str(run_copy), log=quiet)
    scored = evaluate_workdir(run_copy, progress=False, log=quiet, num_workers=0)
    assert scored["step"] == 4

"""Several processes on one machine as the hosts of one run (launch/local.py), end to end.

Each process has 2 CPU devices and joins with jax.distributed (CPU
collectives over gloo) from the variables launch/local.py sets; together
they train the smoke config on a 4-device mesh, each host feeding its half
of every global batch, evaluate with each host predicting its share of the
split. SIGTERM to one host makes every host save the same step and exit
42; the relaunch finishes with the parameters of one process training on 4
devices without interruption.
"""

import json
import os
import signal
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from pcv.errors import WorkdirError
from pcv.evaluation.workdir_eval import evaluate_workdir
from pcv.inference.predictor import Predictor
from pcv.training.trainer import train_and_evaluate

from smoke_model import ROOT, reaped, smoke_config

LAUNCH = ROOT / "launch" / "local.py"
SMOKE = ["--config=synthetic:smoke", "--config.data.num_val=4"]


def quiet(*a, **k):
    pass


def launch(n, workdir, *args, env=None, **popen):
    cmd = [
        sys.executable,
        str(LAUNCH),
        "-n",
        str(n),
        "--devices-per-process",
        "2",
        "--grace",
        "30",
        "--",
        *SMOKE,
        f"--workdir={workdir}",
        *args,
    ]
    full_env = dict(os.environ, **(env or {}))
    full_env["PYTHONPATH"] = os.pathsep.join([str(ROOT), full_env.get("PYTHONPATH", "")])
    return subprocess.Popen(
        cmd, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT, **popen
    )


def params(workdir):
    state = Predictor.from_workdir(workdir).model_state["params"]
    return np.concatenate([np.asarray(x, np.float64).ravel() for x in jax.tree.leaves(state)])


def _children(pid):
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def test_two_hosts_preempted_and_relaunched_train_and_evaluate_like_one_process(tmp_path):
    # A small learning rate keeps training from amplifying the last-bit differences between summing
    # gradients over 2 hosts x 2 devices and over 4 devices of one process; the runs then agree to 1e-4.
    args = [
        "--config.steps=8",
        "--config.optimizer.learning_rate=0.005",
        "--config.log_every=1",
        "--config.checkpoint_every=1000",
        "--config.eval_every=0",
    ]
    # SIGTERM to one host: every host saves the same step and exits 42.
    lines = []
    with reaped(launch(2, tmp_path / "two", *args)) as proc:
        for line in proc.stdout:
            lines.append(line)
            if "step 2/8" in line:
                break
        hosts = _children(proc.pid)
        host1 = next(p for p in hosts if b"JAX_PROCESS_ID=1" in open(f"/proc/{p}/environ", "rb").read())
        os.kill(host1, signal.SIGTERM)
        out = "".join(lines) + proc.communicate(timeout=300)[0]
    assert proc.returncode == 42, out[-4000:]
    assert "[launch] exit codes: [42, 42]" in out
    assert "[host 0] pcv.train: 4 device(s) (cpu), 2 host(s)" in out
    assert "[host 1] pcv.train" not in out  # only process 0 prints
    saved = [
        int(line.split("saved step ")[1].split()[0]) for line in out.splitlines() if "preempted: saved step" in line
    ]
    assert len(saved) == 1 and 2 <= saved[0] < 8  # process 0 reports it; both hosts saved it (one checkpoint)
    steps = sorted(int(p.name) for p in (tmp_path / "two" / "checkpoints").iterdir() if p.name.isdigit())
    assert steps == saved
    assert not (tmp_path / "two" / "results.json").exists()
    overrides = {"data.num_val": 4, "optimizer.learning_rate": 0.005}
    config = smoke_config(num_devices=4, steps=8, log_every=1, checkpoint_every=1000, **overrides)
    with pytest.raises(WorkdirError, match=r"written by 2 host\(s\), resumed by 1: relaunch with 2"):
        train_and_evaluate(config, str(tmp_path / "two"), log=quiet)  # one host: refused, nothing touched
    assert sorted(int(p.name) for p in (tmp_path / "two" / "checkpoints").iterdir() if p.name.isdigit()) == saved

    # The relaunch resumes there and finishes, evaluating with each host predicting half the split.
    relaunch = launch(2, tmp_path / "two", *args)
    out2, _ = relaunch.communicate(timeout=600)
    assert relaunch.returncode == 0, out2[-4000:]
    assert f"resumed from step {saved[0]}" in out2
    assert out2.count("All       |") == 1 and "[host 1] eval" not in out2
    two = json.loads((tmp_path / "two" / "results.json").read_text())

    # One process on 4 devices, never interrupted, trains the same model.
    one = train_and_evaluate(config, str(tmp_path / "one"), log=quiet)
    assert two["train_loss"] == pytest.approx(one["train_loss"], rel=1e-4)
    losses = [
        [row["loss"] for row in map(json.loads, (tmp_path / run / "metrics.jsonl").open()) if "loss" in row]
        for run in ("two", "one")
    ]
    assert len(losses[0]) == 8
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-4)  # step by step: the resumed input order too
    np.testing.assert_allclose(params(tmp_path / "two"), params(tmp_path / "one"), rtol=1e-4, atol=5e-5)
    assert two["eval"]["All"]["pq"] == pytest.approx(one["eval"]["All"]["pq"], abs=0.02)
    # What the two hosts wrote scores the same on one machine.
    scored = evaluate_workdir(tmp_path / "two", num_workers=0, progress=False, log=quiet)
    assert scored["eval"]["All"]["pq"] == pytest.approx(two["eval"]["All"]["pq"], abs=1e-12)  # IoU sums, other order

    # pcv.evaluate sharded over two hosts equals the one-host evaluation of the same checkpoint.
    proc = subprocess.run(
        [
            sys.executable,
            str(LAUNCH),
            "-n",
            "2",
            "--devices-per-process",
            "2",
            "--module",
            "pcv.evaluate",
            "--",
            f"--workdir={tmp_path / 'two'}",
            f"--out_dir={tmp_path / 'ev2'}",
            "--workers=0",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    assert proc.returncode == 0, proc.stdout[-4000:]
    sharded = json.loads((tmp_path / "ev2" / "results.json").read_text())
    assert sharded["eval"] == json.loads(json.dumps(scored["eval"]))
    assert sharded["in_memory_matches_files"] is True and sharded["num_images"] == 4
    assert proc.stdout.count("All       |") == 1  # one table, from process 0


def test_a_work_dir_the_hosts_do_not_share_is_refused(tmp_path):
    # Two hosts given a relative work dir from different folders: as if each had its own local disk.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = []
    for i in range(2):
        (tmp_path / f"host{i}").mkdir()
        env = dict(
            os.environ,
            JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
            JAX_NUM_PROCESSES="2",
            JAX_PROCESS_ID=str(i),
            XLA_FLAGS="--xla_force_host_platform_device_count=1",
            PYTHONPATH=str(ROOT),
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "pcv.train", *SMOKE, "--workdir=run"],
                cwd=tmp_path / f"host{i}",
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    results = [p.communicate(timeout=120) for p in procs]
    for p, (_, err) in zip(procs, results):
        assert p.returncode == 1, err[-3000:]
        assert err.count("\n") == 1 and "is not shared between the hosts: host(s) [1]" in err
    assert not (tmp_path / "host1" / "run" / "checkpoints").exists()
    assert not (tmp_path / "host0" / "run" / "lock.json").exists()  # host 0 let go of its lock

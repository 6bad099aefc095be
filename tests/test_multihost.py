"""Several processes on one machine as the hosts of one run (launch/local.py), end to end.

Each process has 2 CPU devices and joins with jax.distributed (CPU
collectives over gloo) from the variables launch/local.py sets; together
they train the smoke config on a 4-device mesh, each host feeding its half
of every global batch, evaluate with each host predicting its share of the
split, and must equal one process training on 4 devices. SIGTERM to one
host makes every host save the same step and exit 42; a relaunch finishes
with the parameters of an uninterrupted run.
"""

import json
import os
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest

from pcv import train
from pcv.evaluator import evaluate_workdir
from pcv.predictor import Predictor

from smoke_model import ROOT, smoke_config

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


def test_two_hosts_train_evaluate_like_one(tmp_path):
    proc = launch(2, tmp_path / "two")
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-4000:]
    assert "[host 0] pcv.train: 4 device(s) (cpu), 2 host(s)" in out
    assert "[host 1] pcv.train" not in out  # only process 0 prints
    assert out.count("eval ") >= 1 and "[host 1] eval" not in out
    two = json.loads((tmp_path / "two" / "results.json").read_text())

    one = train.train_and_evaluate(smoke_config(num_devices=4, **{"data.num_val": 4}), str(tmp_path / "one"), log=quiet)
    assert two["train_loss"] == pytest.approx(one["train_loss"], rel=1e-4)
    np.testing.assert_allclose(params(tmp_path / "two"), params(tmp_path / "one"), rtol=1e-4, atol=1e-5)
    assert two["eval"]["All"]["pq"] == pytest.approx(one["eval"]["All"]["pq"], abs=0.02)
    # What the two hosts wrote scores the same on one machine.
    scored = evaluate_workdir(tmp_path / "two", num_workers=0, progress=False, log=quiet)
    assert scored["eval"]["All"]["pq"] == pytest.approx(two["eval"]["All"]["pq"], abs=1e-12)  # IoU sums, other order

    # Evaluation sharded over two hosts equals the one-host evaluation of the same checkpoint.
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


def _children(pid):
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def test_sigterm_to_one_host_saves_the_same_step_everywhere_and_a_relaunch_resumes(tmp_path):
    args = ["--config.steps=40", "--config.log_every=1", "--config.checkpoint_every=1000", "--config.eval_every=0"]
    proc = launch(2, tmp_path / "run", *args)
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if "step 5/40" in line:
                break
        hosts = _children(proc.pid)
        host1 = next(p for p in hosts if b"JAX_PROCESS_ID=1" in open(f"/proc/{p}/environ", "rb").read())
        os.kill(host1, signal.SIGTERM)
        out = "".join(lines) + proc.communicate(timeout=300)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 42, out[-4000:]
    assert "[launch] exit codes: [42, 42]" in out
    saved = [
        int(line.split("saved step ")[1].split()[0]) for line in out.splitlines() if "preempted: saved step" in line
    ]
    assert len(saved) == 1 and 5 <= saved[0] < 40  # process 0 reports it; both hosts saved it (one checkpoint)
    steps = sorted(int(p.name) for p in (tmp_path / "run" / "checkpoints").iterdir() if p.name.isdigit())
    assert steps == saved
    assert not (tmp_path / "run" / "results.json").exists()

    relaunch = launch(2, tmp_path / "run", *args)
    out2, _ = relaunch.communicate(timeout=600)
    assert relaunch.returncode == 0, out2[-4000:]
    assert f"resumed from step {saved[0]}" in out2
    straight = launch(2, tmp_path / "straight", *args)
    out3, _ = straight.communicate(timeout=600)
    assert straight.returncode == 0, out3[-4000:]
    np.testing.assert_allclose(params(tmp_path / "run"), params(tmp_path / "straight"), rtol=1e-5, atol=1e-6)

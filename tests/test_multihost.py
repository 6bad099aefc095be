"""Two processes on one machine as two hosts: the trainer's multi-host path, end to end.

Each process has 2 CPU devices and joins with jax.distributed (CPU
collectives over gloo); together they train the smoke config on a 4-device
mesh, each host feeding its half of every global batch, then evaluate. The
result must equal one process training on 4 devices.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from pcv import evaluate, train
from smoke_model import ROOT, smoke_config

OVERRIDES = {"steps": 4, "checkpoint_every": 2, "data.num_val": 4, "data.hflip": True}

WORKER = textwrap.dedent(
    """
    import json, os, sys
    pid, port, workdir = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    import jax
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=f"localhost:{port}", num_processes=2, process_id=pid)
    sys.path.insert(0, os.path.join(os.environ["PCV_ROOT"], "tests"))
    from smoke_model import smoke_config
    from pcv import evaluate, train
    config = smoke_config(**json.loads(os.environ["PCV_OVERRIDES"]))
    res = train.train_and_evaluate(config, workdir)
    print("RESULT " + json.dumps({"process": jax.process_index(), "count": jax.process_count(),
                                  "devices": jax.device_count(), "step": res["step"],
                                  "loss": res["train_loss"], "pq": res["eval"]["All"]["pq"]}), flush=True)
    """
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def final_params(workdir):
    """The latest checkpoint's parameters, restored on this process's first device (any saving topology)."""
    params = evaluate.restore_model(workdir).state["params"]
    return np.concatenate([np.asarray(x, np.float64).ravel() for x in jax.tree.leaves(params)])


def test_two_hosts_train_like_one(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu",
               PCV_ROOT=str(ROOT), PCV_OVERRIDES=json.dumps(OVERRIDES))
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    port, workdir = free_port(), tmp_path / "two_hosts"
    procs = [
        subprocess.Popen([sys.executable, str(script), str(i), str(port), str(workdir)], env=env, cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for i in range(2)
    ]
    outputs = []
    try:
        for p in procs:
            outputs.append(p.communicate(timeout=300)[0])
    finally:
        for p in procs:
            p.kill()
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, out[-3000:]
    results = [json.loads(line[len("RESULT "):]) for out in outputs for line in out.splitlines()
               if line.startswith("RESULT ")]
    assert sorted(r["process"] for r in results) == [0, 1]
    assert all(r["count"] == 2 and r["devices"] == 4 and r["step"] == 4 for r in results)
    assert results[0]["loss"] == results[1]["loss"] and results[0]["pq"] == results[1]["pq"]

    # The same run in one process on 4 devices.
    single = train.train_and_evaluate(smoke_config(num_devices=4, **OVERRIDES), str(tmp_path / "one_host"))
    assert results[0]["loss"] == pytest.approx(single["train_loss"], rel=1e-4)
    np.testing.assert_allclose(final_params(workdir), final_params(tmp_path / "one_host"), rtol=1e-4, atol=1e-5)
    assert results[0]["pq"] == pytest.approx(single["eval"]["All"]["pq"], abs=0.02)
    # The checkpoint the two hosts wrote scores on one machine as the hosts reported.
    scored = evaluate.evaluate_checkpoint(None, workdir, num_workers=0, progress=False, log=lambda *a: None)
    assert scored["eval"]["All"]["pq"] == pytest.approx(results[0]["pq"], abs=1e-9)

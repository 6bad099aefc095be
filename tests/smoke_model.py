"""A smoke-trained PCV model for the tests of the tools that use one (evaluate, predict, export).

Not a test module: ``from smoke_model import smoke_config, train_smoke``.
"""

import contextlib
import os
import subprocess
import sys
from pathlib import Path

from pcv import config as config_lib

ROOT = Path(__file__).resolve().parents[1]


def smoke_config(**overrides):
    """``synthetic:smoke`` with dotted-key overrides, e.g. ``{"data.num_val": 4}``."""
    return config_lib.override(config_lib.load("synthetic:smoke"), overrides)


def train_smoke(workdir) -> dict:
    """Train 4 steps (checkpoints at 2 and 4) with 4 validation images; returns the trainer's results."""
    from pcv.training.trainer import train_and_evaluate

    config = smoke_config(steps=4, checkpoint_every=2, **{"data.num_val": 4})
    return train_and_evaluate(config, str(workdir), log=lambda *a, **k: None)


def run_command(module: str, *args, env=None, timeout=300, **kwargs) -> subprocess.CompletedProcess:
    """``python -m <module> <args>`` in a fresh process (the test environment, CPU)."""
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", module, *map(str, args)],
        capture_output=True,
        text=True,
        cwd=kwargs.pop("cwd", ROOT),
        env=full_env,
        timeout=timeout,
        **kwargs,
    )


@contextlib.contextmanager
def reaped(proc: subprocess.Popen):
    """``with reaped(Popen(...)) as proc:``; on the way out, even when the test fails, a process still
    running is killed and its pipes drained, so no process or open pipe is left behind."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def voting_model_state(model_state, seed: int = 0):
    """The smoke model's variables with a random vote head that votes (not abstains) and varies across pixels.

    Four training steps leave every pixel abstaining, so the smoke model finds
    no instance. For tests of what comes after the network (export, scores,
    overlays, reports) the vote head's kernel is replaced by N(0, 1) draws
    (the abstain column scaled by 0.3): at threshold 1.0 each sample photo
    then has several instances.
    """
    import jax
    import numpy as np

    state = jax.device_get(model_state)
    head = state["params"]["vote_head"]
    kernel = np.random.default_rng(seed).normal(0, 1, head["kernel"].shape).astype(head["kernel"].dtype)
    kernel[..., -1] *= 0.3
    state["params"]["vote_head"] = {**head, "kernel": kernel}
    return state


def voting_predictor(workdir):
    """:func:`voting_model_state` in a :class:`pcv.Predictor` of the smoke work dir, threshold 1.0."""
    from pcv.inference.predictor import Predictor

    predictor = Predictor.from_workdir(workdir, overrides={"inference.threshold": 1.0})
    return predictor.replace(model_state=voting_model_state(predictor.model_state))

"""A run sized by wall-clock time (config.time_budget): the schedule as a step argument, the plan, the ETA."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from pcv import config as config_lib
from pcv.config import OptimizerConfig
from pcv.errors import ConfigError
from pcv.runtime.console import EtaTimer
from pcv.training import budget
from pcv.training.state import Schedule, learning_rate
from pcv.training.trainer import train_and_evaluate

from smoke_model import smoke_config


def optax_schedule(opt: OptimizerConfig, steps: int) -> optax.Schedule:
    """The schedule as it was built before it became a step argument: optax's, for a fixed length."""
    warmup = optax.linear_schedule(0.0, opt.learning_rate, max(opt.warmup_steps, 1))
    rest = steps - opt.warmup_steps
    if opt.schedule == "poly":
        decay = optax.polynomial_schedule(opt.learning_rate, 0.0, opt.poly_power, max(rest, 1))
    else:
        bounds = {int(f * steps) - opt.warmup_steps: opt.step_factor for f in opt.step_boundaries}
        decay = optax.piecewise_constant_schedule(opt.learning_rate, {b: s for b, s in bounds.items() if b > 0})
    return optax.join_schedules([warmup, decay], [opt.warmup_steps])


@pytest.mark.parametrize(
    "opt, steps",
    [
        (OptimizerConfig(learning_rate=0.05, warmup_steps=100), 1000),
        (OptimizerConfig(learning_rate=0.02, warmup_steps=1000, schedule="step"), 90_000),
        (OptimizerConfig(learning_rate=0.01, warmup_steps=0, schedule="step", step_boundaries=(0.75,)), 24_000),
        (OptimizerConfig(learning_rate=0.1, warmup_steps=7, poly_power=2.0), 33),
    ],
)
def test_the_rate_as_a_step_argument_is_optaxs_schedule_to_the_bit(opt, steps):
    reference = optax_schedule(opt, steps)
    schedule = jnp.asarray(Schedule.of(opt, steps).as_array())
    counts = jnp.asarray(np.unique(np.r_[0:50, steps // 2 - 3 : steps // 2 + 3, steps - 50 : steps + 3]), jnp.int32)
    mine = jax.jit(jax.vmap(lambda c: learning_rate(opt, c, schedule)))(counts)
    np.testing.assert_array_equal(np.asarray(mine), np.asarray(jax.vmap(reference)(counts)))


def test_durations():
    seconds = {"": 0, "10m": 600, "90s": 90, "90": 90, "1h30m": 5400, "1.5h": 5400, " 2m 30s ": 150}
    for text, expected in seconds.items():
        assert config_lib.budget_seconds(config_lib.override(config_lib.Config(), {"time_budget": text})) == expected
    for bad in ("ten", "0", "5x", "-1m", "10 minutes"):
        with pytest.raises(ConfigError, match=r"config\.time_budget: .* must be a duration such as '10m'"):
            config_lib.override(config_lib.Config(), {"time_budget": bad})


def plan(**changes):
    args = dict(
        budget_seconds=600.0,
        spent_seconds=100.0,
        step_seconds=0.5,
        eval_seconds=10.0,
        final_seconds=30.0,
        eval_every=0,
        steps_done=6,
        max_steps=100_000,
        nominal_warmup=10_000,
        batch_size=16,
        train_images=950,
    )
    return budget.plan(**{**args, **changes})


def test_the_plan_fills_what_is_left_of_the_budget():
    p = plan()
    left = 600 * (1 - budget.MARGIN) - 100 - 30
    assert p.steps == 6 + int(left // 0.5) and p.warmup_steps == round(10_000 * p.steps / 100_000)
    assert p.images_per_second == 32.0 and p.passes == pytest.approx(p.steps * 16 / 950)
    # Every periodic evaluation takes its time out of the steps.
    with_evals = plan(eval_every=100)
    assert with_evals.periodic_evals == (with_evals.steps - 1) // 100
    assert with_evals.steps * 0.5 + with_evals.periodic_evals * 10 <= left + 6 * 0.5 + 0.5
    # Bounded by config.steps, and always at least one more step.
    assert plan(max_steps=200).steps == 200
    assert plan(spent_seconds=700).steps == 7
    assert "time budget 10m: 32.0 images/s (0.500 s a step of 16)" in p.describe()


def test_a_revised_plan_follows_the_measured_speed_and_keeps_the_warmup():
    p = plan()
    slower = p.revised(step=300, spent_seconds=260, step_seconds=1.0, eval_every=0, max_steps=100_000)
    assert slower.steps == 300 + int((600 * (1 - budget.MARGIN) - 260 - 30) // 1.0)
    assert slower.warmup_steps == p.warmup_steps and slower.steps < p.steps


def test_the_eta_counts_what_comes_after_the_last_step():
    now = [0.0]
    timer = EtaTimer(100, clock=lambda: now[0], extra_seconds=40.0, fallback_seconds_per_step=0.5)
    timer.update(1)  # starts the clock: the rate is not known yet, the planned step time stands in
    assert timer.eta_seconds() == 99 * 0.5 + 40
    now[0] = 9.0
    timer.update(10)
    assert timer.eta_seconds() == pytest.approx(90 * 1.0 + 40)
    timer.update(100)
    assert timer.eta_seconds() == 40


def test_a_budgeted_run_decides_its_length_once_and_a_relaunch_keeps_it(tmp_path):
    said = []
    config = smoke_config(**{"steps": 10_000, "optimizer.warmup_steps": 1000, "time_budget": "1h", "log_every": 5})
    run = tmp_path / "run"
    # stop_at acts like a preemption at step 12, after the plan was made at step 1 + TIMED_STEPS.
    results = train_and_evaluate(config, str(run), stop_at=12, log=said.append)
    assert results == {"step": 12, "preempted": True}
    decided = json.loads((run / "schedule.json").read_text())
    line = next(s for s in said if s.startswith("time budget 1h:"))
    assert f"-> {decided['steps']} steps" in line and decided["warmup_steps"] == round(decided["steps"] / 10)
    assert 12 < decided["steps"] <= 10_000 and decided["step_seconds"] > 0 and decided["final_seconds"] > 0
    # The relaunch continues the schedule decided, and trains to its end.
    short = json.dumps({**decided, "steps": 16, "warmup_steps": 2})
    (run / "schedule.json").write_text(short)
    said.clear()
    results = train_and_evaluate(config, str(run), log=said.append)
    assert results["step"] == 16 and any("the schedule decided before, 16 steps" in s for s in said)
    assert not any("images/s" in s for s in said if s.startswith("time budget"))  # not measured and decided again


def test_the_process_start_is_before_now():
    import time

    assert time.time() - 3600 < budget.process_start() <= time.time()

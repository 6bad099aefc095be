"""A run sized by wall-clock time: ``config.time_budget`` (``"10m"``, ``"90s"``, ``"1h30m"``).

The budget runs from the start of ``python -m pcv.train`` (the process's
start) to ``results.json``: compiling, training, calibration and the final
evaluation all count. The trainer compiles its step, times a few steps, and
times one batch of the final evaluation and of the calibration (compiling
them, which they need anyway); :func:`plan` then gives the run as many steps
as fit in what is left, at most ``config.steps``, with the warmup scaled in
proportion (the decay follows the steps). The decision is kept in the work
dir (``schedule.json``), so a relaunch after a preemption continues the same
schedule instead of deciding again.

The console's ETA is then the time to ``results.json``: the steps left at
the measured rate, plus what the final phases were measured to take
(:class:`pcv.runtime.console.EtaTimer` with ``extra_seconds``).
"""

from __future__ import annotations

import dataclasses
import math
import os
import time

from pcv.config import OptimizerConfig
from pcv.data.panoptic import Subset
from pcv.evaluation import calibration
from pcv.evaluation.evaluator import Evaluator
from pcv.training.state import Schedule

#: Of the budget, what is kept back for what the measurements do not see (checkpoint saves, logging, noise).
MARGIN = 0.03
#: Steps timed after the first (compiling) one, to measure the step.
TIMED_STEPS = 5
#: How often the plan is revised with the step time measured since: about this many times over the rest of the run.
REVISIONS = 10


def process_start() -> float:
    """When this process started (``time.time()`` scale): the budget's origin; now where unknown."""
    try:
        with open("/proc/self/stat") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return time.time() - (uptime - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return time.time()


@dataclasses.dataclass(frozen=True)
class Plan:
    """What :func:`plan` decided, with the measurements it rests on (kept as ``schedule.json``)."""

    steps: int
    warmup_steps: int
    step_seconds: float  # one training step of the global batch
    images_per_second: float
    eval_seconds: float  # one evaluation of the validation split
    final_seconds: float  # after the last step: calibration, the final evaluation, results
    periodic_evals: int  # evaluations during training (config.eval_every)
    budget_seconds: float
    spent_seconds: float  # of the budget, when the plan was made
    batch_size: int
    train_images: int
    passes: float  # over the training images

    def schedule(self, opt: OptimizerConfig) -> Schedule:
        return Schedule.of(opt, self.steps, self.warmup_steps)

    def revised(self, *, step: int, spent_seconds: float, step_seconds: float, eval_every: int, max_steps: int) -> Plan:
        """The plan again at ``step``, with the step time measured since (the machine's speed drifts).

        Only the length moves; the warmup, long done, stays.
        """
        new = plan(
            budget_seconds=self.budget_seconds,
            spent_seconds=spent_seconds,
            step_seconds=step_seconds,
            eval_seconds=self.eval_seconds,
            final_seconds=self.final_seconds,
            eval_every=eval_every,
            steps_done=step,
            max_steps=max_steps,
            nominal_warmup=self.warmup_steps,
            batch_size=self.batch_size,
            train_images=self.train_images,
        )
        return dataclasses.replace(new, warmup_steps=min(self.warmup_steps, new.steps - 1))

    def describe(self) -> str:
        periodic = f", {self.periodic_evals} evaluations on the way" if self.periodic_evals else ""
        passes = f" ({self.passes:.1f} passes over the training images)" if self.passes >= 0.1 else ""
        return (
            f"time budget {_short(self.budget_seconds)}: {self.images_per_second:.1f} images/s "
            f"({self.step_seconds:.3f} s a step of {self.batch_size}); calibration and the final evaluation take about "
            f"{self.final_seconds:.0f} s{periodic}; {self.spent_seconds:.0f} s spent so far -> {self.steps} steps"
            f"{passes}, warmup {self.warmup_steps}"
        )


def plan(
    *,
    budget_seconds: float,
    spent_seconds: float,
    step_seconds: float,
    eval_seconds: float,
    final_seconds: float,
    eval_every: int,
    steps_done: int,
    max_steps: int,
    nominal_warmup: int,
    batch_size: int,
    train_images: int,
) -> Plan:
    """The steps that fit the budget, at most ``max_steps`` and at least ``steps_done + 1``.

    What is left of the budget (less :data:`MARGIN` of it, less ``final_seconds``)
    is shared by the steps, at ``step_seconds`` each, and the evaluations
    every ``eval_every`` steps on the way, at ``eval_seconds`` each.
    ``nominal_warmup`` is the warmup the config gives for ``max_steps``; the
    plan's warmup keeps that proportion. The trainer revises the plan as it
    goes (:meth:`Plan.revised`), so a machine that turns slower or faster
    still ends the run on time.
    """
    left = budget_seconds * (1 - MARGIN) - spent_seconds - final_seconds

    def evals(steps: int) -> int:
        return (steps - 1) // eval_every - steps_done // eval_every if eval_every else 0

    steps = steps_done + max(0, math.floor(left / max(step_seconds, 1e-9)))
    for _ in range(3):  # the evaluations on the way take their share of the time too
        steps = steps_done + max(0, math.floor((left - evals(steps) * eval_seconds) / max(step_seconds, 1e-9)))
    steps = int(min(max_steps, max(steps_done + 1, steps)))
    warmup = min(steps - 1, round(nominal_warmup * steps / max(max_steps, 1)))
    return Plan(
        steps=steps,
        warmup_steps=int(max(0, warmup)),
        step_seconds=float(step_seconds),
        images_per_second=batch_size / max(step_seconds, 1e-9),
        eval_seconds=float(eval_seconds),
        final_seconds=float(final_seconds),
        periodic_evals=max(0, evals(steps)),
        budget_seconds=float(budget_seconds),
        spent_seconds=float(spent_seconds),
        batch_size=int(batch_size),
        train_images=int(train_images),
        passes=steps * batch_size / max(train_images, 1),
    )


def _short(seconds: float) -> str:
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def time_per_image(run, dataset, batch_size: int) -> tuple[float, float]:
    """``(seconds per image, compiling seconds)`` of ``run(first batch of dataset)``.

    The first call compiles; the second is timed. Their difference is what
    compiling cost.
    """
    sample = Subset(dataset, 0, min(batch_size, len(dataset)), getattr(dataset, "split", "sample"))
    start = time.perf_counter()
    run(sample)
    first = time.perf_counter() - start
    start = time.perf_counter()
    run(sample)
    second = time.perf_counter() - start
    return second / max(len(sample), 1), max(0.0, first - second)


def time_final_phases(predictor, evaluator, calibration_split, batch_size: int) -> tuple[float, float]:
    """``(one evaluation of the split, calibration + the final evaluation)`` in seconds, by timing one batch of each.

    Both compile what they will run at the end (the compiled programs are
    kept), so measuring them costs about one batch each. The settings
    calibration chooses need their post-processing compiled once more for the
    final evaluation; that is counted too.
    """

    def evaluate(sample):
        Evaluator(sample, batch_size=batch_size, progress=False, log=_quiet).run(predictor)

    def calibrate(sample):
        calibration.calibrate(predictor, sample, batch_size=batch_size, progress=False, log=_quiet)

    per_image, compiling = time_per_image(evaluate, evaluator.dataset, batch_size)
    eval_seconds = per_image * evaluator.count
    final = eval_seconds
    if calibration_split is not None:
        per_image, _ = time_per_image(calibrate, calibration_split, batch_size)
        final += per_image * len(calibration_split) + compiling
    return eval_seconds, final


def _quiet(*args, **kwargs) -> None:
    pass

"""The train state, and the network, schedule and optimizer it is made of: built here and nowhere else.

::

    parts = create_train_state(config, num_classes, grid)
    parts.graphdef        # the network's NNX graph (nnx.merge(graphdef, **state.model_state))
    parts.state           # TrainState: step, params, rest, opt_state (a pytree: jit, shard, checkpoint)
    parts.tx, parts.schedule

The network is split once into plain nested dicts (the Flax "functional
loop"): ``params`` are the trained variables (``nnx.Param``), ``rest`` the
BatchNorm running statistics and frozen constants. The train step merges
them back inside ``jit``. Evaluation and prediction need only
``state.model_state`` (``{"params", "rest"}``), which is also what they
restore from a checkpoint.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from pcv.config import Config, OptimizerConfig
from pcv.models import PCVNet
from pcv.models.build import build_model, split_model
from pcv.voting import VoteGrid


@flax.struct.dataclass
class TrainState:
    """Everything a training run carries from step to step (and saves in checkpoints).

    Attributes:
      step: int32 scalar, the number of steps done.
      params: the trained variables of the network (nested dict of arrays).
      rest: BatchNorm running statistics and frozen constants (nested dict).
      opt_state: the optimizer's state.
    """

    step: jax.Array
    params: Any
    rest: Any
    opt_state: Any

    @property
    def model_state(self) -> dict:
        """``{"params", "rest"}``: what the network needs for a forward pass."""
        return {"params": self.params, "rest": self.rest}


@dataclasses.dataclass(frozen=True)
class TrainParts:
    graphdef: Any
    state: TrainState
    tx: optax.GradientTransformation


# ----------------------------------------------------------------------------
# Schedule and optimizer.
# ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Schedule:
    """The run's length as the step sees it: ``steps``, ``warmup_steps`` and the step decay's boundaries.

    It is an argument of the jitted step (:meth:`as_array`), not a constant
    compiled into it, so a run sized by time (:mod:`pcv.training.budget`)
    decides its length after its step is compiled and measured.
    """

    steps: int
    warmup_steps: int
    boundaries: tuple[int, ...] = ()  # step decay: where the rate is multiplied by step_factor, in steps

    @classmethod
    def of(cls, opt: OptimizerConfig, steps: int, warmup_steps: int | None = None) -> Schedule:
        """``steps`` steps with ``opt``'s warmup (or ``warmup_steps``) and its decay boundaries at fractions of them."""
        warmup = opt.warmup_steps if warmup_steps is None else warmup_steps
        bounds = sorted({int(f * steps) - warmup for f in opt.step_boundaries} if opt.schedule == "step" else set())
        return cls(int(steps), int(warmup), tuple(b for b in bounds if b > 0))

    def as_array(self) -> np.ndarray:
        return np.array([self.steps, self.warmup_steps, *self.boundaries], np.int32)


def learning_rate(opt: OptimizerConfig, count, schedule):
    """The rate of step ``count`` (0-based): linear warmup from 0, then poly or step decay (jnp, traceable).

    ``schedule``: :meth:`Schedule.as_array` (``[steps, warmup, boundaries...]``),
    a traced value. The same numbers as optax's ``join_schedules`` of a
    ``linear_schedule`` and a ``polynomial_schedule`` or
    ``piecewise_constant_schedule`` built for a fixed length.
    """
    peak = opt.learning_rate
    steps, warmup = schedule[0], schedule[1]
    w = jnp.maximum(warmup, 1)
    frac = 1 - jnp.clip(count, 0, w) / w
    warm = (0.0 - peak) * (frac**1) + peak
    after = count - warmup
    if opt.schedule == "poly":
        t = jnp.maximum(steps - warmup, 1)
        frac = 1 - jnp.clip(after, 0, t) / t
        decay = (peak - 0.0) * (frac**opt.poly_power) + 0.0
    else:
        decay = peak
        for i in range(2, schedule.shape[0]):
            indicator = jnp.maximum(0.0, jnp.sign(schedule[i] - after))
            decay = decay * indicator + (1 - indicator) * opt.step_factor * decay
    return jnp.where(count < warmup, warm, decay)


def make_optimizer(opt: OptimizerConfig) -> optax.GradientTransformation:
    """SGD with momentum and weight decay on kernels (not on norm scales and biases), optional clipping.

    The updates come out as optax's ``sgd`` makes them for a rate of 1; the
    step multiplies them by :func:`learning_rate`. (The state is the one
    ``sgd`` with a schedule keeps, so checkpoints of earlier runs restore.)
    """

    def decay_mask(params):
        return jax.tree.map(lambda p: p.ndim > 1, params)

    parts = [optax.clip_by_global_norm(opt.clip_norm)] if opt.clip_norm > 0 else []
    parts += [
        optax.add_decayed_weights(opt.weight_decay, mask=decay_mask),
        optax.trace(decay=opt.momentum),
        optax.scale_by_schedule(lambda count: -1.0),
    ]
    return optax.chain(*parts)


# ----------------------------------------------------------------------------
# The train state.
# ----------------------------------------------------------------------------


def create_train_state(config: Config, num_classes: int, grid: VoteGrid, *, model: PCVNet | None = None) -> TrainParts:
    """A fresh train state at step 0 (network from ``config.model`` and ``config.seed``, or ``model``)."""
    model = build_model(config.model, num_classes, grid, seed=config.seed) if model is None else model
    graphdef, params, rest = split_model(model)
    tx = make_optimizer(config.optimizer)
    state = TrainState(step=jnp.zeros((), jnp.int32), params=params, rest=rest, opt_state=tx.init(params))
    return TrainParts(graphdef, state, tx)

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
    schedule: optax.Schedule


# ----------------------------------------------------------------------------
# The network.
# ----------------------------------------------------------------------------


# ----------------------------------------------------------------------------
# Schedule and optimizer.
# ----------------------------------------------------------------------------


def make_schedule(opt: OptimizerConfig, steps: int) -> optax.Schedule:
    """Linear warmup to ``learning_rate``, then poly or step decay over the remaining steps."""
    warmup = optax.linear_schedule(0.0, opt.learning_rate, max(opt.warmup_steps, 1))
    rest = steps - opt.warmup_steps
    if opt.schedule == "poly":
        decay = optax.polynomial_schedule(opt.learning_rate, 0.0, opt.poly_power, max(rest, 1))
    else:
        bounds = {int(f * steps) - opt.warmup_steps: opt.step_factor for f in opt.step_boundaries}
        decay = optax.piecewise_constant_schedule(opt.learning_rate, {b: s for b, s in bounds.items() if b > 0})
    return optax.join_schedules([warmup, decay], [opt.warmup_steps])


def make_optimizer(opt: OptimizerConfig, schedule: optax.Schedule) -> optax.GradientTransformation:
    """SGD with momentum and weight decay on kernels (not on norm scales and biases), optional clipping."""

    def decay_mask(params):
        return jax.tree.map(lambda p: p.ndim > 1, params)

    parts = [optax.clip_by_global_norm(opt.clip_norm)] if opt.clip_norm > 0 else []
    parts += [optax.add_decayed_weights(opt.weight_decay, mask=decay_mask), optax.sgd(schedule, momentum=opt.momentum)]
    return optax.chain(*parts)


# ----------------------------------------------------------------------------
# The train state.
# ----------------------------------------------------------------------------


def create_train_state(config: Config, num_classes: int, grid: VoteGrid, *, model: PCVNet | None = None) -> TrainParts:
    """A fresh train state at step 0 (network from ``config.model`` and ``config.seed``, or ``model``)."""
    model = build_model(config.model, num_classes, grid, seed=config.seed) if model is None else model
    graphdef, params, rest = split_model(model)
    schedule = make_schedule(config.optimizer, config.steps)
    tx = make_optimizer(config.optimizer, schedule)
    state = TrainState(step=jnp.zeros((), jnp.int32), params=params, rest=rest, opt_state=tx.init(params))
    return TrainParts(graphdef, state, tx, schedule)

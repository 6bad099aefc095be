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
from flax import nnx

from pcv.config import Config, ModelConfig, OptimizerConfig
from pcv.models import PCVNet
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


def build_model(
    model: ModelConfig, num_classes: int, grid: VoteGrid, *, seed: int = 0, pretrained: bool = True
) -> PCVNet:
    """The PCV network ``model`` describes, initialised from ``seed``.

    With ``model.pretrained`` (a weight file) and ``pretrained=True`` the
    backbone is then loaded from that file; ``pretrained=False`` skips the
    file (the weights will come from a checkpoint).
    """

    def make(weights):
        return PCVNet(
            num_classes=num_classes,
            num_bins=grid.num_bins,
            backbone=model.backbone,
            fpn_channels=model.fpn_channels,
            fusion_channels=model.fusion_channels,
            backbone_norm=model.backbone_norm,
            head_norm=model.head_norm,
            dtype=jnp.bfloat16 if model.dtype == "bfloat16" else jnp.float32,
            rngs=nnx.Rngs(seed),
            pretrained=weights,
        )

    if pretrained and model.pretrained:
        return make(model.pretrained)  # reads a file: not traceable
    # One compiled program instead of a few hundred small eager ones (each compiled on first use).
    return nnx.jit(lambda: make(None))()


def split_model(model: PCVNet) -> tuple[Any, dict, dict]:
    """``(graphdef, params, rest)``, the variables as plain nested dicts."""
    graphdef, params, rest = nnx.split(model, PCVNet.trainable, ...)
    return graphdef, nnx.to_pure_dict(params), nnx.to_pure_dict(rest)


def abstract_model(model: ModelConfig, num_classes: int, grid: VoteGrid) -> tuple[Any, dict]:
    """``(graphdef, model_state)`` with ``jax.ShapeDtypeStruct`` leaves: the structure, nothing computed or read."""
    abstract = nnx.eval_shape(lambda: build_model(model, num_classes, grid, pretrained=False))
    graphdef, params, rest = split_model(abstract)
    return graphdef, {"params": params, "rest": rest}


def named_leaves(model_state) -> tuple[list[str], list, Any]:
    """``(names, leaves, treedef)`` of a model state, names dotted like ``params.backbone.stem.kernel``.

    The names of exported weights (:mod:`pcv.export`) and of what
    ``init_from`` copies (:mod:`pcv.finetune`).
    """
    leaves, treedef = jax.tree_util.tree_flatten_with_path(model_state)
    names = [".".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path) for path, _ in leaves]
    if len(set(names)) != len(names):
        raise ValueError("two variables of the model state have the same dotted name")
    return names, [leaf for _, leaf in leaves], treedef


def merge(graphdef, model_state: dict, *, train: bool = False) -> PCVNet:
    """The network of ``graphdef`` with the given variables, in train or eval mode."""
    model = nnx.merge(graphdef, model_state["params"], model_state["rest"])
    model.train() if train else model.eval()
    return model


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

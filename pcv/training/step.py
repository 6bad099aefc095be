"""The train step: loss, gradients and the optimizer update, as one pure function to ``jax.jit``."""

from __future__ import annotations

import jax
import numpy as np
import optax
from flax import nnx
from jax.sharding import NamedSharding

from pcv.config import Config
from pcv.data import normalize_images
from pcv.models.build import merge
from pcv.training import losses
from pcv.training.state import TrainState, learning_rate


def make_train_step(graphdef, tx: optax.GradientTransformation, config: Config):
    """The pure train step ``(state, batch, schedule) -> (state, metrics)`` (jit it with shardings).

    ``batch``: ``images`` uint8 ``[B, H, W, 3]`` (normalised here, on the
    device), ``semantic`` / ``votes`` int32 and ``weights`` float32 ``[B, h, w]``.
    ``schedule``: the run's length, :meth:`pcv.training.state.Schedule.as_array`
    (an argument, so a run sized by time compiles its step once).
    """

    def loss_fn(params, rest, batch):
        model = merge(graphdef, {"params": params, "rest": rest}, train=True)
        out = model(normalize_images(batch["images"]))
        total, parts = losses.pcv_loss(
            out, batch, sem_weight=config.loss.semantic_weight, vote_weight=config.loss.vote_weight
        )

        _, _, new_rest = nnx.split(model, nnx.Param, ...)  # updated batch statistics
        return total, (parts, nnx.to_pure_dict(new_rest))

    def train_step(state: TrainState, batch, schedule):
        (_, (parts, rest)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, state.rest, batch)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        rate = learning_rate(config.optimizer, state.step, schedule)
        updates = jax.tree.map(lambda u: u * rate, updates)
        new_state = state.replace(
            step=state.step + 1, params=optax.apply_updates(state.params, updates), rest=rest, opt_state=opt_state
        )
        return new_state, dict(parts, learning_rate=rate, grad_norm=optax.tree.norm(grads))

    return train_step


def to_global(batch: dict, sharding: NamedSharding) -> dict:
    """Assemble host-local numpy batches into global arrays sharded on ``data``."""
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in batch.items()}

"""The network a :class:`~pcv.config.ModelConfig` describes: built, split into plain dicts of arrays, merged back.

The network is split once into plain nested dicts (the Flax "functional
loop"): ``params`` are the trained variables (``nnx.Param``), ``rest`` the
BatchNorm running statistics and frozen constants. Training merges them back
inside ``jit``; evaluation and prediction need only ``{"params", "rest"}``,
which is also what they restore from a checkpoint.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from pcv.config import ModelConfig
from pcv.models import PCVNet
from pcv.voting import VoteGrid


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
    ``init_from`` copies (:mod:`pcv.training.finetune`).
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

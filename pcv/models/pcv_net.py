"""The PCV network: ResNet + FPN + fusion to stride 4 + semantic and vote heads.

Legend: B batch, H x W input size (multiples of 32), C semantic classes,
K vote bins (the vote head has K + 1 outputs, the last one = abstain).

::

    model = PCVNet(num_classes=133, num_bins=grid.num_bins, backbone="resnet50",
                   backbone_norm="frozen", dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
    out = model(images)          # images [B, H, W, 3], normalised as the backbone expects
    out["semantic"]              # [B, H/4, W/4, C]      float32 logits
    out["votes"]                 # [B, H/4, W/4, K + 1]  float32 logits

Train / eval mode: ``model.train()`` / ``model.eval()`` (BatchNorm uses
batch statistics and updates its running averages only in train mode;
``"frozen"`` and ``"group"`` norms behave the same in both).

Data parallelism: call the model under ``jax.jit`` on the *global* batch,
sharded over a ``data`` mesh axis. "batch" norms then normalise with the
statistics of the whole global batch (XLA all-reduces them), so outputs and
updated running statistics do not depend on the number of devices; do not
call it per device inside ``shard_map``/``pmap`` with "batch" norms.

Splitting the state for a functional training step::

    graphdef, params, rest = nnx.split(model, PCVNet.trainable, ...)  # = nnx.Param
    # params: everything trained. rest: nnx.BatchStat (running statistics of
    # "batch" norms, updated by the forward pass in train mode) and Frozen
    # (constants of "frozen" norms), passed through the step unchanged or as
    # returned by nnx.state(merged_model) after the forward.

or ``graphdef, params, batch_stats, frozen = nnx.split(model, nnx.Param,
nnx.BatchStat, Frozen)``. ``nnx.Optimizer(model, tx, wrt=nnx.Param)`` never
touches the Frozen variables, so a frozen backbone norm needs no extra filter.

Inputs are taken as they are: no mean/std normalisation happens here (the
input pipeline does it, to match the pretrained backbone).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from pcv.config import SIZE_MULTIPLE
from pcv.models.fpn import FPN, HEAD_NORMS, PyramidFusion
from pcv.models.resnet import BACKBONES, NORMS, build_backbone
from pcv.models.weights import load_backbone  # here: only a pretrained model needs it


class PCVNet(nnx.Module):
    """Pixel Consensus Voting network (Wang et al., CVPR 2020).

    Args:
      num_classes: C, semantic classes (things and stuff).
      num_bins: K, bins of the voting grid; the vote head predicts K + 1
        classes, the last one being abstain.
      backbone: ``"resnet50"``, ``"resnet101"`` or ``"small"`` (basic blocks,
        widths 16-32-64-128; for demos and tests).
      fpn_channels: channels of P2..P5.
      fusion_channels: channels of the stride-4 fusion feeding the heads.
      backbone_norm: ``"batch"``, ``"frozen"`` or ``"group"`` (see
        :mod:`pcv.models.resnet`); ``"frozen"`` with pretrained weights.
      head_norm: norm of the FPN and fusion convs: the above or ``"none"``.
      zero_init_residual: start each residual block's last norm scale at 0.
      dtype: compute dtype of the backbone, FPN and fusion (e.g.
        ``jnp.bfloat16``); the two 1x1 heads always compute in float32, so the
        logits are float32.
      param_dtype: dtype of the parameters (float32).
      rngs: initialisation randomness; ``nnx.Rngs(0)`` if None.
      pretrained: path of ImageNet weights for the backbone (torchvision
        ``.pth``, which needs torch, or timm / converted ``.safetensors``),
        loaded over the random init by
        :func:`pcv.models.weights.load_backbone`; None or "" = from scratch.
        Needs ``backbone_norm`` "frozen" or "batch".

    ``PCVNet.trainable`` is the NNX filter of the trained variables
    (``nnx.Param``): ``nnx.split(model, PCVNet.trainable, ...)`` gives the
    parameters and the rest (BatchStat, Frozen).
    """

    trainable = nnx.Param

    def __init__(
        self,
        num_classes: int,
        num_bins: int,
        *,
        backbone: str = "resnet50",
        fpn_channels: int = 256,
        fusion_channels: int = 128,
        backbone_norm: str = "batch",
        head_norm: str = "group",
        zero_init_residual: bool = False,
        dtype=jnp.float32,
        param_dtype=jnp.float32,
        rngs: nnx.Rngs | None = None,
        pretrained: str | None = None,
    ):
        if backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {tuple(BACKBONES)}, got {backbone!r}")
        if backbone_norm not in NORMS:
            raise ValueError(f"backbone_norm must be one of {NORMS}, got {backbone_norm!r}")
        if head_norm not in HEAD_NORMS:
            raise ValueError(f"head_norm must be one of {HEAD_NORMS}, got {head_norm!r}")
        if num_classes < 1 or num_bins < 1:
            raise ValueError(f"need num_classes >= 1 and num_bins >= 1, got {num_classes}, {num_bins}")
        rngs = nnx.Rngs(0) if rngs is None else rngs
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.num_classes = num_classes
        self.num_bins = num_bins
        self.dtype = dtype

        def make_backbone(rngs):
            return build_backbone(
                backbone,
                norm=backbone_norm,
                zero_init_residual=zero_init_residual,
                dtype=dtype,
                param_dtype=param_dtype,
                rngs=rngs,
            )

        if pretrained:
            # Every backbone variable comes from the file (load_backbone fills
            # all or raises), so skip computing a random init: build it
            # abstractly. Saves seconds on CPU for ResNet-50/101.
            self.backbone = nnx.eval_shape(lambda: make_backbone(nnx.Rngs(0)))
            load_backbone(self.backbone, pretrained)  # logs what it loaded; raises on any mismatch
        else:
            self.backbone = make_backbone(rngs)
        self.fpn = FPN(self.backbone.out_channels, fpn_channels, norm=head_norm, **kw)
        self.fusion = PyramidFusion(
            fpn_channels, fusion_channels, len(self.backbone.out_channels), norm=head_norm, **kw
        )
        # Heads: float32 1x1 convs (cheap next to the trunk), small init so the
        # initial predictions are near uniform.
        head_kw = dict(
            kernel_init=nnx.initializers.normal(0.01),
            bias_init=nnx.initializers.zeros,
            dtype=jnp.float32,
            param_dtype=param_dtype,
            rngs=rngs,
        )
        self.semantic_head = nnx.Conv(fusion_channels, num_classes, (1, 1), **head_kw)
        self.vote_head = nnx.Conv(fusion_channels, num_bins + 1, (1, 1), **head_kw)

    def __call__(self, images) -> dict[str, jax.Array]:
        """``images`` float ``[B, H, W, 3]`` -> ``{"semantic": [B, H/4, W/4, C], "votes": [B, H/4, W/4, K+1]}``."""
        check_input_size(images.shape)
        x = images.astype(self.dtype)
        pyramid = self.fpn(self.backbone(x))
        fused = self.fusion(pyramid).astype(jnp.float32)  # [B, H/4, W/4, fusion_channels]
        return {"semantic": self.semantic_head(fused), "votes": self.vote_head(fused)}


def check_input_size(shape) -> None:
    """Raise ValueError unless ``shape`` is ``[B, H, W, 3]`` with H, W multiples of 32."""
    if len(shape) != 4 or shape[-1] != 3:
        raise ValueError(f"images must be [B, H, W, 3], got shape {tuple(shape)}")
    h, w = shape[1], shape[2]
    if h % SIZE_MULTIPLE or w % SIZE_MULTIPLE or h == 0 or w == 0:
        raise ValueError(
            f"input size {h}x{w} is not a multiple of {SIZE_MULTIPLE} "
            f"(pad or resize the images to e.g. {-(-h // SIZE_MULTIPLE) * SIZE_MULTIPLE}x"
            f"{-(-w // SIZE_MULTIPLE) * SIZE_MULTIPLE})"
        )


def count_params(module: nnx.Module, *filters) -> int:
    """Number of scalars in the variables of ``module`` selected by ``filters``.

    Default filter ``nnx.Param``: the trained parameters (BatchNorm/GroupNorm
    affine included; running statistics and :class:`~pcv.models.resnet.Frozen`
    constants excluded). Works on abstract modules from ``nnx.eval_shape``.
    """
    state = nnx.state(module, nnx.Any(*filters) if filters else nnx.Param)
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(state))

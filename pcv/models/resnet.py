"""ResNet backbones in Flax NNX (NHWC), returning the features C2..C5.

Layout follows torchvision's ``resnet50`` / ``resnet101`` (v1.5: the stride of
a bottleneck block sits on its 3x3 conv; stem = 7x7/2 conv with 64 channels,
then a 3x3/2 max pool; padding is symmetric, ``kernel // 2``, as in PyTorch),
so ImageNet weights from torchvision or timm load one to one.

Parameter naming
----------------
Attribute names copy torchvision's module names; NNX adds the integer index
of a block inside a stage (``nnx.List``) as its own path element, and names
the leaves after Flax's conventions. :func:`torchvision_key` turns an NNX
path (relative to the backbone) into the torchvision ``state_dict`` key::

    NNX path                                 torchvision key               note
    ('conv1', 'kernel')                      conv1.weight                  HWIO vs OIHW:
    ('layer1', 0, 'conv2', 'kernel')         layer1.0.conv2.weight           torch_w.transpose(2, 3, 1, 0)
    ('layer1', 0, 'downsample', 0, 'kernel') layer1.0.downsample.0.weight
    ('layer1', 0, 'downsample', 1, 'scale')  layer1.0.downsample.1.weight
    ('bn1', 'scale') / ('bn1', 'bias')       bn1.weight / bn1.bias
    ('bn1', 'mean') / ('bn1', 'var')         bn1.running_mean / bn1.running_var

(``num_batches_tracked`` and ``fc.*`` have no counterpart.) Names are the
same for every ``norm`` choice except ``"group"``, which has no running
statistics.

Normalisation (``norm``)
------------------------
* ``"batch"``: :class:`flax.nnx.BatchNorm` (momentum 0.9 = PyTorch's 0.1,
  epsilon 1e-5). In train mode it normalises with the statistics of the
  batch it is given. Called under ``jax.jit`` on a *global* batch sharded
  over a ``data`` mesh axis, the mean and variance are reductions over the
  global array, so XLA inserts the cross-device all-reduce itself: the
  result is synchronised BatchNorm over the whole global batch and does not
  depend on the number of devices. (Inside ``shard_map``/``pmap`` this would
  not hold; the model is not meant to be called there.) Running statistics
  are :class:`flax.nnx.BatchStat` variables, updated in place in train mode.
* ``"frozen"``: :class:`FrozenBatchNorm`, always the running statistics; its
  scale, bias, mean and var are :class:`Frozen` variables, which are not
  :class:`flax.nnx.Param`, so ``nnx.Param`` as the optimizer's filter (or
  ``nnx.split(model, nnx.Param, ...)``) leaves them out. The usual choice
  with a pretrained backbone.
* ``"group"``: :class:`flax.nnx.GroupNorm` with ``gcd(32, channels)`` groups;
  independent of the batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from pcv.config import BACKBONES as BACKBONE_NAMES  # one definition of the names
from pcv.config import NORMS


def _fans(shape):
    """(fan_in, fan_out) of an HWIO conv kernel."""
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


def conv_init(key, shape, dtype=jnp.float32):
    """He init as torchvision's ``kaiming_normal_(mode="fan_out", nonlinearity="relu")``.

    An untruncated normal with std ``sqrt(2 / fan_out)``, ``fan_out = kh * kw * out``.
    """
    std = math.sqrt(2.0 / _fans(shape)[1])
    return (std * jax.random.normal(key, shape, jnp.float32)).astype(dtype)


def fan_in_uniform_init(key, shape, dtype=jnp.float32):
    """Uniform on ``±sqrt(3 / fan_in)`` (Detectron2's ``c2_xavier_fill`` for FPN convs)."""
    bound = math.sqrt(3.0 / _fans(shape)[0])
    return jax.random.uniform(key, shape, jnp.float32, -bound, bound).astype(dtype)


class Frozen(nnx.Variable):
    """A constant of the network (e.g. frozen BatchNorm statistics and affine).

    Neither trained nor updated: not an :class:`flax.nnx.Param` (so an
    optimizer over ``nnx.Param`` skips it) nor an :class:`flax.nnx.BatchStat`.
    Its value comes from initialisation or a loaded checkpoint.
    """


class FrozenBatchNorm(nnx.Module):
    """BatchNorm that always uses its stored statistics and affine parameters.

    ``y = (x - mean) / sqrt(var + epsilon) * scale + bias``, folded into one
    multiply-add, computed in float32 and returned in ``dtype`` (default: the
    input's). Ignores ``.train()`` / ``.eval()``.
    """

    def __init__(
        self,
        num_features: int,
        *,
        epsilon: float = 1e-5,
        dtype=None,
        param_dtype=jnp.float32,
    ):
        self.num_features = num_features
        self.epsilon = epsilon
        self.dtype = dtype
        self.scale = Frozen(jnp.ones((num_features,), param_dtype))
        self.bias = Frozen(jnp.zeros((num_features,), param_dtype))
        self.mean = Frozen(jnp.zeros((num_features,), param_dtype))
        self.var = Frozen(jnp.ones((num_features,), param_dtype))

    def __call__(self, x):
        f32 = jnp.float32
        mul = self.scale[...].astype(f32) * jax.lax.rsqrt(self.var[...].astype(f32) + self.epsilon)
        add = self.bias[...].astype(f32) - self.mean[...].astype(f32) * mul
        y = x.astype(f32) * mul + add
        return y.astype(self.dtype or x.dtype)


def make_norm(
    kind: str,
    num_features: int,
    *,
    dtype=None,
    param_dtype=jnp.float32,
    zero_scale: bool = False,
    rngs: nnx.Rngs,
):
    """A normalisation layer of kind ``"batch"``, ``"frozen"`` or ``"group"``.

    ``zero_scale`` initialises the scale to 0 (for the last norm of a
    residual block); it is ignored for ``"frozen"``, whose values are fixed.
    """
    scale_init = nnx.initializers.zeros if zero_scale else nnx.initializers.ones
    if kind == "batch":
        return nnx.BatchNorm(
            num_features,
            momentum=0.9,
            epsilon=1e-5,
            dtype=dtype,
            param_dtype=param_dtype,
            scale_init=scale_init,
            rngs=rngs,
        )
    if kind == "frozen":
        return FrozenBatchNorm(num_features, dtype=dtype, param_dtype=param_dtype)
    if kind == "group":
        return nnx.GroupNorm(
            num_features,
            num_groups=math.gcd(32, num_features),
            epsilon=1e-5,
            dtype=dtype,
            param_dtype=param_dtype,
            scale_init=scale_init,
            rngs=rngs,
        )
    raise ValueError(f"norm must be one of {NORMS}, got {kind!r}")


def conv(
    in_features: int,
    out_features: int,
    kernel_size: int,
    stride: int = 1,
    *,
    use_bias: bool = False,
    dtype=None,
    param_dtype=jnp.float32,
    kernel_init=conv_init,
    rngs: nnx.Rngs,
) -> nnx.Conv:
    """A square conv with PyTorch's symmetric padding ``kernel_size // 2``.

    (Flax's ``"SAME"`` pads stride-2 convs asymmetrically, which would shift
    features by half a pixel against pretrained PyTorch weights.)
    """
    pad = kernel_size // 2
    return nnx.Conv(
        in_features,
        out_features,
        (kernel_size, kernel_size),
        strides=(stride, stride),
        padding=((pad, pad), (pad, pad)),
        use_bias=use_bias,
        dtype=dtype,
        param_dtype=param_dtype,
        kernel_init=kernel_init,
        rngs=rngs,
    )


def max_pool_3x3_s2(x):
    """PyTorch's ``MaxPool2d(3, stride=2, padding=1)``: padding never wins."""
    # A concrete (numpy) -inf lets JAX recognise the max monoid, which it
    # needs for reverse-mode differentiation; a jnp constant is traced under jit.
    return jax.lax.reduce_window(
        x,
        np.array(-np.inf, x.dtype),
        jax.lax.max,
        (1, 3, 3, 1),
        (1, 2, 2, 1),
        ((0, 0), (1, 1), (1, 1), (0, 0)),
    )


class BasicBlock(nnx.Module):
    """Two 3x3 convs (the first strided) plus the shortcut; expansion 1."""

    expansion = 1

    def __init__(self, in_features, width, stride=1, *, norm, zero_init_residual, dtype, param_dtype, rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        out = width * self.expansion
        self.conv1 = conv(in_features, width, 3, stride, **kw)
        self.bn1 = make_norm(norm, width, **kw)
        self.conv2 = conv(width, out, 3, **kw)
        self.bn2 = make_norm(norm, out, zero_scale=zero_init_residual, **kw)
        self.downsample = _downsample(in_features, out, stride, norm, **kw)

    def __call__(self, x):
        y = nnx.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        shortcut = x if self.downsample is None else self.downsample[1](self.downsample[0](x))
        return nnx.relu(y + shortcut)


class Bottleneck(nnx.Module):
    """1x1 reduce, 3x3 (strided), 1x1 expand (x4), plus the shortcut."""

    expansion = 4

    def __init__(self, in_features, width, stride=1, *, norm, zero_init_residual, dtype, param_dtype, rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        out = width * self.expansion
        self.conv1 = conv(in_features, width, 1, **kw)
        self.bn1 = make_norm(norm, width, **kw)
        self.conv2 = conv(width, width, 3, stride, **kw)
        self.bn2 = make_norm(norm, width, **kw)
        self.conv3 = conv(width, out, 1, **kw)
        self.bn3 = make_norm(norm, out, zero_scale=zero_init_residual, **kw)
        self.downsample = _downsample(in_features, out, stride, norm, **kw)

    def __call__(self, x):
        y = nnx.relu(self.bn1(self.conv1(x)))
        y = nnx.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        shortcut = x if self.downsample is None else self.downsample[1](self.downsample[0](x))
        return nnx.relu(y + shortcut)


def _downsample(in_features, out_features, stride, norm, *, dtype, param_dtype, rngs):
    """torchvision's ``downsample`` = Sequential(1x1 strided conv, norm), or None."""
    if stride == 1 and in_features == out_features:
        return None
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    return nnx.List([conv(in_features, out_features, 1, stride, **kw), make_norm(norm, out_features, **kw)])


BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}


class ResNet(nnx.Module):
    """A ResNet trunk without pooling and classifier.

    Args:
      block: ``"bottleneck"`` or ``"basic"``.
      layers: number of blocks in each of the four stages.
      widths: inner width of each stage (output = width * expansion).
      stem_width: channels of the 7x7 stem conv.
      norm: ``"batch"``, ``"frozen"`` or ``"group"`` (see the module docstring).
      zero_init_residual: start each block's last norm scale at 0, so every
        block starts as the identity (ignored for ``"frozen"``).
      dtype: compute dtype (e.g. ``jnp.bfloat16``); parameters stay in
        ``param_dtype``.

    Call: ``x`` float ``[B, H, W, 3]`` -> ``(C2, C3, C4, C5)``, each
    ``[B, H/s, W/s, out_channels[i]]`` for strides ``s = 4, 8, 16, 32``.
    """

    def __init__(
        self,
        block: str,
        layers: Sequence[int],
        widths: Sequence[int] = (64, 128, 256, 512),
        *,
        stem_width: int = 64,
        norm: str = "batch",
        zero_init_residual: bool = False,
        dtype=None,
        param_dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        if block not in BLOCKS:
            raise ValueError(f"block must be one of {tuple(BLOCKS)}, got {block!r}")
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        if len(layers) != 4 or len(widths) != 4:
            raise ValueError(f"need four stages, got layers={layers} widths={widths}")
        block_cls = BLOCKS[block]
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.conv1 = conv(3, stem_width, 7, 2, **kw)
        self.bn1 = make_norm(norm, stem_width, **kw)
        in_features = stem_width
        out_channels = []
        for i, (depth, width) in enumerate(zip(layers, widths)):
            stage = []
            for j in range(depth):
                stride = 2 if (i > 0 and j == 0) else 1
                stage.append(
                    block_cls(in_features, width, stride, norm=norm, zero_init_residual=zero_init_residual, **kw)
                )
                in_features = width * block_cls.expansion
            setattr(self, f"layer{i + 1}", nnx.List(stage))
            out_channels.append(in_features)
        self.out_channels = tuple(out_channels)

    def __call__(self, x):
        x = nnx.relu(self.bn1(self.conv1(x)))
        x = max_pool_3x3_s2(x)
        features = []
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            for blk in stage:
                x = blk(x)
            features.append(x)
        return tuple(features)


def resnet50(**kwargs) -> ResNet:
    """torchvision ``resnet50`` trunk (23,508,032 parameters without ``fc``)."""
    return ResNet("bottleneck", (3, 4, 6, 3), (64, 128, 256, 512), **kwargs)


def resnet101(**kwargs) -> ResNet:
    """torchvision ``resnet101`` trunk (42,500,160 parameters without ``fc``)."""
    return ResNet("bottleneck", (3, 4, 23, 3), (64, 128, 256, 512), **kwargs)


def resnet_small(**kwargs) -> ResNet:
    """A narrow ResNet for demos and tests: basic blocks, widths 16-32-64-128."""
    return ResNet("basic", (1, 1, 1, 1), (16, 32, 64, 128), stem_width=16, **kwargs)


BACKBONES = dict(zip(BACKBONE_NAMES, (resnet_small, resnet50, resnet101)))


def build_backbone(name: str, **kwargs) -> ResNet:
    """One of :data:`BACKBONES` by name."""
    if name not in BACKBONES:
        raise ValueError(f"backbone must be one of {tuple(BACKBONES)}, got {name!r}")
    return BACKBONES[name](**kwargs)


_TORCH_LEAF = {"kernel": "weight", "scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}


def torchvision_key(path: Sequence) -> str:
    """The torchvision ``state_dict`` key of a backbone variable's NNX path.

    ``path`` is relative to the :class:`ResNet` (e.g. from
    ``nnx.to_flat_state(nnx.state(model.backbone))``). Conv kernels are HWIO
    here and OIHW in PyTorch: load with ``w.transpose(2, 3, 1, 0)``.
    """
    *modules, leaf = path
    if leaf not in _TORCH_LEAF:
        raise ValueError(f"no torchvision name for the variable {leaf!r} in {tuple(path)}")
    return ".".join([*map(str, modules), _TORCH_LEAF[leaf]])

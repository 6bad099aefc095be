"""Feature pyramid (FPN) and the Panoptic-FPN-style fusion to stride 4.

* :class:`FPN` (Lin et al. 2017): lateral 1x1 convs on C2..C5, a top-down
  path with nearest-neighbour x2 upsampling and addition, and a 3x3 output
  conv per level -> P2..P5 (strides 4..32), all with ``channels`` channels.
* :class:`PyramidFusion` (the semantic branch of Panoptic FPN, Kirillov et al.
  2019): level P_i goes through ``max(1, i - 2)`` stages of
  conv3x3-norm-ReLU, each followed by a bilinear x2 upsampling for i > 2, so
  every level arrives at stride 4; the levels are summed.

Norm kinds are those of :mod:`pcv.models.resnet` plus ``"none"`` (conv with
bias and no normalisation, the original FPN). With a norm the convs have no
bias.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
from flax import nnx

from pcv.config import HEAD_NORMS
from pcv.models.resnet import conv, conv_init, fan_in_uniform_init, make_norm


def upsample_nearest_2x(x):
    """``[B, H, W, C] -> [B, 2H, 2W, C]``, each pixel repeated 2x2."""
    b, h, w, c = x.shape
    x = jnp.broadcast_to(x[:, :, None, :, None, :], (b, h, 2, w, 2, c))
    return x.reshape(b, 2 * h, 2 * w, c)


def upsample_bilinear_2x(x):
    """``[B, H, W, C] -> [B, 2H, 2W, C]``, bilinear with half-pixel centres.

    Same numbers as PyTorch's ``interpolate(scale_factor=2, mode="bilinear",
    align_corners=False)`` and ``jax.image.resize(..., "bilinear")``: output
    2i samples input i - 1/4, output 2i + 1 samples i + 1/4, edges clamped.
    Written out as two fixed 2-tap filters, which is cheaper than a generic
    resize.
    """

    def along(x, axis):
        n = x.shape[axis]
        idx = jnp.arange(n)
        prev = jnp.take(x, jnp.maximum(idx - 1, 0), axis=axis)
        nxt = jnp.take(x, jnp.minimum(idx + 1, n - 1), axis=axis)
        even = 0.75 * x + 0.25 * prev
        odd = 0.75 * x + 0.25 * nxt
        out = jnp.stack([even, odd], axis=axis + 1)  # [..., n, 2, ...]
        shape = list(x.shape)
        shape[axis] = 2 * n
        return out.reshape(shape).astype(x.dtype)

    return along(along(x, 1), 2)


class ConvNorm(nnx.Module):
    """A square conv followed by a norm (or, with ``norm="none"``, a conv with bias)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel_size: int,
        *,
        norm: str,
        relu: bool = False,
        dtype=None,
        param_dtype=jnp.float32,
        kernel_init=fan_in_uniform_init,
        rngs: nnx.Rngs,
    ):
        if norm not in HEAD_NORMS:
            raise ValueError(f"norm must be one of {HEAD_NORMS}, got {norm!r}")
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.relu = relu
        self.conv = conv(in_features, out_features, kernel_size, use_bias=norm == "none", kernel_init=kernel_init, **kw)
        self.norm = None if norm == "none" else make_norm(norm, out_features, **kw)

    def __call__(self, x):
        x = self.conv(x)
        if self.norm is not None:
            x = self.norm(x)
        return nnx.relu(x) if self.relu else x


class FPN(nnx.Module):
    """Feature pyramid: ``(C2, C3, C4, C5) -> (P2, P3, P4, P5)``.

    Args:
      in_channels: channels of C2..C5.
      channels: channels of every P level (256 in the papers).
      norm: one of :data:`HEAD_NORMS`.

    Call: a sequence of ``[B, H/s, W/s, in_channels[i]]`` maps with strides
    doubling from the first -> a tuple of ``[B, H/s, W/s, channels]``.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        channels: int = 256,
        *,
        norm: str = "none",
        dtype=None,
        param_dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        kw = dict(norm=norm, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.lateral = nnx.List([ConvNorm(c, channels, 1, **kw) for c in in_channels])
        self.output = nnx.List([ConvNorm(channels, channels, 3, **kw) for _ in in_channels])

    def __call__(self, features):
        if len(features) != len(self.lateral):
            raise ValueError(f"FPN built for {len(self.lateral)} levels, got {len(features)}")
        outputs = [None] * len(features)
        top = None
        for i in reversed(range(len(features))):
            lateral = self.lateral[i](features[i])
            top = lateral if top is None else lateral + upsample_nearest_2x(top)
            outputs[i] = self.output[i](top)
        return tuple(outputs)


class PyramidFusion(nnx.Module):
    """Panoptic-FPN semantic-branch fusion: ``(P2, ..., P5) -> [B, H/4, W/4, channels]``.

    ``stages[i]`` holds the conv3x3-norm-ReLU stages of level P_(i+2):
    1, 1, 2, 3 stages for P2..P5; every stage of P3..P5 is followed by a
    bilinear x2 upsampling. The four stride-4 maps are summed.
    """

    def __init__(
        self,
        in_channels: int = 256,
        channels: int = 128,
        num_levels: int = 4,
        *,
        norm: str = "group",
        dtype=None,
        param_dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        kw = dict(norm=norm, relu=True, dtype=dtype, param_dtype=param_dtype, kernel_init=conv_init, rngs=rngs)
        levels = []
        for i in range(num_levels):
            n = max(1, i)
            levels.append(
                nnx.List([ConvNorm(in_channels if j == 0 else channels, channels, 3, **kw) for j in range(n)])
            )
        self.stages = nnx.List(levels)

    def __call__(self, pyramid):
        if len(pyramid) != len(self.stages):
            raise ValueError(f"fusion built for {len(self.stages)} levels, got {len(pyramid)}")
        fused = None
        for i, (x, level) in enumerate(zip(pyramid, self.stages)):
            for stage in level:
                x = stage(x)
                if i > 0:
                    x = upsample_bilinear_2x(x)
            fused = x if fused is None else fused + x
        return fused

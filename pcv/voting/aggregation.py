"""Vote aggregation: per-pixel bin probabilities -> the voting heatmap.

Every pixel p sends its probability for bin k to the cell of bin k around it
(centre p + c_k, side s_k) and spreads it evenly over the cell's pixels:

    heat[q] = sum_p sum_k P[p, k] / s_k**2 * [p + c_k inside the image]
                                          * [|q - (p + c_k)|_inf <= r_k]

A vote whose cell centre falls outside the image is dropped whole; one whose
centre is inside keeps only the part of its cell that is inside.

Two formulations compute the same numbers:

* ``"conv"``, the paper's: per ring level, a transposed convolution with fixed
  one-hot kernels dilated by the cell size (moves each bin's mass to its cell
  centre, cropped to the image), then a stride-1 average pool of the cell
  size with zero padding that counts padded pixels.
* ``"shift"``, the default: per cell size, the sum over bins of the bin's
  probability plane shifted by its cell centre (cropped), then one box filter
  per cell size. The whole job is one read of P plus a few small maps.

Both are linear, batched over any leading axes, and work under ``jit``,
``vmap``, ``pmap``, ``shard_map`` and ``grad``.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from pcv.voting.grid import VoteGrid

METHODS = ("shift", "conv")


def _check_probs(probs, grid: VoteGrid):
    if probs.ndim < 3:
        raise ValueError(f"probs must have shape [..., H, W, K], got {probs.shape}")
    if probs.shape[-1] != grid.num_bins:
        raise ValueError(
            f"probs has {probs.shape[-1]} channels but the grid has K={grid.num_bins} bins "
            "(drop the abstain column before aggregating)"
        )


def _shift_crop(plane, dy: int, dx: int):
    """``out[..., y, x] = plane[..., y - dy, x - dx]``, zero where that is outside."""
    h, w = plane.shape[-2:]
    if abs(dy) >= h or abs(dx) >= w:
        return None
    src = plane[..., max(0, -dy) : h - max(0, dy), max(0, -dx) : w - max(0, dx)]
    pad = [(0, 0)] * (plane.ndim - 2) + [(max(0, dy), max(0, -dy)), (max(0, dx), max(0, -dx))]
    return jnp.pad(src, pad)


def _box_sum(x, size: int):
    """Sum over a ``size x size`` window centred on each pixel, zero padded.  x: [B, H, W]."""
    if size == 1:
        return x
    r = size // 2
    x = jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, size, 1), (1, 1, 1), ((0, 0), (r, r), (0, 0)))
    return jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, 1, size), (1, 1, 1), ((0, 0), (0, 0), (r, r)))


def shifted_bin_sums(probs, grid: VoteGrid) -> dict[int, jax.Array]:
    """Per cell size s: ``S_s[b, q] = sum_{k: s_k = s} P[b, q - c_k, k]`` (cropped).

    Args:
      probs: ``[B, H, W, K]``.
    Returns:
      ``{s: [B, H, W]}`` for each distinct cell size.
    """
    b, h, w, _ = probs.shape
    sums = {}
    for size in grid.cell_sizes:
        acc = jnp.zeros((b, h, w), probs.dtype)
        for k in np.flatnonzero(grid.sizes == size):
            dy, dx = (int(v) for v in grid.centers[k])
            term = _shift_crop(probs[..., k], dy, dx)
            if term is not None:
                acc = acc + term
        sums[size] = acc
    return sums


def _aggregate_shift(probs, grid: VoteGrid):
    heat = None
    for size, s in shifted_bin_sums(probs, grid).items():
        term = _box_sum(s, size) * (1.0 / size**2)
        heat = term if heat is None else heat + term
    return heat


def _level_kernel(grid: VoteGrid, level: int):
    """One-hot kernel of a ring level for the correlation form of its transposed conv.

    Returns (kernel [n, n, K_level, 1], bin indices [K_level], cell size, n).
    """
    bins = np.flatnonzero(grid.levels == level)
    size = int(grid.sizes[bins[0]])
    cells = grid.centers[bins] // size  # cell units
    m = int(np.abs(cells).max())
    n = 2 * m + 1
    kernel = np.zeros((n, n, len(bins), 1), np.float32)
    # Transposed conv: out[q] += P[p, k] at q = p + c_k. As a correlation,
    # out[q] = sum_u P[q + s * (u - m), k] * W[u, k]; so the one sits at u = m - c_k / s
    # (the kernel of the transposed conv, flipped).
    kernel[m - cells[:, 0], m - cells[:, 1], np.arange(len(bins)), 0] = 1.0
    return kernel, bins, size, m


def _aggregate_conv(probs, grid: VoteGrid):
    heat = None
    for level in range(len(grid.spec)):
        kernel, bins, size, m = _level_kernel(grid, level)
        x = probs[..., bins]
        # Dilated one-hot transposed conv, cropped to the image: votes whose cell
        # centre lands outside are dropped.
        centred = jax.lax.conv_general_dilated(
            x,
            jnp.asarray(kernel, probs.dtype),
            window_strides=(1, 1),
            padding=((size * m, size * m), (size * m, size * m)),
            rhs_dilation=(size, size),
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            precision=jax.lax.Precision.HIGHEST,
        )
        # Average pool of the cell size, stride 1, zero padding counted.
        r = size // 2
        pooled = jax.lax.reduce_window(
            centred, 0.0, jax.lax.add, (1, size, size, 1), (1, 1, 1, 1), ((0, 0), (r, r), (r, r), (0, 0))
        ) * (1.0 / size**2)
        heat = pooled[..., 0] if heat is None else heat + pooled[..., 0]
    return heat


def aggregate_votes(probs, grid: VoteGrid, *, method: str = "shift"):
    """Aggregate per-pixel bin probabilities into the voting heatmap.

    Args:
      probs: ``[..., H, W, K]`` float, the probabilities of the K bins (abstain
        column dropped; abstaining pixels zeroed by the caller if wanted).
      grid: the voting grid.
      method: ``"shift"`` (fast, default) or ``"conv"`` (the paper's
        transposed convolutions); they agree to float32 rounding.
    Returns:
      ``[..., H, W]`` heatmap.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    probs = jnp.asarray(probs)
    _check_probs(probs, grid)
    if not jnp.issubdtype(probs.dtype, jnp.floating):
        probs = probs.astype(jnp.float32)
    lead, (h, w, k) = probs.shape[:-3], probs.shape[-3:]
    return heatmap(probs.reshape((-1, h, w, k)), grid, method).reshape(lead + (h, w))


@partial(jax.jit, static_argnums=(1, 2))
def heatmap(probs, grid: VoteGrid, method: str = "shift"):
    """The unchecked core of :func:`aggregate_votes`: ``[B, H, W, >= K] -> [B, H, W]``.

    Channels from K on are ignored, so the inference can hand over the full
    K + 1 probabilities (abstain last) without copying them. Jitted even when
    called eagerly: the shift formulation is hundreds of small ops.
    """
    return (_aggregate_shift if method == "shift" else _aggregate_conv)(probs, grid)


def aggregate_votes_by_class(probs, labels, class_ids: Sequence[int], grid: VoteGrid, *, method: str = "shift"):
    """Category-separated voting: one heatmap per class.

    Heatmap ``c`` aggregates only the votes of pixels whose ``labels`` (e.g. the
    semantic argmax) equal ``class_ids[c]``. Classes are processed one after
    another, so memory stays that of a single aggregation.

    Args:
      probs: ``[..., H, W, K]``.
      labels: int ``[..., H, W]``.
      class_ids: the (thing) classes to vote for, C of them.
    Returns:
      ``[..., C, H, W]``.
    """
    probs = jnp.asarray(probs)
    labels = jnp.asarray(labels)
    if labels.shape != probs.shape[:-1]:
        raise ValueError(f"labels shape {labels.shape} must equal probs shape without K, {probs.shape[:-1]}")
    class_ids = jnp.asarray(np.asarray(class_ids, np.int32))

    def one(c):
        return aggregate_votes(jnp.where((labels == c)[..., None], probs, 0), grid, method=method)

    heats = jax.lax.map(one, class_ids)  # [C, ..., H, W]
    return jnp.moveaxis(heats, 0, -3)

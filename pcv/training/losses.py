"""The PCV training loss: weighted cross-entropy on both heads.

Legend: B batch, H x W output map (stride 4), C semantic classes, K vote bins.

For each head::

    L = sum_p w_p * CE(logits_p, target_p)  /  max(sum_p w_p, EPS)

over every pixel p of every image of the *global* batch, with ``w_p`` the
per-pixel weight from :func:`pcv.data.targets.make_targets`, set to 0 where the
target is -1 (ignore). Both heads use the same ``weights`` map; the vote head
additionally ignores pixels whose vote target is -1 (crowd, void, thing
pixels whose centroid is outside the voting field), which also leaves them out
of its normaliser. The total is ``sem_weight * L_sem + vote_weight * L_vote``.

Global normalisation: the sums run over the whole ``[B, H, W]`` array. Under
``jax.jit`` with the batch sharded over a ``data`` mesh axis these are global
reductions (XLA adds the all-reduce), so the loss is the same for any number
of devices. An image with many small segments (large weights) counts more
than one with a few large ones, as in a per-batch normalisation; the loss is
not a mean of per-image losses.

Zero weight: a batch whose total weight is 0 (e.g. all void or all crowd)
gives a loss of exactly 0 and zero (finite) gradients, because the normaliser
is clamped to ``EPS``. Real totals are >= 1 with the default weights
(``area ** -0.5`` summed over a segment is ``area ** 0.5``), so the clamp
never changes a real loss.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp

EPS = 1e-6


def weighted_cross_entropy(logits: jax.Array, labels: jax.Array, weights: jax.Array) -> jax.Array:
    """Cross-entropy summed with per-pixel weights, divided by the total weight.

    Args:
      logits: float ``[..., N]`` (any float dtype; computed in float32).
      labels: int ``[...]`` in ``0..N-1``, or -1 to ignore the pixel.
      weights: float ``[...]``, >= 0.
    Returns:
      float32 scalar ``sum(w * nll) / max(sum(w), EPS)`` over all pixels with
      ``label >= 0``.
    """
    if logits.shape[:-1] != labels.shape or labels.shape != weights.shape:
        raise ValueError(
            f"logits {logits.shape} must be labels {labels.shape} + [classes], "
            f"and weights {weights.shape} must match labels"
        )
    logits = logits.astype(jnp.float32)
    valid = labels >= 0
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    safe = jnp.where(valid, labels, 0).astype(jnp.int32)
    nll = -jnp.take_along_axis(log_probs, safe[..., None], axis=-1)[..., 0]
    w = jnp.where(valid, weights.astype(jnp.float32), 0.0)
    # where(), not w * nll: an ignored pixel must not turn a 0 weight into NaN.
    total = jnp.sum(jnp.where(valid, w * nll, 0.0))
    return total / jnp.maximum(jnp.sum(w), EPS)


def pcv_loss(
    outputs: Mapping[str, jax.Array],
    targets: Mapping[str, jax.Array],
    sem_weight: float = 1.0,
    vote_weight: float = 1.0,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The PCV loss of a batch.

    Args:
      outputs: ``semantic`` ``[B, H, W, C]`` and ``votes`` ``[B, H, W, K+1]``
        logits (e.g. from :class:`pcv.models.PCVNet`; bf16 is fine).
      targets: ``semantic`` int ``[B, H, W]`` (-1 ignore), ``votes`` int
        ``[B, H, W]`` in ``0..K`` (-1 ignore), ``weights`` float ``[B, H, W]``.
      sem_weight, vote_weight: the heads' weights in the total.
    Returns:
      ``(total, {"loss": total, "semantic_loss": L_sem, "vote_loss": L_vote})``,
      float32 scalars.
    """
    weights = targets["weights"]
    sem = weighted_cross_entropy(outputs["semantic"], targets["semantic"], weights)
    vote = weighted_cross_entropy(outputs["votes"], targets["votes"], weights)
    total = sem_weight * sem + vote_weight * vote
    return total, {"loss": total, "semantic_loss": sem, "vote_loss": vote}

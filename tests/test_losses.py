"""The PCV loss against a direct numpy computation (the rules in pcv.losses)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pcv.training.losses import EPS, pcv_loss, weighted_cross_entropy


def numpy_wce(logits, labels, weights):
    """Pixel by pixel: -log softmax at the label, weighted, over the total weight."""
    logits = np.asarray(logits, np.float64)
    num = den = 0.0
    for idx in np.ndindex(labels.shape):
        if labels[idx] < 0:
            continue
        z = logits[idx]
        log_prob = z[labels[idx]] - z.max() - np.log(np.exp(z - z.max()).sum())
        num += weights[idx] * -log_prob
        den += weights[idx]
    return num / max(den, EPS)


def random_batch(rng, b=2, h=6, w=5, c=4, k=7):
    outputs = {
        "semantic": rng.normal(0, 3, (b, h, w, c)).astype(np.float32),
        "votes": rng.normal(0, 3, (b, h, w, k + 1)).astype(np.float32),
    }
    semantic = rng.integers(-1, c, (b, h, w))
    votes = rng.integers(-1, k + 1, (b, h, w))
    weights = rng.uniform(0.1, 2.0, (b, h, w)).astype(np.float32)
    weights[semantic < 0] = 0.0  # void pixels carry no weight, as in make_targets
    votes[semantic < 0] = -1
    targets = {"semantic": semantic.astype(np.int32), "votes": votes.astype(np.int32), "weights": weights}
    return outputs, targets


def test_matches_numpy():
    outputs, targets = random_batch(np.random.default_rng(0))
    # Pixels with a weight but no vote target (thing pixel outside the field).
    assert ((targets["votes"] < 0) & (targets["weights"] > 0)).any()
    total, parts = jax.jit(pcv_loss, static_argnums=(2, 3))(outputs, targets, 0.5, 2.0)
    sem = numpy_wce(outputs["semantic"], targets["semantic"], targets["weights"])
    vote = numpy_wce(outputs["votes"], targets["votes"], targets["weights"])
    np.testing.assert_allclose(parts["semantic_loss"], sem, rtol=1e-5)
    np.testing.assert_allclose(parts["vote_loss"], vote, rtol=1e-5)
    np.testing.assert_allclose(total, 0.5 * sem + 2.0 * vote, rtol=1e-5)
    assert parts["loss"] == total
    assert total.dtype == jnp.float32


def test_ignored_pixels_do_not_matter_even_with_weight_or_extreme_logits():
    outputs, targets = random_batch(np.random.default_rng(1))
    loss = jax.jit(pcv_loss)
    _, ref = loss(outputs, targets)
    ignored = targets["votes"] < 0
    votes = outputs["votes"].copy()
    votes[ignored] = np.inf  # would poison a plain w * nll
    _, got = loss({**outputs, "votes": votes}, targets)
    np.testing.assert_allclose(got["vote_loss"], ref["vote_loss"], rtol=1e-6)


def test_normalised_over_the_global_batch_not_per_image():
    rng = np.random.default_rng(2)
    outputs, targets = random_batch(rng, b=2)
    targets["semantic"][:] = rng.integers(0, 4, targets["semantic"].shape)
    weights = np.ones_like(targets["weights"])
    weights[0] *= 100.0  # image 0 holds ~99% of the weight
    weights[1] *= 1.0
    targets["weights"] = weights
    got = float(weighted_cross_entropy(outputs["semantic"], targets["semantic"], weights))
    per_image = [numpy_wce(outputs["semantic"][i], targets["semantic"][i], weights[i]) for i in range(2)]
    glob = numpy_wce(outputs["semantic"], targets["semantic"], weights)
    # Global: a weight-weighted mix dominated by image 0; a mean of per-image
    # losses would be half way between the two.
    np.testing.assert_allclose(got, glob, rtol=1e-5)
    np.testing.assert_allclose(got, (100 * per_image[0] + per_image[1]) / 101, rtol=1e-5)
    assert abs(got - np.mean(per_image)) > 1e-2 * abs(per_image[0] - per_image[1])


def test_same_loss_with_batch_sharded_over_devices():
    outputs, targets = random_batch(np.random.default_rng(3), b=8)
    mesh = jax.sharding.Mesh(np.array(jax.devices()), ("data",))
    shard = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
    sharded = jax.device_put((outputs, targets), shard)
    total, _ = jax.jit(pcv_loss)(*sharded)
    ref, _ = jax.jit(pcv_loss)(outputs, targets)
    np.testing.assert_allclose(total, ref, rtol=1e-5)


def test_bf16_logits_computed_in_float32():
    outputs, targets = random_batch(np.random.default_rng(4))
    bf16 = jax.tree.map(lambda x: jnp.asarray(x, jnp.bfloat16), outputs)
    total, parts = pcv_loss(bf16, targets)
    assert total.dtype == jnp.float32
    # Exactly the float32 loss of the bf16-rounded logits.
    rounded = jax.tree.map(lambda x: np.asarray(x, np.float32), bf16)
    ref = numpy_wce(rounded["votes"], targets["votes"], targets["weights"])
    np.testing.assert_allclose(parts["vote_loss"], ref, rtol=1e-5)


def test_zero_total_weight_gives_zero_loss_and_finite_gradient():
    outputs, targets = random_batch(np.random.default_rng(5))
    targets["weights"][:] = 0.0

    def loss(outs):
        return pcv_loss(outs, targets)[0]

    value, grads = jax.jit(jax.value_and_grad(loss))(outputs)
    assert value == 0.0
    for g in jax.tree.leaves(grads):
        assert np.isfinite(g).all() and not np.any(g)


def test_all_ignored_gives_zero_loss():
    outputs, targets = random_batch(np.random.default_rng(6))
    targets["semantic"][:] = -1
    targets["votes"][:] = -1
    total, parts = pcv_loss(outputs, targets)
    assert total == 0.0 and parts["semantic_loss"] == 0.0


def test_gradient_matches_softmax_minus_onehot():
    rng = np.random.default_rng(7)
    logits = rng.normal(size=(1, 2, 3, 5)).astype(np.float32)
    labels = rng.integers(-1, 5, (1, 2, 3)).astype(np.int32)
    weights = rng.uniform(0.5, 1.5, (1, 2, 3)).astype(np.float32)
    g = jax.jit(jax.grad(weighted_cross_entropy))(logits, labels, weights)
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    valid = labels >= 0
    onehot = np.eye(5)[np.maximum(labels, 0)]
    expect = (weights * valid)[..., None] * (p - onehot) / (weights * valid).sum()
    np.testing.assert_allclose(g, expect, rtol=1e-5, atol=1e-7)


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="weights"):
        weighted_cross_entropy(jnp.zeros((2, 4, 4, 3)), jnp.zeros((2, 4, 4), jnp.int32), jnp.zeros((2, 4, 5)))

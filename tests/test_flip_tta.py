"""Horizontal-flip test-time augmentation (pcv.inference.flip_tta, mirror_outputs)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pcv.config import InferenceConfig
from pcv.inference.postprocess import flip_tta, mean_probs_log, mirror_outputs, panoptic_inference
from pcv.voting import VoteGrid, aggregate_votes

GRID = VoteGrid(((1, 1), (3, 1)))  # K = 17
K = GRID.num_bins
C = 4
THING_MASK = (True, True, False, False)
CONFIG = InferenceConfig(threshold=0.5, max_instances=16, min_stuff_area=0)


def toy_network(seed=0):
    """A random 3x3 conv + nonlinearity: deliberately *not* flip-equivariant."""
    k1, k2 = jax.random.split(jax.random.key(seed))
    kernel = jax.random.normal(k1, (3, 3, 3, C + K + 1)) * 2.0
    bias = jax.random.normal(k2, (C + K + 1,))

    def apply(images):
        y = jax.lax.conv_general_dilated(images, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
        y = jnp.tanh(y + bias) * 4.0
        return {"semantic": y[..., :C], "votes": y[..., C:]}

    return apply


def images(batch=2, h=20, w=28, seed=1):
    return jax.random.uniform(jax.random.key(seed), (batch, h, w, 3), minval=-1.0, maxval=1.0)


def same_partition(a, b):
    """True if integer maps a and b split the pixels into the same regions (labels may differ)."""
    a, b = np.asarray(a).ravel(), np.asarray(b).ravel()
    pairs = np.unique(np.stack([a, b]), axis=1)
    return pairs.shape[1] == len(np.unique(a)) == len(np.unique(b))


def test_mirror_outputs_moves_each_vote_to_the_mirrored_cell():
    h, w = 9, 11
    votes = np.full((h, w, K + 1), -10.0, np.float32)
    y, x, k = 4, 2, 5
    votes[y, x, k] = 10.0
    votes[1, 7, K] = 10.0  # an abstaining pixel stays abstain
    out = np.asarray(mirror_outputs({"semantic": np.zeros((h, w, C)), "votes": votes}, GRID)["votes"])
    j = int(np.argmax(out[y, w - 1 - x]))
    np.testing.assert_array_equal(GRID.centers[j], GRID.centers[k] * np.array([1, -1]))
    assert np.argmax(out[1, w - 1 - 7]) == K
    # Re-indexing only, and its own inverse.
    assert sorted(out.ravel().tolist()) == sorted(votes.ravel().tolist())
    back = mirror_outputs({"semantic": np.zeros((h, w, C)), "votes": out}, GRID)["votes"]
    np.testing.assert_array_equal(np.asarray(back), votes)


def test_mirrored_probabilities_give_the_mirrored_heatmap():
    probs = jax.nn.softmax(jax.random.normal(jax.random.key(3), (12, 15, K + 1)) * 3, -1)
    mirrored = mirror_outputs({"semantic": jnp.zeros((12, 15, C)), "votes": probs}, GRID)["votes"]
    heat = aggregate_votes(probs[..., :K], GRID)
    heat_of_mirror = aggregate_votes(mirrored[..., :K], GRID)
    np.testing.assert_allclose(np.asarray(heat_of_mirror), np.asarray(heat)[:, ::-1], rtol=1e-5, atol=1e-6)


def test_mean_probs_log_is_the_log_of_the_mean_probability():
    a = jax.nn.log_softmax(jax.random.normal(jax.random.key(4), (5, 7)), -1)
    b = jax.nn.log_softmax(jax.random.normal(jax.random.key(5), (5, 7)), -1)
    got = np.exp(np.asarray(mean_probs_log(a, b)))
    np.testing.assert_allclose(got, (np.exp(a) + np.exp(b)) / 2, rtol=1e-6)
    np.testing.assert_allclose(got.sum(-1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(mean_probs_log(a, b)), np.asarray(mean_probs_log(b, a)))


def test_tta_of_the_mirrored_image_is_the_mirrored_tta():
    net = toy_network()
    x = images()
    tta = jax.jit(lambda im: flip_tta(net, im, GRID))
    plain = tta(x)
    of_mirror = tta(jnp.flip(x, axis=2))
    expected = mirror_outputs(plain, GRID)
    for key in ("semantic", "votes"):  # bit for bit
        np.testing.assert_array_equal(np.asarray(of_mirror[key]), np.asarray(expected[key]))

    # ... and so is the panoptic map.
    r = jax.device_get(panoptic_inference(plain["semantic"], plain["votes"], GRID, THING_MASK, CONFIG))
    rm = jax.device_get(panoptic_inference(of_mirror["semantic"], of_mirror["votes"], GRID, THING_MASK, CONFIG))
    assert r["instance_valid"].sum() >= 2, "the toy should produce instances for this test to mean anything"
    np.testing.assert_array_equal(rm["semantic"], r["semantic"][:, :, ::-1])
    # The heatmap sums the same votes in mirrored order: equal up to float rounding.
    np.testing.assert_allclose(rm["heatmap"], r["heatmap"][:, :, ::-1], rtol=1e-6, atol=1e-6)
    for b in range(x.shape[0]):
        assert same_partition(rm["instance"][b], r["instance"][b][:, ::-1])
    np.testing.assert_array_equal(np.sort(rm["instance_class"]), np.sort(r["instance_class"]))


def test_tta_of_a_flip_equivariant_network_is_its_plain_prediction():
    h = toy_network(seed=7)

    def equivariant(images):
        # v(x) = h(x) + M h(F x): mirroring the input mirrors the output.
        a, b = h(images), mirror_outputs(h(jnp.flip(images, axis=2)), GRID)
        return {k: a[k] + b[k] for k in a}

    x = images(seed=2)
    out = equivariant(x)
    np.testing.assert_allclose(  # the toy is what it claims to be
        np.asarray(equivariant(jnp.flip(x, axis=2))["votes"]),
        np.asarray(mirror_outputs(out, GRID)["votes"]),
        rtol=1e-5,
        atol=1e-5,
    )
    tta = flip_tta(equivariant, x, GRID)
    for key in ("semantic", "votes"):
        np.testing.assert_allclose(
            np.asarray(tta[key]), np.asarray(jax.nn.log_softmax(out[key], -1)), rtol=1e-5, atol=1e-5
        )
    r = jax.device_get(panoptic_inference(out["semantic"], out["votes"], GRID, THING_MASK, CONFIG))
    rt = jax.device_get(panoptic_inference(tta["semantic"], tta["votes"], GRID, THING_MASK, CONFIG))
    assert r["instance_valid"].sum() >= 1
    np.testing.assert_array_equal(rt["semantic"], r["semantic"])
    np.testing.assert_array_equal(rt["instance"], r["instance"])


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match=r"\[B, H, W, 3\]"):
        flip_tta(toy_network(), jnp.zeros((8, 8, 3)), GRID)
    with pytest.raises(ValueError, match="K \\+ 1 = 18"):
        mirror_outputs({"semantic": jnp.zeros((4, 4, C)), "votes": jnp.zeros((4, 4, K))}, GRID)

"""Aggregation: fast and paper formulations against a slow loop; transforms; gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from pcv.voting import DEFAULT_GRID, SMALL_GRID, VoteGrid, aggregate_votes, aggregate_votes_by_class

GRIDS = [SMALL_GRID, VoteGrid(((3, 1), (9, 1))), VoteGrid(((1, 2), (5, 1)))]


def loop_heatmap(probs, grid):
    """The definition, pixel by pixel: spread each vote over its cell, drop cells centred outside."""
    h, w, k = probs.shape
    heat = np.zeros((h, w), np.float64)
    for y in range(h):
        for x in range(w):
            for b in range(k):
                cy, cx = y + grid.centers[b, 0], x + grid.centers[b, 1]
                if not (0 <= cy < h and 0 <= cx < w):
                    continue
                r = grid.half_sizes[b]
                heat[max(0, cy - r) : cy + r + 1, max(0, cx - r) : cx + r + 1] += probs[y, x, b] / grid.sizes[b] ** 2
    return heat


@pytest.mark.parametrize("grid", GRIDS, ids=str)
@pytest.mark.parametrize("hw", [(9, 9), (4, 6), (13, 7), (30, 17)])
def test_both_formulations_match_the_loop(grid, hw):
    rng = np.random.default_rng(hash((grid.spec, hw)) % 2**32)
    probs = rng.random(hw + (grid.num_bins,)).astype(np.float32)
    ref = loop_heatmap(probs, grid)
    for method in ("shift", "conv"):
        out = np.asarray(aggregate_votes(probs, grid, method=method))
        np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5, err_msg=method)


def test_default_grid_formulations_agree_and_match_loop_on_a_small_image():
    rng = np.random.default_rng(1)
    probs = rng.random((2, 11, 19, DEFAULT_GRID.num_bins)).astype(np.float32)
    fast = np.asarray(aggregate_votes(probs, DEFAULT_GRID))
    paper = np.asarray(aggregate_votes(probs, DEFAULT_GRID, method="conv"))
    np.testing.assert_allclose(fast, paper, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(fast[1], loop_heatmap(probs[1], DEFAULT_GRID), rtol=1e-5, atol=1e-4)


def test_border_rules_single_vote():
    """A vote whose cell centre is outside is dropped whole; one inside is cropped."""
    g = SMALL_GRID
    probs = np.zeros((5, 5, g.num_bins), np.float32)
    probs[4, 4, 9] = 1.0  # bin 9: centre (+3, +3) -> (7, 7), outside: dropped
    probs[1, 1, 9] = 1.0  # centre (4, 4), 3x3 cell cropped to the single pixel (4, 4)
    for method in ("shift", "conv"):
        heat = np.asarray(aggregate_votes(probs, g, method=method))
        expected = np.zeros((5, 5))
        expected[3:5, 3:5] = 1 / 9
        np.testing.assert_allclose(heat, expected, atol=1e-7)


def test_mass_is_conserved_away_from_borders():
    g = SMALL_GRID
    probs = np.zeros((21, 21, g.num_bins), np.float32)
    probs[10, 10] = np.random.default_rng(0).random(g.num_bins)
    heat = aggregate_votes(probs, g)
    np.testing.assert_allclose(float(heat.sum()), probs.sum(), rtol=1e-6)


def test_gradients_agree_between_formulations():
    g = VoteGrid(((1, 1), (3, 1), (9, 1)))
    rng = np.random.default_rng(2)
    probs = jnp.asarray(rng.random((2, 12, 15, g.num_bins)), jnp.float32)
    weights = jnp.asarray(rng.random((2, 12, 15)), jnp.float32)
    grads = [
        jax.grad(lambda p, m=m: (aggregate_votes(p, g, method=m) * weights).sum())(probs) for m in ("shift", "conv")
    ]
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-5, atol=1e-5)
    # Linear map: the gradient at a pixel and bin is the weight summed over its (cropped) cell / s^2.
    y, x, k = 3, 4, 2  # bin 2 of this grid: centre (0, +1), size 1
    assert np.isclose(grads[0][0, y, x, k], weights[0, y, x + 1], rtol=1e-6)


def test_transforms_give_the_same_numbers():
    g = SMALL_GRID
    rng = np.random.default_rng(3)
    probs = jnp.asarray(rng.random((8, 10, 12, g.num_bins)), jnp.float32)
    ref = np.asarray(aggregate_votes(probs, g))
    jitted = jax.jit(aggregate_votes, static_argnums=1, static_argnames="method")
    np.testing.assert_allclose(jitted(probs, g), ref, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(jitted(probs, g, method="conv"), ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(jax.vmap(lambda p: aggregate_votes(p, g))(probs), ref, rtol=1e-6, atol=1e-6)
    assert jax.device_count() == 8, "conftest should fake 8 devices"
    np.testing.assert_allclose(jax.pmap(lambda p: aggregate_votes(p, g))(probs), ref, rtol=1e-6, atol=1e-6)
    mesh = Mesh(np.array(jax.devices()), ("data",))
    sharded = jax.device_put(probs, NamedSharding(mesh, P("data")))
    smap = jax.jit(jax.shard_map(lambda p: aggregate_votes(p, g), mesh=mesh, in_specs=P("data"), out_specs=P("data")))
    out = smap(sharded)
    assert out.sharding.spec == P("data")
    np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-6)
    # Plain jit on a sharded global array (the trainer's way) keeps the numbers too.
    np.testing.assert_allclose(jitted(sharded, g), ref, rtol=1e-6, atol=1e-6)


def test_leading_axes_and_dtype():
    g = SMALL_GRID
    probs = np.random.default_rng(4).random((2, 3, 6, 7, g.num_bins)).astype(np.float32)
    out = aggregate_votes(probs, g)
    assert out.shape == (2, 3, 6, 7)
    np.testing.assert_allclose(out[1, 2], aggregate_votes(probs[1, 2], g), rtol=1e-6)
    assert aggregate_votes(probs.astype(jnp.bfloat16), g).dtype == jnp.bfloat16


def test_by_class_voting_separates_categories():
    g = SMALL_GRID
    rng = np.random.default_rng(5)
    probs = rng.random((2, 8, 9, g.num_bins)).astype(np.float32)
    labels = rng.integers(0, 4, (2, 8, 9))
    heats = aggregate_votes_by_class(probs, labels, [1, 3], g)
    assert heats.shape == (2, 2, 8, 9)
    for i, c in enumerate([1, 3]):
        masked = np.where((labels == c)[..., None], probs, 0)
        np.testing.assert_allclose(heats[:, i], aggregate_votes(masked, g), rtol=1e-6, atol=1e-6)
    # Classes 0 and 2 (not voted for) plus classes 1 and 3 add up to the joint heatmap.
    all_heats = aggregate_votes_by_class(probs, labels, [0, 1, 2, 3], g)
    np.testing.assert_allclose(all_heats.sum(-3), aggregate_votes(probs, g), rtol=1e-5, atol=1e-5)


def test_bad_inputs():
    with pytest.raises(ValueError, match="K=17"):
        aggregate_votes(np.zeros((4, 4, 18), np.float32), SMALL_GRID)
    with pytest.raises(ValueError, match="H, W, K"):
        aggregate_votes(np.zeros((4, 17), np.float32), SMALL_GRID)
    with pytest.raises(ValueError, match="method"):
        aggregate_votes(np.zeros((4, 4, 17), np.float32), SMALL_GRID, method="fft")

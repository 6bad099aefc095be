"""Backprojection against a direct query-filter loop."""

import jax
import numpy as np
import pytest

from pcv.voting import DEFAULT_GRID, SMALL_GRID, VoteGrid, backproject


def query_filter_loop(vote_bins, boxes, grid):
    """For every pixel and box: does some centre c in the box have query_mask[R + p - c] == bin?"""
    h, w, t = vote_bins.shape
    r = grid.radius
    out = np.full((len(boxes), h, w), -1)
    for n, (y0, x0, y1, x1) in enumerate(boxes):
        for y in range(h):
            for x in range(w):
                for rank in range(t):
                    b = vote_bins[y, x, rank]
                    if b < 0:
                        continue
                    window = grid.query_mask[
                        max(0, r + y - y1) : max(0, r + y - y0 + 1), max(0, r + x - x1) : max(0, r + x - x0 + 1)
                    ]
                    if (window == b).any():
                        out[n, y, x] = rank
                        break
    return out


def random_boxes(rng, n, h, w):
    y = np.sort(rng.integers(0, h, (n, 2)), 1)
    x = np.sort(rng.integers(0, w, (n, 2)), 1)
    return np.stack([y[:, 0], x[:, 0], y[:, 1], x[:, 1]], 1)


@pytest.mark.parametrize("grid", [SMALL_GRID, VoteGrid(((1, 1), (3, 1), (9, 1)))], ids=str)
@pytest.mark.parametrize("t", [1, 3])
def test_matches_query_filter_loop(grid, t):
    rng = np.random.default_rng(t)
    h, w = 14, 19
    bins = rng.integers(-1, grid.num_bins, (h, w, t))  # -1: abstain
    boxes = random_boxes(rng, 6, h, w)
    boxes[0] = [5, 5, 5, 5]  # a single-pixel peak region
    out = np.asarray(backproject(bins, boxes, grid))
    np.testing.assert_array_equal(out, query_filter_loop(bins, boxes, grid))


def test_top1_accepts_2d_bins_and_jit():
    rng = np.random.default_rng(0)
    bins = rng.integers(-1, DEFAULT_GRID.num_bins, (30, 40))
    boxes = random_boxes(rng, 4, 30, 40)
    out = jax.jit(backproject, static_argnums=2)(bins, boxes, DEFAULT_GRID)
    assert out.shape == (4, 30, 40) and out.dtype == np.int32
    np.testing.assert_array_equal(out, query_filter_loop(bins[..., None], boxes, DEFAULT_GRID))


def test_perfect_votes_recover_the_instance():
    """Every pixel of a blob voting for its centroid backprojects onto the centroid's box."""
    g = SMALL_GRID
    h, w = 12, 12
    ys, xs = np.mgrid[:h, :w]
    blob = (np.abs(ys - 6) <= 3) & (np.abs(xs - 5) <= 2)
    bins = np.where(blob, g.bin_of_offset(np.stack([6 - ys, 5 - xs], -1)), -1)
    out = np.asarray(backproject(bins, np.array([[6, 5, 6, 5]]), g))[0]
    np.testing.assert_array_equal(out >= 0, blob)


def test_bad_shapes():
    with pytest.raises(ValueError, match="boxes"):
        backproject(np.zeros((4, 4), int), np.zeros((3,), int), SMALL_GRID)
    with pytest.raises(ValueError, match="vote_bins"):
        backproject(np.zeros((4,), int), np.zeros((1, 4), int), SMALL_GRID)

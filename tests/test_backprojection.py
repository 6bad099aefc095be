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


def test_query_ranks_at_fractional_positions():
    from pcv.voting import query_ranks

    rng = np.random.default_rng(5)
    grid = SMALL_GRID
    h, w, t = 9, 11, 2
    bins = rng.integers(-1, grid.num_bins, (h, w, t))
    boxes = random_boxes(rng, 4, h, w)
    # At 3x, output pixel 3q + 1 sits exactly on map pixel q: the map's answer there.
    fine_bins = np.repeat(np.repeat(bins, 3, 0), 3, 1)
    ys, xs = (np.arange(3 * h) + 0.5) / 3 - 0.5, (np.arange(3 * w) + 0.5) / 3 - 0.5
    fine = np.asarray(query_ranks(fine_bins, ys.astype(np.float32), xs.astype(np.float32), boxes, grid))
    np.testing.assert_array_equal(fine[:, 1::3, 1::3], np.asarray(backproject(bins, boxes, grid)))
    # By hand, at 4x: a pixel voting its own cell (bin 0, one map pixel wide)
    # joins the one-pixel box at map (5, 5) while its cell, centred at
    # u = i / 4 - 3 / 8, overlaps [4.5, 5.5]: 4 < u < 6, output rows 18-25.
    u = ((np.arange(48) + 0.5) / 4 - 0.5).astype(np.float32)
    own = np.zeros((48, 48, 1), np.int32)
    ranks = np.asarray(query_ranks(own, u, u, np.array([[5, 5, 5, 5]]), grid))[0]
    inside = np.zeros((48, 48), bool)
    inside[18:26, 18:26] = True
    np.testing.assert_array_equal(ranks == 0, inside)

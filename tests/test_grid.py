"""Grid geometry: the K = 17 table of the paper's construction, tiling, query mask, bin_of_offset."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pcv.voting import DEFAULT_GRID, SMALL_GRID, VoteGrid

K17_TABLE = np.array(
    [
        [13, 13, 13, 12, 12, 12, 11, 11, 11],
        [13, 13, 13, 12, 12, 12, 11, 11, 11],
        [13, 13, 13, 12, 12, 12, 11, 11, 11],
        [14, 14, 14, 5, 4, 3, 10, 10, 10],
        [14, 14, 14, 6, 0, 2, 10, 10, 10],
        [14, 14, 14, 7, 8, 1, 10, 10, 10],
        [15, 15, 15, 16, 16, 16, 9, 9, 9],
        [15, 15, 15, 16, 16, 16, 9, 9, 9],
        [15, 15, 15, 16, 16, 16, 9, 9, 9],
    ]
)


def test_small_grid_matches_design_table():
    assert SMALL_GRID.num_bins == 17
    assert SMALL_GRID.diameter == 9
    np.testing.assert_array_equal(SMALL_GRID.vote_mask, K17_TABLE)


def test_default_grid_size():
    assert DEFAULT_GRID.num_bins == 233
    assert DEFAULT_GRID.diameter == 243
    assert DEFAULT_GRID.cell_sizes == (1, 3, 9, 27)


@st.composite
def specs(draw):
    """Random valid specs: each ring size must divide the diameter it wraps."""
    first = draw(st.sampled_from([1, 3, 5]))
    spec = [(first, draw(st.integers(1, 3)))]
    d = first + 2 * first * spec[0][1]
    for _ in range(draw(st.integers(0, 2))):
        options = [s for s in (1, 3, 5, 7, 9, 15) if d % s == 0]
        size = draw(st.sampled_from(options))
        rounds = draw(st.integers(1, 2))
        spec.append((size, rounds))
        d += 2 * size * rounds
    return tuple(spec)


@settings(max_examples=40, deadline=None)
@given(specs())
def test_geometry_properties(spec):
    g = VoteGrid(spec)
    d, r = g.diameter, g.radius
    # Every field pixel is in exactly one bin, and each bin is its square cell.
    counts = np.bincount(g.vote_mask.ravel(), minlength=g.num_bins)
    np.testing.assert_array_equal(counts, g.sizes**2)
    for k in range(g.num_bins):
        (ys, xs) = np.nonzero(g.vote_mask == k)
        cy, cx = g.centers[k]
        h = g.half_sizes[k]
        assert ys.min() - r == cy - h and ys.max() - r == cy + h
        assert xs.min() - r == cx - h and xs.max() - r == cx + h
    # The query mask is the vote mask rotated by 180 degrees.
    np.testing.assert_array_equal(g.query_mask, np.rot90(g.vote_mask, 2))
    # bin_of_offset round-trips with cell geometry: every offset of a cell maps to its bin.
    offsets = np.stack(np.meshgrid(np.arange(-r - 2, r + 3), np.arange(-r - 2, r + 3), indexing="ij"), -1)
    bins = g.bin_of_offset(offsets)
    inside = (np.abs(offsets) <= r).all(-1)
    assert (bins[~inside] == -1).all()
    c = g.centers[bins[inside]]
    assert (np.abs(offsets[inside] - c).max(-1) <= g.half_sizes[bins[inside]]).all()
    np.testing.assert_array_equal(g.bin_of_offset(g.centers), np.arange(g.num_bins))
    # Mirror permutation is an involution that mirrors centres.
    perm = g.mirror_permutation()
    np.testing.assert_array_equal(perm[perm], np.arange(g.num_bins))
    np.testing.assert_array_equal(g.centers[perm], g.centers * [1, -1])
    assert d == 2 * r + 1


def test_ring_order_starts_south_east_and_walks_counter_clockwise():
    c = SMALL_GRID.centers
    np.testing.assert_array_equal(c[1:9], [[1, 1], [0, 1], [-1, 1], [-1, 0], [-1, -1], [0, -1], [1, -1], [1, 0]])
    np.testing.assert_array_equal(c[9], [3, 3])
    np.testing.assert_array_equal(c[11], [-3, 3])


@pytest.mark.parametrize(
    "spec, message",
    [
        ((), "empty"),
        (((2, 1),), "odd"),
        (((0, 1),), "positive"),
        (((-3, 1),), "positive"),
        (((1, 0),), "rounds"),
        (((1, 1), (3, 1), (5, 1)), "divisible"),
        (((1, 1), (3,)), "pair"),
        (((1.0, 1),), "integers"),
        ("abc", "pair"),
    ],
)
def test_invalid_specs_name_the_entry(spec, message):
    with pytest.raises(ValueError, match=message):
        VoteGrid(spec)


def test_bin_of_offset_rejects_bad_shapes():
    with pytest.raises(ValueError, match="shape"):
        SMALL_GRID.bin_of_offset(np.zeros((3, 3), int))
    with pytest.raises(ValueError, match="integers"):
        SMALL_GRID.bin_of_offset(np.zeros((3, 2), float))

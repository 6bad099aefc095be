"""The voting grid (the paper's "voting filter").

A grid spec is a sequence of ``(cell_size, rounds)`` pairs. Construction
starts with one central cell of the first size (bin 0); each round wraps one
more square ring of cells of the current size around everything built so
far, growing the field diameter ``d`` to ``d + 2 * size``. A ring of a given
size may only start where ``d`` is divisible by that size.

Bins inside a ring are numbered from the south-east corner cell, north up
the east side, west along the north side, south down the west side and east
along the south side, stopping just before the south-east corner. Rings are
numbered in the order they are added. (Image convention: y grows downwards.)

Offsets are ``(dy, dx)`` = (centroid - pixel) in feature-map pixels. For a
field of diameter ``D = 2R + 1``, ``vote_mask[R + dy, R + dx]`` is the bin of
that offset and ``query_mask`` is the vote mask rotated by 180 degrees.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

Spec = tuple[tuple[int, int], ...]

#: The paper's grid: K = 233 bins on a 243 x 243 field.
DEFAULT_SPEC: Spec = ((1, 1), (3, 4), (9, 3), (27, 3))
#: The small teaching grid: K = 17 bins on a 9 x 9 field.
SMALL_SPEC: Spec = ((1, 1), (3, 1))


def _validate_spec(spec) -> Spec:
    try:
        pairs = [tuple(p) for p in spec]
    except TypeError as e:
        raise ValueError(f"grid spec must be a sequence of (cell_size, rounds) pairs, got {spec!r}") from e
    if not pairs:
        raise ValueError("grid spec is empty: give at least one (cell_size, rounds) pair")
    out = []
    diameter = None
    for i, pair in enumerate(pairs):
        if len(pair) != 2:
            raise ValueError(f"grid spec entry {i} is {pair!r}: expected a (cell_size, rounds) pair")
        size, rounds = pair
        if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in pair):
            raise ValueError(f"grid spec entry {i} is {pair!r}: cell_size and rounds must be integers")
        size, rounds = int(size), int(rounds)
        if size < 1:
            raise ValueError(f"grid spec entry {i}: cell_size {size} must be positive")
        if size % 2 == 0:
            raise ValueError(f"grid spec entry {i}: cell_size {size} must be odd so cells have a centre pixel")
        if rounds < 1:
            raise ValueError(f"grid spec entry {i}: rounds {rounds} must be >= 1")
        if diameter is None:
            diameter = size  # the central cell
        if diameter % size:
            raise ValueError(
                f"grid spec entry {i}: a ring of cell_size {size} cannot wrap a field of "
                f"diameter {diameter}; the diameter must be divisible by the cell size"
            )
        diameter += 2 * size * rounds
        out.append((size, rounds))
    return tuple(out)


def _ring_cells(m: int) -> list[tuple[int, int]]:
    """Cell positions (in cell units) of the ring at Chebyshev radius m, in bin order."""
    cells = [(m, m)]  # south-east corner
    cells += [(i, m) for i in range(m - 1, -m - 1, -1)]  # north up the east side
    cells += [(-m, j) for j in range(m - 1, -m - 1, -1)]  # west along the north side
    cells += [(i, -m) for i in range(-m + 1, m + 1)]  # south down the west side
    cells += [(m, j) for j in range(-m + 1, m)]  # east along the south side
    return cells


@dataclass(frozen=True, eq=False)
class VoteGrid:
    """Geometry of a voting grid; all arrays are numpy (usable as jit constants).

    Attributes:
      spec: the validated spec.
      num_bins: K.
      diameter: D, the field's side in pixels (odd); ``radius`` R = (D - 1) / 2.
      vote_mask: int32 ``[D, D]``, bin of offset (dy, dx) at ``[R + dy, R + dx]``.
      query_mask: int32 ``[D, D]``, the vote mask rotated by 180 degrees.
      centers: int32 ``[K, 2]``, cell centre offsets ``c_k = (cy, cx)``.
      sizes: int32 ``[K]``, odd cell sides ``s_k``.
      half_sizes: int32 ``[K]``, ``r_k = (s_k - 1) / 2``.
      levels: int32 ``[K]``, the ring level (spec entry) of each bin; the
        central bin belongs to level 0.
    """

    spec: Spec
    num_bins: int
    diameter: int
    vote_mask: np.ndarray
    query_mask: np.ndarray
    centers: np.ndarray
    sizes: np.ndarray
    levels: np.ndarray

    def __init__(self, spec: Sequence[Sequence[int]] = DEFAULT_SPEC):
        spec = _validate_spec(spec)
        centers = [(0, 0)]
        sizes = [spec[0][0]]
        levels = [0]
        diameter = spec[0][0]
        for level, (size, rounds) in enumerate(spec):
            for _ in range(rounds):
                m = (diameter // size + 1) // 2  # new ring's radius in cell units
                for cy, cx in _ring_cells(m):
                    centers.append((cy * size, cx * size))
                    sizes.append(size)
                    levels.append(level)
                diameter += 2 * size
        set_ = object.__setattr__
        set_(self, "spec", spec)
        set_(self, "num_bins", len(centers))
        set_(self, "diameter", diameter)
        set_(self, "centers", np.asarray(centers, np.int32))
        set_(self, "sizes", np.asarray(sizes, np.int32))
        set_(self, "levels", np.asarray(levels, np.int32))
        r = diameter // 2
        mask = np.full((diameter, diameter), -1, np.int32)
        for k, ((cy, cx), s) in enumerate(zip(centers, sizes)):
            h = s // 2
            cell = mask[r + cy - h : r + cy + h + 1, r + cx - h : r + cx + h + 1]
            assert (cell == -1).all(), "cells overlap: construction bug"
            cell[...] = k
        assert (mask >= 0).all(), "field not tiled: construction bug"
        mask.setflags(write=False)
        query = np.ascontiguousarray(mask[::-1, ::-1])
        query.setflags(write=False)
        for a in (self.centers, self.sizes, self.levels):
            a.setflags(write=False)
        set_(self, "vote_mask", mask)
        set_(self, "query_mask", query)

    @property
    def radius(self) -> int:
        return self.diameter // 2

    @property
    def half_sizes(self) -> np.ndarray:
        return self.sizes // 2

    @property
    def cell_sizes(self) -> tuple[int, ...]:
        """The distinct cell sizes, ascending."""
        return tuple(int(s) for s in np.unique(self.sizes))

    def bin_of_offset(self, offsets) -> np.ndarray:
        """Bins of integer offsets ``(dy, dx)`` (centroid - pixel); -1 outside the field.

        Args:
          offsets: int array ``[..., 2]``.
        Returns:
          int32 ``[...]``.
        """
        offsets = np.asarray(offsets)
        if offsets.shape[-1:] != (2,):
            raise ValueError(f"offsets must have shape [..., 2] of (dy, dx), got {offsets.shape}")
        if not np.issubdtype(offsets.dtype, np.integer):
            raise ValueError(f"offsets must be integers, got dtype {offsets.dtype}")
        r = self.radius
        dy, dx = offsets[..., 0].astype(np.int64), offsets[..., 1].astype(np.int64)
        inside = (np.abs(dy) <= r) & (np.abs(dx) <= r)
        bins = self.vote_mask[np.where(inside, dy + r, 0), np.where(inside, dx + r, 0)]
        return np.where(inside, bins, -1).astype(np.int32)

    def mirror_permutation(self) -> np.ndarray:
        """``perm[k]``: the bin of bin k's cell mirrored left-right (dx -> -dx).

        Used to flip vote logits consistently with a horizontally flipped image.
        """
        return self.bin_of_offset(self.centers * np.array([1, -1], np.int32))

    def __repr__(self) -> str:
        return f"VoteGrid(spec={self.spec}, num_bins={self.num_bins}, diameter={self.diameter})"

    def __eq__(self, other) -> bool:
        return isinstance(other, VoteGrid) and other.spec == self.spec

    def __hash__(self) -> int:
        return hash(self.spec)


DEFAULT_GRID = VoteGrid(DEFAULT_SPEC)
SMALL_GRID = VoteGrid(SMALL_SPEC)

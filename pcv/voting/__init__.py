"""pcv.voting: the PCV voting library (grid, aggregation, backprojection).

Pure JAX/numpy; usable as a layer library by other projects::

    from pcv.voting import DEFAULT_GRID, aggregate_votes, backproject
    heat = aggregate_votes(probs, DEFAULT_GRID)          # [..., H, W, K] -> [..., H, W]
    ranks = backproject(vote_bins, boxes, DEFAULT_GRID)  # [N, H, W], -1 = not a member
"""

from pcv.voting.aggregation import METHODS, aggregate_votes, aggregate_votes_by_class
from pcv.voting.backprojection import backproject, cell_bounds, query_ranks, ranks_in
from pcv.voting.grid import DEFAULT_GRID, DEFAULT_SPEC, SMALL_GRID, SMALL_SPEC, VoteGrid

__all__ = [
    "DEFAULT_GRID",
    "DEFAULT_SPEC",
    "METHODS",
    "SMALL_GRID",
    "SMALL_SPEC",
    "VoteGrid",
    "aggregate_votes",
    "aggregate_votes_by_class",
    "backproject",
    "cell_bounds",
    "query_ranks",
    "ranks_in",
]

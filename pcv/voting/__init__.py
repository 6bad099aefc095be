"""pcv.voting: the PCV voting library (grid, aggregation, backprojection).

Pure JAX/numpy; usable as a layer library by other projects::

    from pcv.voting import DEFAULT_GRID, aggregate_votes, backproject
    heat = aggregate_votes(probs, DEFAULT_GRID)          # [..., H, W, K] -> [..., H, W]
    ranks = backproject(vote_bins, boxes, DEFAULT_GRID)  # [N, H, W], -1 = not a member
"""

from pcv import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "DEFAULT_GRID": "grid",
        "DEFAULT_SPEC": "grid",
        "SMALL_GRID": "grid",
        "SMALL_SPEC": "grid",
        "VoteGrid": "grid",
        "METHODS": "aggregation",
        "aggregate_votes": "aggregation",
        "aggregate_votes_by_class": "aggregation",
        "backproject": "backprojection",
        "cell_bounds": "backprojection",
        "query_ranks": "backprojection",
        "ranks_in": "backprojection",
    },
)

"""What the :class:`~pcv.evaluation.evaluator.Evaluator` feeds: the :class:`Metric` protocol and its :class:`Item`.

A metric is reset for a run, given batches of this host's scored images,
combined across hosts, and asked for its result: a dict whose entries join
the run's result. The shipped metrics are in :mod:`pcv.evaluation.metrics`
and :mod:`pcv.evaluation.report`; one of your own is a subclass of
:class:`Metric` passed in ``Evaluator(metrics=[...])``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from pcv.inference.predictor import Predictor
from pcv.inference.segments import Prediction


@dataclasses.dataclass(frozen=True)
class Item:
    """One evaluated image: its position in the split, its ground truth (a pcv example) and the answer."""

    index: int
    example: Mapping
    prediction: Prediction


@dataclasses.dataclass(frozen=True)
class Run:
    """What a metric may need to know of the run it is reset for."""

    dataset: Any
    split: str
    count: int  # images evaluated: the first ``count`` of the split
    predictor: Predictor


class Metric:
    """Something the :class:`Evaluator` measures or writes. Subclass it; the Evaluator calls, in order:

    - :meth:`reset` once per run, with the :class:`Run`;
    - :meth:`add` for every batch of this host's images (a list of :class:`Item`);
    - :meth:`combine` once, on every host at the same point (it may use the
      host collectives of :mod:`pcv.runtime.distributed`);
    - :meth:`result`: a dict whose entries join the run's result. Keys must
      not collide with another metric's, except ``"files"``, where writers
      name what they wrote (the entries are merged).
    """

    def reset(self, run: Run) -> None:
        """Forget the previous run."""

    def add(self, items: Sequence[Item]) -> None:
        raise NotImplementedError

    def combine(self) -> None:
        """Bring every host's part together (every host calls this; one host alone is fine too)."""

    def result(self) -> dict:
        raise NotImplementedError

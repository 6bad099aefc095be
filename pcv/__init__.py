"""pcv: Pixel Consensus Voting (Wang, Luo, Maire, Shakhnarovich, CVPR 2020) in JAX/Flax.

::

    from pcv import Predictor
    predictor = Predictor.from_workdir("workdir/synthetic")
    result = predictor(image)          # uint8 [H, W, 3] -> result.ids, result.segments_info

    model = pcv.load_exported("model_dir")   # a bundle from python -m pcv.export: jax, numpy, Pillow
    import pcv.voting                  # the voting layers: grid, aggregation, backprojection

The package is the commands (``python -m pcv.<command>``: train, evaluate,
predict, export, prepare, pq, pretrained, bench) on top of a library in
packages by job: voting, data, models, inference, evaluation, training,
runtime, viz, benchmarks (ARCHITECTURE.md). Every package loads its public
names on first use (:func:`lazy_exports`), so ``import pcv`` alone imports
nothing heavy.
"""

from __future__ import annotations

import importlib

__version__ = "0.2.0"


def lazy_exports(package: str, where: dict[str, str]):
    """``(__getattr__, __dir__, __all__)`` of a package whose public names load on first use (PEP 562).

    ``where`` maps each public name to the module of ``package`` that
    defines it (``{"VoteGrid": "grid"}``: ``package.grid.VoteGrid``). Every
    package of pcv exports its names this way, so importing one module of a
    package never imports the rest.
    """

    def __getattr__(name: str):
        if name in where:
            return getattr(importlib.import_module(f"{package}.{where[name]}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__():
        return sorted(set(where) | {"__doc__", "__name__", "__path__"})

    return __getattr__, __dir__, sorted(where)


__getattr__, __dir__, __all__ = lazy_exports(
    "pcv",
    {
        "Predictor": "inference.predictor",
        "Prediction": "inference.segments",
        "Evaluator": "evaluation.evaluator",
        "Workdir": "runtime.workdir",
        "load_exported": "inference.bundle",
        "train_and_evaluate": "training.trainer",
    },
)
__all__ = [*__all__, "__version__"]

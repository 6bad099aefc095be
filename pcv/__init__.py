"""pcv: Pixel Consensus Voting (Wang, Luo, Maire, Shakhnarovich, CVPR 2020) in JAX/Flax.

::

    from pcv import Predictor
    predictor = Predictor.from_workdir("workdir/synthetic")
    result = predictor(image)          # uint8 [H, W, 3] -> result.ids, result.segments_info

    model = pcv.load_exported("model_dir")   # a bundle from python -m pcv.export: jax, numpy, Pillow
    import pcv.voting                  # the voting layers: grid, aggregation, backprojection

Names are loaded lazily: ``import pcv`` alone imports nothing heavy.
"""

__version__ = "0.2.0"

_LAZY = {
    "Predictor": ("pcv.predictor", "Predictor"),
    "Prediction": ("pcv.predictor", "Prediction"),
    "Evaluator": ("pcv.evaluator", "Evaluator"),
    "Workdir": ("pcv.workdir", "Workdir"),
    "load_exported": ("pcv.portable", "load_exported"),
    "train_and_evaluate": ("pcv.train", "train_and_evaluate"),
}

__all__ = [*_LAZY, "__version__"]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'pcv' has no attribute {name!r}")

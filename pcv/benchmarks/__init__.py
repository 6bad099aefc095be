"""pcv.benchmarks: what ``python -m pcv.bench`` measures (voting and inference, training, the input pipeline)."""

from pcv import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "bench_voting": "voting",
        "bench_scaling": "voting",
        "bench_memory": "voting",
        "bench_train": "training",
        "bench_pipeline": "pipeline",
        "time_fn": "timing",
        "compiled_memory": "timing",
        "environment": "timing",
    },
)

"""pcv.runtime: where a run lives and how it talks: the work dir, its lock, files, hosts, metrics, the console.

- :mod:`pcv.runtime.paths`: local folders and ``gs://`` URLs (nothing else).
- :mod:`pcv.runtime.files`: whole-or-nothing writes, strict JSON, PNG bytes.
- :mod:`pcv.runtime.workdir`: :class:`Workdir`, the work dir's layout, run
  identity and checkpoints.
- :mod:`pcv.runtime.lock`: :class:`RunLock`, one live run per work dir.
- :mod:`pcv.runtime.distributed`: joining ``jax.distributed`` from the
  environment; host collectives.
- :mod:`pcv.runtime.metrics`: ``metrics.jsonl`` and TensorBoard events.
- :mod:`pcv.runtime.console`: the training line, its ETA, progress bars.
"""

from pcv import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "Workdir": "workdir",
        "RunLock": "lock",
        "as_path": "paths",
        "is_cloud": "paths",
        "write_atomic": "files",
        "write_json": "files",
        "read_json": "files",
        "MetricWriter": "metrics",
        "read_jsonl": "metrics",
        "ProgressBar": "console",
        "EtaTimer": "console",
        "progress": "console",
    },
)

r"""PCV on the built-in synthetic panoptic data: the default job, no download.

    python -m pcv.train                                   # this config, ./workdir/synthetic
    python -m pcv.train --config=synthetic:smoke --workdir=/tmp/pcv_smoke

The default trains the small backbone on 128x128 images for 600 steps and
evaluates PQ on the 128 validation images, printing (time and figures in
BENCHMARKS.md)

              |     PQ     SQ     RQ     N
    --------------------------------------
    All       |   77.8   85.0   90.5     7
    Things    |   64.3   77.0   83.3     4
    Stuff     |   95.8   95.8  100.0     3

and writes results.json, metrics.jsonl, TensorBoard events and panel.png to
the work dir. ``:smoke`` runs a handful of steps on tiny images for tests.
Any field can be overridden, e.g. ``--config.steps=500 --config.batch_size=32``.

Every field not set here keeps its default (:mod:`pcv.config`), which are
this demo's (small network, 128 x 128 scenes, grid ((1, 1), (3, 2)): 33 bins
on a 15 x 15 field, 60 input pixels) except the post-processing.
"""

from pcv.config import Config, override, variant


def get_config(arg: str | None = None) -> Config:
    config = override(
        Config(),
        {
            # Demo things are 2-10 px across at the heads' stride, so a peak gathers only a few
            # pixels' votes: a lower peak threshold than the paper's 4.0 (BENCHMARKS.md).
            "inference.threshold": 1.0,
            "inference.max_instances": 32,
            "inference.min_stuff_area": 64,
            # Masks at full resolution reach the demo's PQ in fewer steps than the stride-4 masks did.
            "steps": 600,
            "eval_every": 300,
            "checkpoint_every": 300,
        },
    )
    return variant(config, arg, "synthetic")

"""Benchmarks: ``python -m pcv.bench [voting|train|pipeline|scaling|memory] [--sizes=...] [--repeats=N]``.

``scaling`` times inference (masks at the map, resized) and aggregation against the map size (1/4, 1
and 4 times COCO's pixels, K = 233) and against K (17, 89, 233, 401, 641 at
COCO scale), each with its compiled peak memory and as a multiple of one read.

``memory`` gives the compiled peak memory (the compiler's buffer
assignment: arguments, outputs, temporaries) of inference at ``--sizes``
and of a ``--backbone`` training step at 512 x 512 and 800 x 1344 with 1
and 2 images (the difference is the cost per image).

``train`` times one jitted training step (``--backbone=resnet50 --image_size=512
--batch=2``) and reports images per second.

``pipeline`` times the training input pipeline of one host at COCO settings
(:mod:`pcv.data.pipeline`): decode a JPEG and a panoptic PNG of a COCO-sized
image (``--coco_sample=DIR``: a sample's images repeated, else synthetic 640 x 480
files encoded here), random scale 0.5-2.0 of shorter side ``--base_size``
(800), crop ``--image_size`` (512) padded, flip, targets with the default
grid (K = 233) at stride 4, batches of ``--batch`` (8); with ``--workers``
worker processes (0 = in-process, with 1 and 2 read threads), against the
floor of only decoding the files on one core. Rows give images per second.

``voting`` times, after compilation, on whatever device JAX picks:

* aggregation of ``[H, W, K]`` float32 bin probabilities, in the fast
  ("shift") and the paper's ("conv") formulations;
* backprojection of 20 peak boxes from top-1 vote bins;
* the whole logits -> panoptic map inference (semantic + vote logits in,
  panoptic map at 4x the size out), with masks made at the heads' map and
  resized (the paper) and at full resolution (the default),

at COCO scale (1/4 of 800 x 1344: 200 x 336) and Cityscapes scale (256 x 512)
with the default grid (K = 233). Each time is also given as a multiple of one
read of the same input (``x.sum()`` on the same array, timed in the same run):
the physical floor of a job that must look at every input value once.
"""

from __future__ import annotations

import json
import sys

from absl import flags

from pcv import cli
from pcv.benchmarks.pipeline import bench_pipeline
from pcv.benchmarks.timing import environment
from pcv.benchmarks.training import bench_train
from pcv.benchmarks.voting import SIZES, bench_memory, bench_scaling, bench_voting
from pcv.errors import ConfigError


def main(argv=None) -> int:

    fv = cli.new_flags()
    flags.DEFINE_string(
        "sizes", "coco,cityscapes", "voting: comma-separated of " + ", ".join(SIZES) + ".", flag_values=fv
    )
    flags.DEFINE_integer("repeats", 20, "Timed runs after one compiling run.", flag_values=fv)
    flags.DEFINE_string("json", None, "Also write the rows and environment to this file.", flag_values=fv)
    flags.DEFINE_string("backbone", "resnet50", "train: resnet50, resnet101 or small.", flag_values=fv)
    flags.DEFINE_string(
        "image_size", "512", "train: input size, N or HxW (800x1344); pipeline: square crop size N.", flag_values=fv
    )
    flags.DEFINE_integer("batch", None, "train: global batch (2); pipeline: per host (8).", flag_values=fv)
    flags.DEFINE_integer("base_size", 800, "pipeline: shorter side at scale 1.", flag_values=fv)
    flags.DEFINE_string("workers", "0,1,2", "pipeline: comma-separated worker counts.", flag_values=fv)
    flags.DEFINE_string("source_size", None, "pipeline: HxW synthetic files instead of a sample.", flag_values=fv)
    flags.DEFINE_string("coco_sample", None, "pipeline: a COCO panoptic sample folder to read.", flag_values=fv)
    flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "train: compute dtype.", flag_values=fv)

    def program(args, overrides):
        suite = args[1] if len(args) > 1 else "voting"
        if suite not in SUITES or len(args) > 2:
            raise ConfigError(f"usage: python -m pcv.bench [{'|'.join(SUITES)}] [--flags]; got {args[1:]}")
        sizes = [s.strip() for s in fv.sizes.split(",") if s.strip()]
        unknown = [s for s in sizes if s not in SIZES]
        if unknown:
            raise ConfigError(f"--sizes: unknown size {unknown[0]!r}; choose from {', '.join(SIZES)}")
        try:
            image_size = tuple(int(x) for x in fv.image_size.lower().split("x"))
            image_size = image_size * 2 if len(image_size) == 1 else image_size
            assert len(image_size) == 2 and min(image_size) > 0
        except (ValueError, AssertionError):
            raise ConfigError(f"--image_size={fv.image_size}: expected N or HxW, e.g. 512 or 800x1344") from None
        env = environment()
        print(f"pcv.bench {suite}: {env['device']} x{env['device_count']} ({env['backend']}), jax {env['jax']}")
        if suite == "train":
            rows = bench_train(fv.backbone, image_size, fv.batch or 2, fv.repeats, fv.dtype)
        elif suite == "pipeline":
            source_size = tuple(int(x) for x in fv.source_size.split("x")) if fv.source_size else None
            workers = [int(w) for w in fv.workers.split(",") if w.strip()]
            rows = bench_pipeline(
                image_size[0], fv.base_size, fv.batch or 8, fv.repeats, workers, source_size, fv.coco_sample
            )
        elif suite == "scaling":
            rows = bench_scaling(fv.repeats)
        elif suite == "memory":
            rows = bench_memory(sizes, backbone=fv.backbone)
        else:
            rows = bench_voting(sizes, fv.repeats)
        if fv.json:
            with open(fv.json, "w") as f:
                json.dump({"environment": env, "rows": rows}, f, indent=2)
        return 0

    return cli.run(fv, program, argv)


SUITES = ("voting", "train", "pipeline", "scaling", "memory")


if __name__ == "__main__":
    sys.exit(main())

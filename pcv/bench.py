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
import platform
import statistics
import sys
import time
from datetime import date

import jax
import jax.numpy as jnp
import numpy as np

from pcv.inference import InferenceConfig, panoptic_inference
from pcv.voting import DEFAULT_GRID, aggregate_votes, backproject

SIZES = {
    # name: (H, W) at the heads' stride, number of semantic classes, number of thing classes
    "coco": ((200, 336), 133, 80),
    "cityscapes": ((256, 512), 19, 8),
    "tiny": ((24, 40), 6, 3),  # for the test of this module
}


def time_fn(fn, *args, repeats: int) -> tuple[float, float]:
    """(median, min) wall time in ms of ``fn(*args)`` after one compiling call."""
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times), 1e3 * min(times)


def synthetic_scene(hw, num_classes, num_things, grid, num_instances=20, seed=0):
    """Logits of a plausible scene: rectangles voting for their centres, noise on top."""
    rng = np.random.default_rng(seed)
    h, w = hw
    k = grid.num_bins
    sem_label = rng.integers(num_things, num_classes, size=(1, 1)) * np.ones((h, w), np.int64)
    bins = np.full((h, w), k)
    ys, xs = np.mgrid[:h, :w]
    for _ in range(num_instances):
        bh, bw = rng.integers(4, max(5, h // 4)), rng.integers(4, max(5, w // 4))
        y0, x0 = rng.integers(0, h - bh), rng.integers(0, w - bw)
        inside = (ys >= y0) & (ys < y0 + bh) & (xs >= x0) & (xs < x0 + bw)
        cy, cx = y0 + bh // 2, x0 + bw // 2
        sem_label[inside] = rng.integers(0, num_things)
        b = grid.bin_of_offset(np.stack([cy - ys[inside], cx - xs[inside]], -1))
        bins[inside] = np.where(b >= 0, b, k)
    sem = rng.normal(0, 1, (h, w, num_classes)).astype(np.float32)
    sem[ys, xs, sem_label] += 6.0
    votes = rng.normal(0, 1, (h, w, k + 1)).astype(np.float32)
    votes[ys, xs, bins] += 8.0
    return jnp.asarray(sem), jnp.asarray(votes)


def bench_voting(sizes, repeats: int) -> list[dict]:
    grid = DEFAULT_GRID
    rows = []
    for name in sizes:
        (h, w), num_classes, num_things = SIZES[name]
        sem, votes = synthetic_scene((h, w), num_classes, num_things, grid)
        probs = jax.nn.softmax(votes, -1)[..., : grid.num_bins]
        vote_bins = jnp.argmax(votes, -1).astype(jnp.int32)
        vote_bins = jnp.where(vote_bins == grid.num_bins, -1, vote_bins)
        rng = np.random.default_rng(1)
        y = np.sort(rng.integers(0, h, (20, 2)), 1)
        x = np.sort(rng.integers(0, w, (20, 2)), 1)
        boxes = jnp.asarray(np.stack([y[:, 0], x[:, 0], y[:, 1], x[:, 1]], 1), jnp.int32)
        thing_mask = tuple(i < num_things for i in range(num_classes))
        read = jax.jit(lambda a: a.sum())

        def row(what, fn, args, floor_args, repeats=repeats, name=name, h=h, w=w, read=read):
            ms, ms_min = time_fn(fn, *args, repeats=repeats)
            floor, floor_min = time_fn(read, floor_args, repeats=repeats)
            rows.append(
                {
                    "size": f"{name} {h}x{w}",
                    "what": what,
                    "ms": round(ms, 3),
                    "min_ms": round(ms_min, 3),
                    "read_ms": round(floor, 3),
                    "read_min_ms": round(floor_min, 3),
                    "x_read": round(ms / floor, 2),
                }
            )
            print(
                f"  {rows[-1]['size']:<20} {what:<38} {ms:9.2f} ms (min {ms_min:8.2f})"
                f"  read {floor:6.2f} ms  {ms / floor:7.1f}x read",
                flush=True,
            )

        shift = jax.jit(lambda p: aggregate_votes(p, grid, method="shift"))
        conv = jax.jit(lambda p: aggregate_votes(p, grid, method="conv"))
        row("aggregate (shift, default)", shift, (probs,), probs)
        row("aggregate (conv, paper)", conv, (probs,), probs, repeats=max(1, repeats // 4))
        bp = jax.jit(lambda b, bx: backproject(b, bx, grid))
        row("backproject 20 boxes", bp, (vote_bins, boxes), vote_bins)
        # The floor of inference is one read of both logit maps.
        both = jnp.concatenate([sem.reshape(-1), votes.reshape(-1)])
        for label, full in (("masks at the map, resized", False), ("masks at full resolution", True)):
            row(f"inference, {label}", jax.jit(inference_fn(grid, thing_mask, (h, w), full)), (sem, votes), both)
    return rows


def inference_fn(grid, thing_mask, map_hw, full: bool):
    """``(semantic, votes) -> panoptic_inference(...)`` at 4 x the map, the paper's masks or full resolution."""
    config = InferenceConfig(full_resolution=full)
    out_hw = (4 * map_hw[0], 4 * map_hw[1])
    return lambda s, v: panoptic_inference(s, v, grid, thing_mask, config, output_size=out_hw)


def compiled_memory(fn, *args) -> dict:
    """Memory of one call of ``jax.jit(fn)`` by the compiler's buffer assignment, in MiB.

    ``peak``: arguments + outputs + temporaries - aliased. XLA allocates a
    program's temporaries as one block (``temp_size``, in which buffers
    already share space by their live ranges), so this is what a call
    holds, found without running it. (``peak_memory_in_bytes`` of XLA:CPU
    leaves the temporaries out, so it is not used.)
    """
    stats = jax.jit(fn).lower(*args).compile().memory_analysis()
    mib = 2**20
    args_b, out_b = stats.argument_size_in_bytes, stats.output_size_in_bytes
    temp_b, alias_b = stats.temp_size_in_bytes, stats.alias_size_in_bytes
    peak = args_b + out_b + temp_b - alias_b
    return {
        "peak_mib": round(peak / mib, 3),
        "arguments_mib": round(args_b / mib, 3),
        "outputs_mib": round(out_b / mib, 3),
        "temporaries_mib": round(temp_b / mib, 3),
    }


#: Grids of the scaling table: K = 17, 89, 233 (the default), 401 and 641.
SCALING_GRIDS = (
    ((1, 1), (3, 1)),
    ((1, 1), (3, 4)),
    DEFAULT_GRID.spec,
    ((1, 1), (3, 4), (9, 6), (27, 3)),
    ((1, 1), (3, 4), (9, 9), (27, 3)),
)
#: Map sizes of the scaling table: 1/4, 1 and 4 times COCO's pixels at stride 4.
SCALING_SIZES = ((100, 168), (200, 336), (400, 672))


def bench_scaling(
    repeats: int, sizes=SCALING_SIZES, grids=SCALING_GRIDS, at=(200, 336), size_grid=DEFAULT_GRID.spec
) -> list[dict]:
    """Inference and aggregation time and compiled peak memory against map size (``size_grid``) and K (at ``at``)."""
    from pcv.voting import VoteGrid

    rows = []
    cases = [(hw, size_grid) for hw in sizes] + [(at, g) for g in grids if g != size_grid]
    for (h, w), spec in cases:
        grid = VoteGrid(spec)
        sem, votes = synthetic_scene((h, w), 133, 80, grid)
        probs = jax.nn.softmax(votes, -1)[..., : grid.num_bins]
        thing_mask = tuple(i < 80 for i in range(133))

        infer = inference_fn(grid, thing_mask, (h, w), full=False)

        def aggregate(p, grid=grid):
            return aggregate_votes(p, grid, method="shift")

        read = jax.jit(lambda a: a.sum())
        both = jnp.concatenate([sem.reshape(-1), votes.reshape(-1)])
        for what, fn, args, floor in (
            ("inference", infer, (sem, votes), both),
            ("aggregation", aggregate, (probs,), probs),
        ):
            ms, _ = time_fn(jax.jit(fn), *args, repeats=repeats)
            read_ms, _ = time_fn(read, floor, repeats=repeats)
            memory = compiled_memory(fn, *args)
            rows.append(
                {
                    "what": what,
                    "map": f"{h}x{w}",
                    "pixels_vs_coco": round(h * w / (200 * 336), 2),
                    "K": grid.num_bins,
                    "ms": round(ms, 2),
                    "x_read": round(ms / read_ms, 1),
                    "input_mib": round(sum(a.size * a.dtype.itemsize for a in args) / 2**20, 1),
                    **memory,
                }
            )
            r = rows[-1]
            print(
                f"  {what:<12} {r['map']:>8} K={r['K']:<4} {ms:9.2f} ms {r['x_read']:6.1f}x read  "
                f"input {r['input_mib']:7.1f} MiB  peak {r['peak_mib']:7.1f} MiB",
                flush=True,
            )
    return rows


def bench_memory(sizes, train_sizes=((512, 512), (800, 1344)), backbone: str = "resnet50") -> list[dict]:
    """Compiled peak memory of inference (``sizes``) and of a training step at 1 and 2 images (``train_sizes``)."""
    rows = []
    grid = DEFAULT_GRID
    for name in sizes:
        (h, w), num_classes, num_things = SIZES[name]
        sem, votes = synthetic_scene((h, w), num_classes, num_things, grid)
        thing_mask = tuple(i < num_things for i in range(num_classes))

        for what, full in (("inference", False), ("inference, full resolution", True)):
            infer = inference_fn(grid, thing_mask, (h, w), full)
            rows.append({"what": what, "size": f"{name} {h}x{w}", **compiled_memory(infer, sem, votes)})
            print(f"  {rows[-1]}", flush=True)
    for size in train_sizes:
        per_batch = {}
        for batch in (1, 2):
            step, state, data = _train_step(backbone, size, batch, "float32")
            per_batch[batch] = compiled_memory(step, state, data)
        rows.append(
            {
                "what": f"train step {backbone} float32",
                "size": f"{size[0]}x{size[1]}",
                "batch_1_peak_mib": per_batch[1]["peak_mib"],
                "batch_2_peak_mib": per_batch[2]["peak_mib"],
                "per_image_mib": round(per_batch[2]["peak_mib"] - per_batch[1]["peak_mib"], 1),
                "state_mib": per_batch[1]["arguments_mib"],
            }
        )
        print(f"  {rows[-1]}", flush=True)
    return rows


def _train_step(backbone: str, size, batch: int, dtype: str):
    """``(step, state, batch)``: the train step of a COCO-like model (133 classes, K = 233) on random data."""
    from pcv import config as config_lib
    from pcv.state import create_train_state
    from pcv.train import make_train_step

    config = config_lib.replace(
        config_lib.Config(),
        **{
            "model.backbone": backbone,
            "model.fpn_channels": 256,
            "model.fusion_channels": 128,
            "model.dtype": dtype,
            "grid": DEFAULT_GRID.spec,
        },
    )
    grid = DEFAULT_GRID
    parts = create_train_state(config, 133, grid)
    step = make_train_step(parts.graphdef, parts.tx, parts.schedule, config)
    rng = np.random.default_rng(0)
    h, w = (size, size) if isinstance(size, int) else size
    s = (h // 4, w // 4)
    data = {
        "images": jnp.asarray(rng.integers(0, 256, (batch, h, w, 3)), jnp.uint8),
        "semantic": jnp.asarray(rng.integers(-1, 133, (batch, *s)), jnp.int32),
        "votes": jnp.asarray(rng.integers(-1, grid.num_bins + 1, (batch, *s)), jnp.int32),
        "weights": jnp.asarray(rng.random((batch, *s)), jnp.float32),
    }
    return step, parts.state, data


def bench_train(backbone: str, size: int, batch: int, repeats: int, dtype: str) -> list[dict]:
    """Training throughput of one jitted train step (images/s) on random data.

    COCO-like heads: 133 classes, the default grid (K = 233), inputs
    ``size x size``; batch statistics over the batch, SGD with momentum.
    """
    fn, state, batch = _train_step(backbone, size, batch, dtype)
    step = jax.jit(fn, donate_argnums=0)
    state, _ = step(state, batch)  # compile
    jax.block_until_ready(state)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        state, metrics = step(state, batch)
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - t0)
    ms = 1e3 * statistics.median(times)
    row = {
        "size": "x".join(map(str, (size, size) if isinstance(size, int) else size)),
        "what": f"train step {backbone} {dtype} batch {batch['images'].shape[0]}",
        "ms": round(ms, 1),
        "min_ms": round(1e3 * min(times), 1),
        "images_per_second": round(batch["images"].shape[0] / (ms / 1e3), 2),
    }
    print(f"  {row['size']:<10} {row['what']:<40} {ms:9.1f} ms  {row['images_per_second']:7.2f} img/s", flush=True)
    return [row]


class EncodedPanoptic:
    """COCO-like source of encoded files: ``[i]`` decodes a JPEG and a panoptic PNG (like a real reader)."""

    categories = None

    def __init__(self, files, categories, length):
        from pcv.data.panoptic import LabelSpace

        self.files = files  # [(jpeg bytes, png bytes, segments_info)]
        self.categories = categories
        self.label_space = LabelSpace(categories)
        self.length = length

    def __len__(self):
        return self.length

    def __getitem__(self, i):
        import io

        from PIL import Image

        jpeg, png, info = self.files[int(i) % len(self.files)]
        image = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))
        rgb = np.asarray(Image.open(io.BytesIO(png)), np.int32)
        ids = rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]
        return {"image": image, "segment_ids": ids, "segments_info": info, "image_id": int(i)}


def coco_like_files(source_size: tuple[int, int] | None, coco_sample: str | None = None):
    """``(files, categories, description)``: a COCO panoptic sample folder, or synthetic files of ``source_size``.

    ``coco_sample`` is a folder with ``panoptic.json``, ``panoptic/`` and
    ``images/`` (like the tests' sample); without one (or with
    ``source_size``) synthetic 640 x 480 files are encoded here.
    """
    import io
    import os

    from PIL import Image

    if source_size is None and coco_sample and os.path.exists(os.path.join(coco_sample, "panoptic.json")):
        with open(os.path.join(coco_sample, "panoptic.json")) as f:
            gt = json.load(f)
        files = []
        for ann in gt["annotations"]:
            stem = os.path.splitext(ann["file_name"])[0]
            with open(os.path.join(coco_sample, "images", stem + ".jpg"), "rb") as f:
                jpeg = f.read()
            with open(os.path.join(coco_sample, "panoptic", ann["file_name"]), "rb") as f:
                png = f.read()
            files.append((jpeg, png, ann["segments_info"]))
        sizes = ", ".join(f"{im['height']}x{im['width']}" for im in gt["images"])
        return files, gt["categories"], f"COCO sample ({sizes})"
    from pcv.data import SyntheticPanoptic
    from pcv.evaluation.pq import id2rgb

    h, w = source_size or (480, 640)
    ds = SyntheticPanoptic("val", size=(h, w), num_examples=2, seed=0)
    files = []
    for n in range(2):
        ex = ds[n]
        jpeg, png = io.BytesIO(), io.BytesIO()
        Image.fromarray(ex["image"]).save(jpeg, "JPEG", quality=90)
        Image.fromarray(id2rgb(ex["segment_ids"])).save(png, "PNG")
        files.append((jpeg.getvalue(), png.getvalue(), ex["segments_info"]))
    return files, ds.categories, f"synthetic {h}x{w}"


def bench_pipeline(
    crop: int, base_size: int, batch: int, repeats: int, workers: list[int], source_size=None, coco_sample=None
) -> list[dict]:
    """Images per second of this host's training input pipeline (module docstring)."""
    from pcv.config import DataConfig
    from pcv.data import pipeline

    files, categories, what = coco_like_files(source_size, coco_sample)
    source = EncodedPanoptic(files, categories, length=10_000)
    print(f"  source: {what}, crop {crop}x{crop}, scale 0.5-2.0 of shorter side {base_size}, K={DEFAULT_GRID.num_bins}")
    rows = []

    def row(name, seconds, images, cpu_seconds=None):
        ips = images / seconds
        r = {"what": name, "images": images, "seconds": round(seconds, 6), "images_per_second": round(ips, 2)}
        line = f"  {name:<44} {ips:8.2f} img/s  ({1e3 / ips:7.1f} ms/img)"
        if cpu_seconds is not None:  # CPU time of this process (all threads): load-independent cost
            r["cpu_ms_per_image"] = round(1e3 * cpu_seconds / images, 3)
            line += f"  cpu {r['cpu_ms_per_image']:6.1f} ms/img"
        rows.append(r)
        print(line, flush=True)

    n = max(batch * repeats, 4)
    source[0]  # warm imports
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(n):
        source[i]
    row("decode JPEG + PNG only (floor, 1 thread)", time.perf_counter() - t0, n, time.process_time() - c0)

    configs = []
    for w in workers:
        configs += [(0, 1), (0, 2)] if w == 0 else [(w, 1)]
    for num_workers, threads in configs:
        data = DataConfig(
            crop_size=(crop, crop),
            scale_range=(0.5, 2.0),
            base_size=base_size,
            hflip=True,
            num_workers=num_workers,
            read_threads=threads,
        )
        ds = pipeline.train_dataset(
            source, DEFAULT_GRID, data, batch_size=batch, seed=0, process_index=0, process_count=1
        )
        it = iter(ds)
        try:
            for _ in range(2):  # start-up: worker processes, first batches
                next(it)
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(repeats):
                next(it)
            seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        finally:
            if hasattr(it, "close"):
                it.close()
        name = f"pipeline, {num_workers} workers" if num_workers else f"pipeline, in-process, {threads} thread(s)"
        row(name, seconds, batch * repeats, None if num_workers else cpu)
    return rows


def environment() -> dict:
    dev = jax.devices()[0]
    return {
        "date": date.today().isoformat(),
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "device": getattr(dev, "device_kind", str(dev)),
        "device_count": jax.device_count(),
        "cpu": platform.processor() or platform.machine(),
        "python": platform.python_version(),
    }


def main(argv=None) -> int:
    from absl import flags

    from pcv import cli
    from pcv.errors import ConfigError

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

    return cli.run(fv, program, argv, takes_config=False)


SUITES = ("voting", "train", "pipeline", "scaling", "memory")


if __name__ == "__main__":
    sys.exit(main())

r"""PCV on the built-in synthetic panoptic data: the default job, no download.

    python -m pcv.train                                   # this config, ./workdir/synthetic
    python -m pcv.train --config=configs/synthetic.py:smoke --workdir=/tmp/pcv_smoke

The default trains the small backbone on 128x128 images for 1000 steps
(about 4.5 min on a 2-core CPU) and evaluates PQ on the 128 validation
images, printing (BENCHMARKS.md)

              |     PQ     SQ     RQ     N
    --------------------------------------
    All       |   74.0   82.0   88.7     7
    Things    |   58.3   72.2   80.3     4
    Stuff     |   94.9   95.0   99.8     3

and writes results.json, metrics.jsonl, TensorBoard events and panel.png to
the work dir. `:smoke` runs a handful of steps on tiny images for tests.
Any field can be overridden, e.g. `--config.steps=500 --config.batch_size=32`.
"""

import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0

    c.data = ml_collections.ConfigDict()
    c.data.name = "synthetic"
    c.data.image_size = (128, 128)
    c.data.num_val = 128
    # Training transforms (pcv.data.transforms.train_transform), on the host
    # before the targets. The demo only flips: its scenes are drawn at the
    # training size already.
    c.data.crop_size = c.data.get_ref("image_size").identity()  # follows image_size unless set
    c.data.scale_range = (1.0, 1.0)  # scale factor of the shorter side, uniform
    c.data.base_size = 0  # shorter side at scale 1; 0 = the image's own
    c.data.hflip = True  # random horizontal flips (targets are computed after)
    c.data.color_jitter = 0.0  # 0 = off; else max relative brightness/contrast/saturation change
    # Input pipeline (pcv.data.pipeline, grain). On 2 cores in-process reading
    # beats worker processes for the demo (they cost ~6 s to start).
    c.data.num_workers = 0  # worker processes; 0 = read in the trainer's process
    c.data.read_threads = 2  # threads of in-process reading
    # Evaluation / prediction inputs (pcv.evaluate.eval_geometry): 0 = fit
    # into image_size; real datasets resize by the shorter side (COCO: 800,
    # longer side at most 1333) and pad to eval_pad_shape (() = square).
    c.data.eval_short_side = 0
    c.data.eval_max_size = 0
    c.data.eval_pad_shape = ()

    # The grid must cover the largest instance at the heads' stride (4):
    # ((1, 1), (3, 2)) gives K = 33 bins on a 15 x 15 field (60 input pixels).
    c.grid = ((1, 1), (3, 2))
    c.centroid = "mass"
    c.weight_power = 0.5

    c.model = ml_collections.ConfigDict()
    c.model.backbone = "small"
    c.model.fpn_channels = 64
    c.model.fusion_channels = 64
    c.model.backbone_norm = "batch"
    c.model.head_norm = "batch"
    c.model.dtype = "float32"  # or "bfloat16": bf16 compute, f32 weights, loss and voting
    c.model.pretrained = ""  # ImageNet backbone weights (.safetensors / .pth); "" = from scratch

    c.loss = ml_collections.ConfigDict()
    c.loss.semantic_weight = 1.0
    c.loss.vote_weight = 1.0

    c.batch_size = 16  # global, across all devices and hosts
    c.num_devices = 0  # 0 = every device JAX sees
    c.steps = 1000
    c.optimizer = ml_collections.ConfigDict()
    c.optimizer.learning_rate = 0.05
    c.optimizer.momentum = 0.9
    c.optimizer.weight_decay = 1e-4
    c.optimizer.warmup_steps = 100
    c.optimizer.schedule = "poly"  # or "step"
    c.optimizer.poly_power = 0.9
    c.optimizer.step_boundaries = (0.67, 0.89)  # fractions of `steps`, for "step"
    c.optimizer.step_factor = 0.1
    c.optimizer.clip_norm = 0.0  # 0 = no clipping

    c.inference = ml_collections.ConfigDict()
    # Demo things are 2-10 px across at the heads' stride, so a peak gathers
    # only a few pixels' votes: 1.0 (measured on the trained demo model: PQ
    # 73.8 at 1.0 vs 59.9 at 4.0, 70.2 at 0.5; BENCHMARKS.md) not COCO's 4.0.
    c.inference.threshold = 1.0
    c.inference.max_instances = 32
    c.inference.min_stuff_area = 64
    c.inference.top_t = 1

    c.log_every = 50
    c.eval_every = 500  # 0 = only at the end
    c.checkpoint_every = 500
    c.keep_checkpoints = 3
    c.num_panel_images = 4

    if arg == "smoke":
        c.data.image_size = (64, 64)
        c.data.num_val = 8
        c.model.fpn_channels = 32
        c.model.fusion_channels = 32
        c.batch_size = 8
        c.steps = 6
        c.optimizer.warmup_steps = 2
        c.log_every = 2
        c.eval_every = 0
        c.checkpoint_every = 3
        c.inference.min_stuff_area = 16
        c.num_panel_images = 2
    elif arg not in (None, ""):
        raise ValueError(f"configs/synthetic.py: unknown variant {arg!r}; use '' or 'smoke'")
    return c

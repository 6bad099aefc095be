r"""PCV, ResNet-50-FPN on COCO 2017 panoptic: the paper's setting, a 1x-style schedule.

Recipe (from nothing to PQ):

1. Download from cocodataset.org into one folder, e.g. ~/data/coco:
   ``train2017.zip``, ``val2017.zip`` and
   ``panoptic_annotations_trainval2017.zip`` (zips are read in place; their
   extracted folders work too).
2. Prepare (validates every file, writes array_record; no TensorFlow)::

       python -m pcv.prepare --dataset=coco --manual_dir=~/data/coco --data_dir=~/pcv_data

   It prints ``train: 118287 examples ...``, ``val: 5000 examples ...`` and the
   prepared path, ``~/pcv_data/pcv_panoptic/coco/1.0.0``.
3. ImageNet weights for the backbone: torchvision's ``resnet50-11ad3fa6.pth``
   converted once (needs torch)::

       python -m pcv.pretrained convert resnet50-11ad3fa6.pth ~/weights/resnet50.safetensors

   or timm's ``resnet50`` ``model.safetensors`` as it is.
4. Train and evaluate (every accelerator of the host or pod; resumes by
   itself when restarted with the same command; on a pod see launch/)::

       python -m pcv.train --config=coco_r50 --workdir=gs://my-bucket/runs/coco_r50 \
           --config.data.data_dir=~/pcv_data/pcv_panoptic/coco/1.0.0 \
           --config.model.pretrained=~/weights/resnet50.safetensors

   It logs a line every 100 steps and, at the end, the PQ table on val2017
   (All / Things / Stuff) and ``results.json``. The paper reports PQ 37.7 on
   test-dev for PCV with ResNet-50; this config has not been run to the end
   with this code yet (no accelerator time so far), so treat that as the
   reference, not a promise.
5. Score or export the checkpoint again: ``python -m pcv.evaluate
   --workdir=...`` (COCO panoptic PNG + JSON, PQ table).

Settings: the default grid (K = 233 bins, 243-pixel field at stride 4), heads
at stride 4, FPN 256 / fusion 128 channels; frozen ImageNet BatchNorm in
the backbone (the usual choice with pretrained weights; results do not depend
on the device count) and BatchNorm over the global batch in the heads; bf16
compute with f32 weights; global batch 16, SGD momentum 0.9, weight decay
1e-4, lr 0.02 with 1000 warmup steps, x0.1 at 2/3 and 8/9 of 90k steps (the
1x schedule); training crops 512 x 512 after a random scale of 0.5-2.0 of a
shorter side of 800, random flips; evaluation at shorter side 800 / longer
at most 1333, padded to 1344 x 1344; the paper's post-processing (threshold
4, 100 instance slots, stuff under 4096 pixels void, the stride-4 map resized
by nearest neighbour). Masks at full resolution
(``--config.inference.full_resolution=true``, the default elsewhere) gained
PQ on small datasets (BENCHMARKS.md) but have not been measured on COCO yet.
"""

from pcv.config import Config, override, variant


def get_config(arg: str | None = None) -> Config:
    config = override(
        Config(),
        {
            "data.name": "panoptic",
            "data.data_dir": "",  # required: the prepared dataset (python -m pcv.prepare)
            "data.image_size": (512, 512),
            "data.scale_range": (0.5, 2.0),
            "data.base_size": 800,
            "data.num_workers": 4,  # per host; ~5-6 cores per accelerator keep it fed (BENCHMARKS.md)
            "data.eval_short_side": 800,
            "data.eval_max_size": 1333,  # padded to (1344, 1344): one shape for both orientations
            "grid": ((1, 1), (3, 4), (9, 3), (27, 3)),  # the paper's grid: K = 233, 243 x 243 field
            "model.backbone": "resnet50",
            "model.fpn_channels": 256,
            "model.fusion_channels": 128,
            "model.backbone_norm": "frozen",
            "model.dtype": "bfloat16",
            "inference.full_resolution": False,  # the paper's step 8; see the docstring
            "steps": 90_000,
            "optimizer.learning_rate": 0.02,
            "optimizer.warmup_steps": 1000,
            "optimizer.schedule": "step",
            "log_every": 100,
            "eval_every": 10_000,
            "checkpoint_every": 2000,
        },
    )
    return variant(config, arg, "coco_r50")

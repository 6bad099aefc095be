r"""PCV, ResNet-50-FPN on Cityscapes panoptic (fine annotations): the paper's setting.

Recipe (from nothing to PQ):

1. Download ``leftImg8bit_trainvaltest.zip`` and ``gtFine_trainvaltest.zip``
   from cityscapes-dataset.com, extract both into ~/data/cityscapes, and
   convert the labels to COCO panoptic format with the official scripts
   (``pip install cityscapesscripts``)::

       CITYSCAPES_DATASET=~/data/cityscapes csCreatePanopticImgs

   which writes ``gtFine/cityscapes_panoptic_{train,val}.json`` and the PNG
   folders beside them.
2. Prepare (validates every file, writes array_record; no TensorFlow)::

       python -m pcv.prepare --dataset=cityscapes --manual_dir=~/data/cityscapes --data_dir=~/pcv_data

   It prints ``train: 2975 examples ...``, ``val: 500 examples ...`` and the
   path, ``~/pcv_data/pcv_panoptic/cityscapes/1.0.0``.
3. ImageNet ResNet-50 weights as in configs/coco_r50.py (step 3).
4. Train and evaluate::

       python -m pcv.train --config=cityscapes_r50 --workdir=~/runs/cityscapes_r50 \
           --config.data.data_dir=~/pcv_data/pcv_panoptic/cityscapes/1.0.0 \
           --config.model.pretrained=~/weights/resnet50.safetensors

   At the end it prints the PQ table on the 500 val images at full
   resolution (1024 x 2048) and writes ``results.json``. This config has not
   been run to the end with this code yet; compare with the paper's
   Cityscapes val table.

Settings: the paper's grid (K = 233) and heads at stride 4, as for COCO;
frozen ImageNet BatchNorm in the backbone; bf16 compute; global batch 8,
24k steps, lr 0.01 with 1000 warmup steps and x0.1 at 3/4 (Detectron's 1x
Cityscapes schedule); training crops 512 x 1024 after a random scale of
0.5-2.0 of the full 1024-pixel height, random flips; evaluation at full
size, one shape (1024 x 2048); stuff segments under 2048 pixels are void.
"""

from pcv.config import Config, load, override, variant


def get_config(arg: str | None = None) -> Config:
    config = override(
        load("coco_r50"),
        {
            "data.image_size": (512, 1024),
            "data.base_size": 1024,
            "data.eval_short_side": 1024,
            "data.eval_max_size": 2048,
            "data.eval_pad_shape": (1024, 2048),  # every Cityscapes image is 1024 x 2048
            "batch_size": 8,
            "steps": 24_000,
            "optimizer.learning_rate": 0.01,
            "optimizer.step_boundaries": (0.75,),
            "inference.min_stuff_area": 2048,
            "eval_every": 4000,
            "checkpoint_every": 1000,
        },
    )
    return variant(config, arg, "cityscapes_r50")

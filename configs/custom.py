r"""PCV on your own COCO-format panoptic dataset: no code to write.

Recipe (from raw files to PQ):

1. Have, per split, what the COCO panoptic format asks for: an annotations
   JSON (``images``, ``annotations`` with ``segments_info``, ``categories``
   with ``id``, ``name``, ``isthing`` and ``color``), a folder of panoptic
   PNGs (segment id = R + 256 G + 256^2 B, 0 = unlabelled) and a folder of
   images. Tools such as panopticapi's converters write this format.
2. Prepare it (every file is checked; errors name the file and segment;
   ``--on_error=skip`` skips bad images instead, counting and listing them)::

       python -m pcv.data.prepare --dataset=custom --name=mydata --data_dir=~/pcv_data \
           --train_json=train.json --train_png_dir=train_png --train_image_dir=train_images \
           --val_json=val.json --val_png_dir=val_png --val_image_dir=val_images

   It prints the example counts and the path,
   ``~/pcv_data/pcv_panoptic/mydata/1.0.0``.
3. Train and evaluate (the path can also be given as
   ``--config.data.data_dir=...``)::

       python -m pcv.train --config=configs/custom.py:~/pcv_data/pcv_panoptic/mydata/1.0.0 \
           --workdir=~/runs/mydata

   The default is the small backbone trained from scratch at 512 x 512
   crops, which runs anywhere. For real photographs use an ImageNet
   ResNet-50 (configs/coco_r50.py, step 3 of its recipe)::

           --config.model.backbone=resnet50 --config.model.backbone_norm=frozen \
           --config.model.pretrained=~/weights/resnet50.safetensors

   and size the rest to your data: ``--config.steps``, ``--config.batch_size``,
   ``--config.data.crop_size='(640,640)'``, ``--config.data.base_size``,
   ``--config.data.eval_short_side`` / ``eval_max_size``, and the grid
   (``--config.grid='((1,1),(3,2),(9,2))'``: the field, ``3 * 9 * ...``
   cells at stride 4, should span your largest objects).
4. At the end it prints PQ on the val split (table) and writes
   ``results.json``; ``python -m pcv.evaluate --workdir=~/runs/mydata``
   exports COCO-format predictions with your category ids.
"""

import pathlib

import ml_collections

from pcv.config_files import load_config_file


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """``arg``: the prepared dataset directory (or set ``config.data.data_dir``)."""
    c = load_config_file(pathlib.Path(__file__).with_name("coco_r50.py"))
    c.data.data_dir = str(pathlib.Path(arg).expanduser()) if arg else ""
    c.data.image_size = (512, 512)
    c.data.crop_size = (512, 512)
    c.data.scale_range = (0.5, 2.0)
    c.data.base_size = 512
    c.data.num_workers = 2
    c.data.eval_short_side = 512
    c.data.eval_max_size = 853
    c.data.eval_pad_shape = ()  # () = (864, 864)

    c.model.backbone = "small"
    c.model.fpn_channels = 128
    c.model.fusion_channels = 128
    c.model.backbone_norm = "batch"
    c.model.dtype = "float32"
    c.model.pretrained = ""

    c.batch_size = 16
    c.steps = 20_000
    c.optimizer.learning_rate = 0.02
    c.optimizer.warmup_steps = 500
    c.optimizer.schedule = "poly"
    c.inference.min_stuff_area = 1024
    c.eval_every = 5000
    c.checkpoint_every = 1000
    return c

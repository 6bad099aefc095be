r"""PCV on your own COCO-format panoptic dataset: no code to write.

Recipe (from raw files to PQ):

1. Have, per split, what the COCO panoptic format asks for: an annotations
   JSON (``images``, ``annotations`` with ``segments_info``, ``categories``
   with ``id``, ``name``, ``isthing`` and ``color``), a folder of panoptic
   PNGs (segment id = R + 256 G + 256^2 B, 0 = unlabelled) and a folder of
   images. Tools such as panopticapi's converters write this format.
2. Prepare it (every file is checked; errors name the file and segment;
   ``--on_error=skip`` skips bad images instead, counting and listing them)::

       python -m pcv.prepare --dataset=custom --name=mydata --data_dir=~/pcv_data \
           --train_json=train.json --train_png_dir=train_png --train_image_dir=train_images \
           --val_json=val.json --val_png_dir=val_png --val_image_dir=val_images

   It prints the example counts and the path,
   ``~/pcv_data/pcv_panoptic/mydata/1.0.0``.
3. Train and evaluate; the data path is the only setting needed::

       python -m pcv.train --config=custom:~/pcv_data/pcv_panoptic/mydata/1.0.0 --workdir=~/runs/mydata

   The recipe sizes itself from the statistics ``pcv.prepare`` kept
   (:mod:`pcv.training.recipe`: input and crop sizes, evaluation sizes, a grid whose
   field spans the large instances, the minimum stuff area, the model, a
   schedule for the dataset's size, held-out calibration images) and prints
   each choice and why. Any field can still be set, e.g.
   ``--config.steps=5000 --config.grid='((1, 1), (3, 4))'``.
4. At the end it calibrates the post-processing on the held-out images,
   prints PQ on the val split (table) and writes ``results.json``;
   ``python -m pcv.evaluate --workdir=~/runs/mydata`` exports COCO-format
   predictions with your category ids.

The variant argument is the prepared dataset's directory (or set
``--config.data.data_dir``); ``smoke:<dir>`` shrinks the run for tests.
"""

import os

from pcv.config import Config, override, variant
from pcv.data.coco_panoptic import PanopticDataError
from pcv.training import recipe


def get_config(arg: str | None = None) -> Config:
    """``arg``: ``[smoke:]<prepared dataset directory>``."""
    name, data_dir = ("smoke", arg[len("smoke:") :]) if (arg or "").startswith("smoke:") else ("", arg or "")
    data_dir = os.path.expanduser(data_dir) if data_dir else ""
    # Without statistics (a dataset prepared by an older pcv): a fixed recipe for photos.
    config = override(
        Config(),
        {
            "data.name": "panoptic",
            "data.data_dir": data_dir,
            "data.image_size": (512, 512),
            "data.scale_range": (0.5, 2.0),
            "data.base_size": 512,
            "data.num_workers": 2,
            "data.eval_short_side": 512,
            "data.eval_max_size": 853,
            "model.fpn_channels": 128,
            "model.fusion_channels": 128,
            "steps": 20_000,
            "optimizer.learning_rate": 0.02,
            "optimizer.warmup_steps": 500,
            "inference.min_stuff_area": 1024,
            "eval_every": 5000,
            "checkpoint_every": 1000,
        },
    )
    if data_dir:
        config = _sized_from_statistics(config, data_dir)
    return variant(config, name, "custom")


def _sized_from_statistics(config: Config, data_dir: str) -> Config:
    from pcv.data.tfds_panoptic import read_stats  # tensorflow_datasets takes seconds to import

    try:
        stats = read_stats(data_dir)
    except (PanopticDataError, OSError, ValueError) as e:
        print(f"custom recipe: no statistics ({e}); the fixed recipe for photos")
        return config
    split = config.data.train_split if config.data.train_split in stats else next(iter(stats))
    choices = recipe.choose(stats[split])
    print("\n".join(recipe.describe(choices, f"{data_dir} ({split} split)")))
    return override(config, {field: value for field, value, _ in choices})

r"""Prepare a COCO-format panoptic dataset for training: validate it and write array_record.

COCO 2017 panoptic (``--manual_dir`` holds the official zips
``panoptic_annotations_trainval2017.zip``, ``train2017.zip``, ``val2017.zip``,
read in place, or their extracted folders ``annotations/panoptic_{train,val}2017.json``,
``annotations/panoptic_{train,val}2017/``, ``{train,val}2017/``)::

    python -m pcv.prepare --dataset=coco --manual_dir=~/data/coco --data_dir=~/pcv_data

Cityscapes (first run cityscapesscripts' ``createPanopticImgs`` so that
``gtFine/cityscapes_panoptic_{split}.json`` and ``gtFine/cityscapes_panoptic_{split}/``
exist next to ``leftImg8bit/``)::

    python -m pcv.prepare --dataset=cityscapes --manual_dir=~/data/cityscapes --data_dir=~/pcv_data

Your own data in COCO panoptic format (an annotations JSON whose
``categories`` give id, name, isthing and color; a PNG folder; an image
folder), one to three of the splits train / val / test::

    python -m pcv.prepare --dataset=custom --name=mydata \
        --train_json=ann/train.json --train_png_dir=ann/train --train_image_dir=images/train \
        --val_json=ann/val.json --val_png_dir=ann/val --val_image_dir=images/val \
        --data_dir=~/pcv_data [--on_error=skip]

It prints, per split, the number of examples written, the skipped files and
why (``--on_error=skip``; the default stops at the first bad file, naming it
and the segment), and the output directory, e.g.::

    val: 5000 examples, 0 skipped
    val: 5000 images, 480x640 median (shorter side 200-640)
      instances: 36335 (6.0 per image median, 48 images without); extent 9 / 50 / 291 px ...
      stuff: ...; crowd ...; void ...
    prepared: /home/me/pcv_data/pcv_panoptic/coco/1.0.0

and keeps the dataset's statistics beside it (:mod:`pcv.data.stats`);
``python -m pcv.prepare --stats=<that directory>`` prints them again, class
by class.

Train on it with ``config.data.name = "panoptic"`` and
``config.data.data_dir`` = that directory (see :func:`pcv.data.make_datasets`).
Bad input (a missing flag, file or folder, bad data) is one ``error:`` line
naming it, exit code 1. Library: :func:`pcv.data.tfds_panoptic.prepare_panoptic`.
No TensorFlow is needed; building takes about as long as reading every file once.
"""

from __future__ import annotations

import logging
import sys

from absl import flags

from pcv import cli
from pcv.data import coco_panoptic
from pcv.data.stats import summary_lines
from pcv.errors import ConfigError

CUSTOM_SPLITS = ("train", "val", "test")
DATASETS = ("coco", "cityscapes", "custom")


def build_sources(fv) -> tuple[str, dict]:
    """``(name, {split: COCOPanoptic})`` from the flags; errors name the flag."""
    kw = {"on_error": fv.on_error}
    splits = [s.strip() for s in fv.splits.split(",") if s.strip()] if fv.splits else None
    if fv.dataset in ("coco", "cityscapes"):
        if not fv.manual_dir:
            raise ConfigError(f"--manual_dir is required for --dataset={fv.dataset}")
        make = coco_panoptic.coco2017 if fv.dataset == "coco" else coco_panoptic.cityscapes
        return fv.name or fv.dataset, {s: make(fv.manual_dir, s, **kw) for s in splits or ["train", "val"]}
    if not fv.name:
        raise ConfigError("--name is required for --dataset=custom")
    sources = {}
    for split in splits or CUSTOM_SPLITS:
        paths = [getattr(fv, f"{split}_{k}", None) for k in ("json", "png_dir", "image_dir")]
        if not any(paths):
            continue
        if not all(paths):
            missing = [f"--{split}_{k}" for k, v in zip(("json", "png_dir", "image_dir"), paths) if not v]
            raise ConfigError(f"split {split}: missing {', '.join(missing)}")
        sources[split] = coco_panoptic.custom(*paths, split=split, **kw)
    if not sources:
        raise ConfigError("--dataset=custom needs at least --train_json, --train_png_dir, --train_image_dir")
    return fv.name, sources


def define_flags(fv) -> None:
    flags.DEFINE_enum("dataset", None, DATASETS, "Which layout: coco, cityscapes or custom.", flag_values=fv)
    flags.DEFINE_string("data_dir", None, "Root of prepared datasets.", flag_values=fv)
    flags.DEFINE_string("manual_dir", None, "coco / cityscapes: where the downloaded files are.", flag_values=fv)
    flags.DEFINE_string("name", None, "Dataset name (default: --dataset; required for custom).", flag_values=fv)
    flags.DEFINE_string("splits", None, "Comma-separated splits (default coco/cityscapes: train,val).", flag_values=fv)
    flags.DEFINE_enum(
        "on_error",
        "raise",
        coco_panoptic.ON_ERROR,
        "raise: stop at the first bad file; skip: leave it out, counted and reported.",
        flag_values=fv,
    )
    flags.DEFINE_bool("overwrite", False, "Rebuild an already prepared dataset.", flag_values=fv)
    flags.DEFINE_string(
        "stats", None, "Print the statistics of a prepared dataset (its folder) and exit.", flag_values=fv
    )
    for split in CUSTOM_SPLITS:
        flags.DEFINE_string(f"{split}_json", None, f"custom: {split} annotations JSON.", flag_values=fv)
        flags.DEFINE_string(f"{split}_png_dir", None, f"custom: {split} panoptic PNG folder.", flag_values=fv)
        flags.DEFINE_string(f"{split}_image_dir", None, f"custom: {split} image folder.", flag_values=fv)


def main(argv=None) -> int:
    fv = cli.new_flags()
    define_flags(fv)

    def program(args, overrides):
        if fv.stats:
            from pcv.data.tfds_panoptic import read_stats  # tensorflow_datasets takes seconds to import

            for split, stats in read_stats(fv.stats).items():
                print("\n".join(summary_lines(split, stats, per_class=True)))
            return 0
        if not fv.dataset or not fv.data_dir:
            raise ConfigError("--dataset (coco, cityscapes or custom) and --data_dir are required")
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
        import tensorflow_datasets as tfds  # takes seconds to import: only when preparing

        from pcv.data.tfds_panoptic import prepare_panoptic

        tfds.disable_progress_bar()  # our summary says what was written; errors stay one line
        name, sources = build_sources(fv)
        report = prepare_panoptic(name, sources, fv.data_dir, overwrite=fv.overwrite)
        for split, info in report["splits"].items():
            print(f"{split}: {info['examples']} examples, {len(info['skipped'])} skipped")
            for s in info["skipped"]:
                print(f"  skipped {s['file']}: {s['reason']}")
        for split, info in report["splits"].items():
            print("\n".join(summary_lines(split, info["stats"])))
        print(f"prepared: {report['path']}")
        return 0

    return cli.run(fv, program, argv)


if __name__ == "__main__":
    sys.exit(main())

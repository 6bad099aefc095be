r"""Prepare a COCO-format panoptic dataset for training: validate it and write array_record.

COCO 2017 panoptic (``--manual_dir`` holds the official zips
``panoptic_annotations_trainval2017.zip``, ``train2017.zip``, ``val2017.zip``,
read in place, or their extracted folders ``annotations/panoptic_{train,val}2017.json``,
``annotations/panoptic_{train,val}2017/``, ``{train,val}2017/``)::

    python -m pcv.data.prepare --dataset=coco --manual_dir=~/data/coco --data_dir=~/pcv_data

Cityscapes (first run cityscapesscripts' ``createPanopticImgs`` so that
``gtFine/cityscapes_panoptic_{split}.json`` and ``gtFine/cityscapes_panoptic_{split}/``
exist next to ``leftImg8bit/``)::

    python -m pcv.data.prepare --dataset=cityscapes --manual_dir=~/data/cityscapes --data_dir=~/pcv_data

Your own data in COCO panoptic format (an annotations JSON whose
``categories`` give id, name, isthing and color; a PNG folder; an image
folder), one to three of the splits train / val / test::

    python -m pcv.data.prepare --dataset=custom --name=mydata \
        --train_json=ann/train.json --train_png_dir=ann/train --train_image_dir=images/train \
        --val_json=ann/val.json --val_png_dir=ann/val --val_image_dir=images/val \
        --data_dir=~/pcv_data [--on_error=skip]

It prints, per split, the number of examples written, the skipped files and
why (``--on_error=skip``; the default stops at the first bad file, naming it
and the segment), and the output directory, e.g.::

    val: 5000 examples, 0 skipped
    prepared: /home/me/pcv_data/pcv_panoptic/coco/1.0.0

Train on it with ``config.data.name = "panoptic"`` and
``config.data.data_dir`` = that directory (see :func:`pcv.data.make_datasets`).
No TensorFlow is needed; building takes about as long as reading every file once.
"""

from __future__ import annotations

import argparse
import logging
import sys

from pcv.data import coco_panoptic
from pcv.data.tfds_panoptic import prepare_panoptic

CUSTOM_SPLITS = ("train", "val", "test")


def build_sources(args) -> tuple[str, dict]:
    """``(name, {split: COCOPanoptic})`` from parsed flags; errors name the flag."""
    kw = {"on_error": args.on_error}
    splits = args.splits.split(",") if args.splits else None
    if args.dataset in ("coco", "cityscapes"):
        if not args.manual_dir:
            raise SystemExit(f"--manual_dir is required for --dataset={args.dataset}")
        make = coco_panoptic.coco2017 if args.dataset == "coco" else coco_panoptic.cityscapes
        splits = splits or ["train", "val"]
        return args.name or args.dataset, {s: make(args.manual_dir, s, **kw) for s in splits}
    if args.dataset == "custom":
        if not args.name:
            raise SystemExit("--name is required for --dataset=custom")
        sources = {}
        for split in splits or CUSTOM_SPLITS:
            paths = [getattr(args, f"{split}_{k}", None) for k in ("json", "png_dir", "image_dir")]
            if not any(paths):
                continue
            if not all(paths):
                missing = [f"--{split}_{k}" for k, p in zip(("json", "png_dir", "image_dir"), paths) if not p]
                raise SystemExit(f"split {split}: missing {', '.join(missing)}")
            sources[split] = coco_panoptic.custom(*paths, split=split, **kw)
        if not sources:
            raise SystemExit("--dataset=custom needs at least --train_json, --train_png_dir, --train_image_dir")
        return args.name, sources
    raise SystemExit(f"--dataset must be coco, cityscapes or custom, got {args.dataset!r}")


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m pcv.data.prepare", description=__doc__.splitlines()[0])
    p.add_argument("--dataset", required=True, choices=("coco", "cityscapes", "custom"))
    p.add_argument("--data_dir", required=True, help="root of prepared datasets")
    p.add_argument("--manual_dir", help="coco / cityscapes: where the downloaded files are")
    p.add_argument("--name", help="dataset name (default: --dataset; required for custom)")
    p.add_argument("--splits", help="comma-separated splits (default coco/cityscapes: train,val)")
    p.add_argument("--on_error", default="raise", choices=coco_panoptic.ON_ERROR,
                   help="raise: stop at the first bad file; skip: leave it out, counted and reported")
    p.add_argument("--overwrite", action="store_true", help="rebuild an already prepared dataset")
    for split in CUSTOM_SPLITS:
        p.add_argument(f"--{split}_json", help=f"custom: {split} annotations JSON")
        p.add_argument(f"--{split}_png_dir", help=f"custom: {split} panoptic PNG folder")
        p.add_argument(f"--{split}_image_dir", help=f"custom: {split} image folder")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    name, sources = build_sources(args)
    report = prepare_panoptic(name, sources, args.data_dir, overwrite=args.overwrite)
    for split, info in report["splits"].items():
        print(f"{split}: {info['examples']} examples, {len(info['skipped'])} skipped")
        for s in info["skipped"]:
            print(f"  skipped {s['file']}: {s['reason']}")
    print(f"prepared: {report['path']}")
    return report


if __name__ == "__main__":
    main()

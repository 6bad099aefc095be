"""Read the official tfds ``coco/2017_panoptic`` as pcv examples (needs TensorFlow).

If TensorFlow is installed and ``coco/2017_panoptic`` is prepared (in
``array_record`` format, for random access:
``tfds build coco/2017_panoptic --file_format=array_record``), this source
yields the examples of :mod:`pcv.data.panoptic` without preparing COCO again::

    ds = OfficialCocoPanoptic("validation", data_dir="~/tensorflow_datasets")

The official builder stores each segment's category as ``label``, the
*position* of the category in the annotations JSON's list, not the COCO
category id (``label`` 0 is id 1 ``person``, ``label`` 80 is id 92
``banner``). :func:`official_to_example` maps it back with
:data:`~pcv.data.coco_categories.COCO_PANOPTIC_CATEGORIES`, after checking
that the builder's label names are those categories' names in that order.
Its boxes are stored normalised and as floats, so ``bbox`` is measured again
on the panoptic map; ``area`` is checked against the map.

Without TensorFlow, :func:`official_to_example` still works on a record dict
(tests use a hand-made one); :class:`OfficialCocoPanoptic` raises ImportError.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping, Sequence

import numpy as np

from pcv.data.coco_categories import COCO_PANOPTIC_CATEGORIES
from pcv.data.coco_panoptic import PanopticDataError, check_example
from pcv.data.panoptic import LabelSpace, PanopticSource

NAME = "coco/2017_panoptic"


def official_to_example(record: Mapping, categories: Sequence[Mapping] = COCO_PANOPTIC_CATEGORIES) -> dict:
    """One decoded ``coco/2017_panoptic`` record -> a pcv example.

    Args:
      record: ``image`` uint8 ``[H, W, 3]``, ``panoptic_image`` uint8
        ``[H, W, 3]`` (ids as RGB), ``image/id``, ``image/filename``,
        ``panoptic_image/filename``, and ``panoptic_objects`` with ``id``,
        ``label``, ``is_crowd``, ``area`` ``[N]`` (``bbox`` is ignored).
      categories: the category list whose positions ``label`` indexes.
    Returns:
      The example dict (:mod:`pcv.data.panoptic`), ``category_id`` = the
      COCO id of ``categories[label]``.
    """
    text = lambda v: v.decode("utf-8") if isinstance(v, bytes) else str(v)  # noqa: E731
    where = f"{NAME} {text(record.get('panoptic_image/filename', '?'))}"
    objects = record["panoptic_objects"]
    labels = np.asarray(objects["label"]).reshape(-1)
    segments = []
    for j, label in enumerate(labels.tolist()):
        sid = int(np.asarray(objects["id"]).reshape(-1)[j])
        if not 0 <= label < len(categories):
            raise PanopticDataError(f"{where}: segment id {sid} has label {label}, outside 0..{len(categories) - 1}")
        segments.append({
            "id": sid,
            "category_id": int(categories[label]["id"]),
            "iscrowd": int(bool(np.asarray(objects["is_crowd"]).reshape(-1)[j])),
            "area": int(np.asarray(objects["area"]).reshape(-1)[j]),
        })
    image = np.asarray(record["image"], np.uint8)
    rgb = np.asarray(record["panoptic_image"]).astype(np.int32)  # widen: 256 * G overflows uint8
    ids = rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]
    measured = check_example(image, ids, segments, where)
    image_id = record["image/id"]
    return {
        "image": image,
        "segment_ids": ids,
        "segments_info": measured,
        "image_id": int(image_id),
        "file_name": text(record["image/filename"]),
        "panoptic_file_name": text(record.get("panoptic_image/filename", "")),
    }


class OfficialCocoPanoptic(PanopticSource):
    """Random access over a split (``"train"``, ``"validation"``) of the official
    tfds ``coco/2017_panoptic``; the source protocol of pcv (module docstring)."""

    def __init__(self, split: str, data_dir: str | os.PathLike | None = None):
        if importlib.util.find_spec("tensorflow") is None:
            raise ImportError(f"reading the official tfds {NAME} needs TensorFlow (its images are encoded by "
                              "tf); install it, or prepare COCO with python -m pcv.data.prepare --dataset=coco")
        self.split = split
        self.data_dir = None if data_dir is None else os.path.expanduser(str(data_dir))
        self.categories = [dict(c) for c in COCO_PANOPTIC_CATEGORIES]
        self.label_space = LabelSpace(self.categories)
        self._source = None
        self._length = len(self._open())

    def _open(self):
        if self._source is None:
            import tensorflow_datasets as tfds

            builder = tfds.builder(NAME, data_dir=self.data_dir)
            if not builder.is_prepared():
                raise FileNotFoundError(f"{NAME} is not prepared in {builder.data_dir}")
            names = list(builder.info.features["panoptic_objects"]["label"].names)
            expected = [c["name"] for c in self.categories]
            if names != expected:
                raise PanopticDataError(f"{NAME} in {builder.data_dir}: its label names differ from the 133 COCO "
                                        f"panoptic categories (first difference at label "
                                        f"{next(i for i, (a, b) in enumerate(zip(names + [None], expected)) if a != b)})")
            if self.split not in builder.info.splits:
                raise ValueError(f"split {self.split!r} is not in {NAME}; it has {sorted(builder.info.splits)}")
            try:
                self._source = builder.as_data_source(self.split)
            except Exception as e:  # tfds raises a bare error for tfrecord files
                raise ValueError(f"{NAME} in {builder.data_dir} is not in array_record format, which random access "
                                 f"needs: tfds build {NAME} --file_format=array_record ({e})") from e
        return self._source

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_source"] = None
        return state

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: int) -> dict:
        return official_to_example(self._open()[self._position(index)], self.categories)

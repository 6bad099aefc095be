"""The panoptic example format shared by every data source, and its label space.

An *example* is a dict (COCO panoptic, in memory):

- ``image``: uint8 ``[H, W, 3]`` RGB.
- ``segment_ids``: int32 ``[H, W]``, 0 = void (unlabelled).
- ``segments_info``: COCO list of ``{"id", "category_id", "iscrowd", "area",
  "bbox"}`` (``bbox`` is ``[x, y, w, h]``), one entry per non-zero id of the
  map and no other.
- ``image_id``: int (or str), unique within a split.
- optionally ``file_name``: the stem (or name) used when the split is written
  out as files.

A :class:`LabelSpace` maps the dataset's (possibly non-contiguous) COCO
category ids to contiguous *train ids* 0..C-1: things first, then stuff,
each group sorted by category id. For COCO panoptic that is plain id order
(things have ids 1..90, stuff 92..200).

:func:`gt_for_pq` hands an example to :func:`pcv.evaluation.pq_image_stats`
in memory; :func:`write_coco_panoptic` writes a split as COCO panoptic
ground truth (JSON + PNGs) for :func:`pcv.evaluation.pq_compute` and
``python -m pcv.evaluation.pq``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

EXAMPLE_KEYS = ("image", "segment_ids", "segments_info", "image_id")


class LabelSpace:
    """Category ids <-> contiguous train ids (things first, then stuff).

    Attributes:
      categories: the COCO category dicts in train-id order (copies).
      category_ids: tuple, the category id of each train id.
      train_id_of_category: dict, category id -> train id.
      thing_mask: bool ``[C]``, True where the train id is a thing class.
      names: tuple, the category name of each train id.
      num_classes: C.
    """

    def __init__(self, categories: Iterable[Mapping]):
        cats = [dict(c) for c in categories]
        if not cats:
            raise ValueError("LabelSpace needs at least one category")
        seen = set()
        for c in cats:
            for key in ("id", "isthing"):
                if key not in c:
                    raise ValueError(f"category {c!r} has no {key!r}")
            if int(c["id"]) in seen:
                raise ValueError(f"category id {c['id']} appears twice")
            seen.add(int(c["id"]))
        # Things first, then stuff; each by category id.
        cats.sort(key=lambda c: (not c["isthing"], int(c["id"])))
        self.categories: tuple[dict, ...] = tuple(cats)
        self.category_ids: tuple[int, ...] = tuple(int(c["id"]) for c in cats)
        self.train_id_of_category: dict[int, int] = {cid: t for t, cid in enumerate(self.category_ids)}
        self.names: tuple[str, ...] = tuple(str(c.get("name", c["id"])) for c in cats)
        thing_mask = np.array([bool(c["isthing"]) for c in cats], bool)
        thing_mask.setflags(write=False)
        self.thing_mask: np.ndarray = thing_mask

    @property
    def num_classes(self) -> int:
        return len(self.category_ids)

    def train_segments(self, segments_info: Iterable[Mapping]) -> list[dict]:
        """``segments_info`` -> the segments :func:`pcv.targets.make_targets` takes.

        Each output has ``id``, ``train_id``, ``isthing`` and ``iscrowd``
        (missing ``iscrowd`` = 0). Unknown category ids raise ``ValueError``.
        """
        out = []
        for seg in segments_info:
            category_id = int(seg["category_id"])
            train_id = self.train_id_of_category.get(category_id)
            if train_id is None:
                raise ValueError(f"segment {seg.get('id')!r} has category_id {category_id}, not in the label space")
            out.append(
                {
                    "id": int(seg["id"]),
                    "train_id": train_id,
                    "isthing": bool(self.thing_mask[train_id]),
                    "iscrowd": int(seg.get("iscrowd", 0)),
                }
            )
        return out

    def __len__(self) -> int:
        return self.num_classes

    def __repr__(self) -> str:
        groups = ", ".join(f"{t}:{n}{'*' if th else ''}" for t, (n, th) in enumerate(zip(self.names, self.thing_mask)))
        return f"LabelSpace({groups})  (* = thing)"

    def __eq__(self, other) -> bool:
        return isinstance(other, LabelSpace) and other.categories == self.categories

    def __hash__(self) -> int:
        return hash(tuple((c["id"], bool(c["isthing"])) for c in self.categories))


class PanopticSource:
    """The random-access source protocol every pcv data source follows.

    A subclass sets ``label_space`` (a :class:`LabelSpace`) and implements
    ``__len__`` and ``__getitem__`` (an example, module docstring); this base
    derives ``category_ids``, ``thing_mask`` and ``num_classes`` from the label
    space and gives :meth:`_position`, the index check every source shares.
    """

    label_space: LabelSpace

    @property
    def category_ids(self) -> tuple[int, ...]:
        """The dataset category id of each train id."""
        return self.label_space.category_ids

    @property
    def thing_mask(self) -> np.ndarray:
        """bool ``[C]`` by train id."""
        return self.label_space.thing_mask

    @property
    def num_classes(self) -> int:
        return self.label_space.num_classes

    def _position(self, index) -> int:
        """``index`` (numpy ints too, as grain passes them; negative from the end) -> 0..len-1."""
        index, n = int(index), len(self)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"index {index} out of range for {self!r} ({n} examples)")
        return index


def as_label_space(label_space) -> LabelSpace:
    """A :class:`LabelSpace` as is, or one built from COCO category dicts."""
    if isinstance(label_space, LabelSpace):
        return label_space
    if isinstance(label_space, Mapping) or isinstance(label_space, (str, bytes)):
        raise TypeError(
            "expected a LabelSpace (e.g. dataset.label_space) or a list of COCO categories, got a "
            f"{type(label_space).__name__}: a category -> train id mapping does not say which are things"
        )
    return LabelSpace(label_space)


def segments_from_ids(segment_ids: np.ndarray, categories_of: Mapping[int, tuple[int, int]]) -> list[dict]:
    """COCO ``segments_info`` (id, category_id, iscrowd, area, bbox) measured on a map.

    Args:
      segment_ids: int ``[H, W]``, 0 = void.
      categories_of: segment id -> ``(category_id, iscrowd)`` for every
        non-zero id of the map (extra entries are ignored).
    Returns:
      One dict per non-zero id present, in ascending id order; ``bbox`` is
      the tight ``[x, y, w, h]`` in pixels.
    """
    ids = np.asarray(segment_ids)
    present, inverse, areas = np.unique(ids, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(ids.shape)
    out = []
    for j, sid in enumerate(present.tolist()):
        if sid == 0:
            continue
        mask = inverse == j
        rows = np.flatnonzero(mask.any(1))
        cols = np.flatnonzero(mask.any(0))
        category_id, iscrowd = categories_of[sid]
        out.append(
            {
                "id": int(sid),
                "category_id": int(category_id),
                "iscrowd": int(iscrowd),
                "area": int(areas[j]),
                "bbox": [int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)],
            }
        )
    return out


def gt_for_pq(example: Mapping) -> tuple[np.ndarray, list[dict]]:
    """``(gt_ids [H, W], gt_segments)``: the ground-truth arguments of ``pq_image_stats``.

    Usage::

        stat += pq_image_stats(*gt_for_pq(example), pred_ids, pred_segments, categories)
    """
    return np.asarray(example["segment_ids"]), list(example["segments_info"])


def example_stem(example: Mapping, split: str) -> str:
    """The file stem of an example: its ``file_name`` without suffix, else ``{split}_{image_id:08d}``."""
    if example.get("file_name"):
        return os.path.splitext(os.path.basename(str(example["file_name"])))[0]
    image_id = example["image_id"]
    if isinstance(image_id, (int, np.integer)):
        return f"{split}_{int(image_id):08d}"
    return f"{split}_{image_id}"


def write_coco_panoptic(
    dataset,
    folder: str | os.PathLike,
    *,
    split: str | None = None,
    indices: Sequence[int] | None = None,
) -> dict[str, Path]:
    """Write (part of) a dataset as COCO panoptic ground truth, laid out like COCO.

    ``folder/panoptic_{split}.json``, ``folder/panoptic_{split}/{stem}.png``
    (segment ids as RGB, :func:`pcv.evaluation.id2rgb`) and
    ``folder/{split}/{stem}.png`` (the images, lossless). The JSON has
    ``images`` (id, file_name, height, width), ``annotations`` (image_id,
    file_name, segments_info) and ``categories``. Score predictions with::

        python -m pcv.evaluation.pq --gt-json folder/panoptic_val.json --pred-json pred.json

    Args:
      dataset: random access (``len``, ``[i]``) over examples (module
        docstring), with a ``categories`` attribute (COCO category dicts).
      folder: where to write; created if needed.
      split: the name in the paths; default ``dataset.split``, else "data".
      indices: which examples; default all.
    Returns:
      ``{"json": path, "panoptic_folder": path, "image_folder": path}``.
    """
    from pcv.evaluation.pq import id2rgb  # lazy: keeps `import pcv.data` light

    split = split or getattr(dataset, "split", None) or "data"
    folder = Path(folder)
    panoptic_folder = folder / f"panoptic_{split}"
    image_folder = folder / split
    panoptic_folder.mkdir(parents=True, exist_ok=True)
    image_folder.mkdir(parents=True, exist_ok=True)
    indices = range(len(dataset)) if indices is None else indices

    images, annotations = [], []
    for i in indices:
        example = dataset[int(i)]
        stem = example_stem(example, split)
        image = np.asarray(example["image"], np.uint8)
        ids = np.asarray(example["segment_ids"])
        Image.fromarray(image).save(image_folder / f"{stem}.png")
        Image.fromarray(id2rgb(ids)).save(panoptic_folder / f"{stem}.png")
        image_id = example["image_id"]
        image_id = int(image_id) if isinstance(image_id, (int, np.integer)) else image_id
        images.append({"id": image_id, "file_name": f"{stem}.png", "height": ids.shape[0], "width": ids.shape[1]})
        annotations.append(
            {
                "image_id": image_id,
                "file_name": f"{stem}.png",
                "segments_info": [_plain(s) for s in example["segments_info"]],
            }
        )
    gt = {
        "info": {"description": f"pcv panoptic ground truth, split {split}"},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": [_plain(c) for c in dataset.categories],
    }
    json_path = folder / f"panoptic_{split}.json"
    with open(json_path, "w") as f:
        json.dump(gt, f)
    return {"json": json_path, "panoptic_folder": panoptic_folder, "image_folder": image_folder}


def _plain(d: Mapping) -> dict:
    """A JSON-ready copy: numpy scalars and arrays -> Python."""
    out = {}
    for k, v in d.items():
        if isinstance(v, np.ndarray):
            v = v.tolist()
        elif isinstance(v, np.generic):
            v = v.item()
        elif isinstance(v, (list, tuple)):
            v = [x.item() if isinstance(x, np.generic) else x for x in v]
        out[k] = v
    return out

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

:func:`rgb2id` / :func:`id2rgb` are the PNG encoding of segment ids (id =
R + 256 G + 256² B). :func:`gt_for_pq` hands an example to
:func:`pcv.evaluation.pq_image_stats` in memory; writing a split as COCO
panoptic files is :func:`pcv.evaluation.write_coco_panoptic`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

import numpy as np

EXAMPLE_KEYS = ("image", "segment_ids", "segments_info", "image_id")


# ----------------------------------------------------------------------------
# Segment ids <-> RGB: the COCO panoptic PNG encoding.
# ----------------------------------------------------------------------------


def rgb2id(color):
    """Segment ids from COCO panoptic colours: id = R + 256 G + 256**2 B.

    Args:
      color: ``[..., 3]`` array (an RGB image ``[H, W, 3]``), or one ``(R, G,
        B)`` triple.

    Returns:
      ``[...]`` int64 ids, or a Python int for a single triple. Channels are
      widened before combining: in uint8, ``256 * G`` would wrap.
    """
    arr = np.asarray(color)
    if arr.shape[-1:] != (3,):
        raise ValueError(f"rgb2id expects [..., 3] colours, got shape {arr.shape}")
    arr = arr.astype(np.int64)
    ids = arr[..., 0] + 256 * arr[..., 1] + 256 * 256 * arr[..., 2]
    return int(ids) if ids.ndim == 0 else ids


def id2rgb(ids):
    """COCO panoptic colours from segment ids, the inverse of ``rgb2id``.

    Args:
      ids: ``[...]`` non-negative integer ids below 256**3, or one int.

    Returns:
      ``[..., 3]`` uint8 (an ``[H, W, 3]`` image for an ``[H, W]`` map), or a
      ``(R, G, B)`` tuple of ints for a single id.
    """
    arr = np.asarray(ids)
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"id2rgb expects integer ids, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if arr.size and (arr.min() < 0 or arr.max() >= 256**3):
        raise ValueError("id2rgb: segment ids must lie in [0, 256**3) to fit in RGB")
    rgb = np.stack([arr % 256, arr // 256 % 256, arr // 256**2], axis=-1).astype(np.uint8)
    return tuple(int(c) for c in rgb) if rgb.ndim == 1 else rgb


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
        """``segments_info`` -> the segments :func:`pcv.data.targets.make_targets` takes.

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


class Subset(PanopticSource):
    """Examples ``start, start + 1, ..., stop - 1`` of another source, as a source of their own.

    How a calibration split is held out of a training split without copying
    it (:func:`pcv.data.make_datasets`).
    """

    def __init__(self, source, start: int, stop: int, split: str):
        if not 0 <= start <= stop <= len(source):
            raise ValueError(f"subset [{start}, {stop}) of a source of {len(source)} examples")
        self.source, self.start, self.stop, self.split = source, int(start), int(stop), split
        self.label_space = source.label_space
        self.categories = list(getattr(source, "categories", None) or [dict(c) for c in source.label_space.categories])

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, index) -> dict:
        return self.source[self.start + self._position(index)]

    def __repr__(self) -> str:
        return f"Subset({self.source!r}, [{self.start}, {self.stop}), split={self.split!r})"


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

"""Prepared panoptic datasets: a tfds builder that writes array_record, and its reader.

No TensorFlow is needed to build or to read: ``tensorflow_datasets`` writes
``array_record`` files and reads them back with its numpy example parser.

Layout of a prepared dataset (``prepare_panoptic`` returns the path)::

    {data_dir}/pcv_panoptic/{name}/1.0.0/
        pcv_panoptic-{split}.array_record-0000i-of-0000n   the examples
        dataset_info.json, features.json                   tfds metadata
        metadata.json                                      tfds metadata: the categories
        categories.json                                    categories + train-id mapping
        stats.json                                         dataset statistics (pcv.data.stats)
        skipped.json                                       per split: skipped files and why

One stored example (the files are kept as they were, not re-encoded, and are
decoded with PIL on read: exact, and as small as the originals):

- ``image``: the image file's bytes (JPEG, PNG, ...);
- ``panoptic``: the panoptic PNG's bytes (ids as RGB);
- ``image_id`` (text; ``image_id_is_int`` says whether it was an int),
  ``file_name`` (the image's), ``panoptic_file_name``, ``height``, ``width``;
- ``segments``: ``id``, ``category_id``, ``iscrowd``, ``area`` ``[N]`` and
  ``bbox`` ``[N, 4]`` (COCO ``[x, y, w, h]``), int64, in ``segments_info`` order.

``categories.json`` holds ``categories`` (the annotations JSON's list, its
order) and ``category_ids`` (the dataset category id of each train id, i.e.
:class:`~pcv.data.panoptic.LabelSpace` order: things first, then stuff,
each by id). Evaluation and export map train ids back with it.

Every example is validated while building (:mod:`pcv.data.coco_panoptic`):
an error stops the build naming the file and segment, or with
``on_error="skip"`` the example is left out, logged, counted in the report
and listed in ``skipped.json``.

::

    report = prepare_panoptic("mydata", {"train": custom(...), "val": custom(...)}, "~/pcv_data")
    ds = PreparedPanoptic(report["path"], "train")   # random access, picklable
    ds[0]["segment_ids"], ds.label_space
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

from pcv.data.coco_panoptic import COCOPanoptic, PanopticDataError, check_categories, decode_record
from pcv.data.panoptic import LabelSpace, PanopticSource
from pcv.data.stats import DatasetStats
from pcv.errors import ConfigError

log = logging.getLogger(__name__)

BUILDER_NAME = "pcv_panoptic"
CATEGORIES_FILE = "categories.json"
SKIPPED_FILE = "skipped.json"
STATS_FILE = "stats.json"


def _features() -> tfds.features.FeaturesDict:
    ids = lambda: tfds.features.Tensor(shape=(None,), dtype=np.int64)  # noqa: E731  [N]
    return tfds.features.FeaturesDict(
        {
            "image": tfds.features.Tensor(shape=(), dtype=np.object_),  # encoded bytes, as stored
            "panoptic": tfds.features.Tensor(shape=(), dtype=np.object_),  # PNG bytes, ids as RGB
            "image_id": tfds.features.Text(),
            "image_id_is_int": np.bool_,
            "file_name": tfds.features.Text(),
            "panoptic_file_name": tfds.features.Text(),
            "height": np.int64,
            "width": np.int64,
            "segments": tfds.features.FeaturesDict(
                {
                    "id": ids(),
                    "category_id": ids(),
                    "iscrowd": ids(),
                    "area": ids(),
                    "bbox": tfds.features.Tensor(shape=(None, 4), dtype=np.int64),  # [N, 4] x, y, w, h
                }
            ),
        }
    )


class PcvPanoptic(tfds.core.GeneratorBasedBuilder):
    """tfds builder: COCO-format panoptic splits (:class:`COCOPanoptic`) -> array_record.

    One builder config per dataset ``name`` (``coco``, ``cityscapes``, a
    user's name), made on the fly. Use :func:`prepare_panoptic`, which also
    writes ``categories.json`` and ``skipped.json``.
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Encoded image and panoptic PNG bytes plus segments, categories in metadata."}

    # tfds looks next to a builder's code for download checksums; there are
    # none (nothing is downloaded), and the lookup needs the optional
    # importlib_resources package for builders inside a package.
    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls):
        return None

    def __init__(self, *, name: str, sources: Mapping[str, COCOPanoptic], categories: list[dict], **kwargs):
        self._sources = dict(sources)
        self._categories = categories
        self.stats = {split: DatasetStats(categories) for split in self._sources}
        config = tfds.core.BuilderConfig(name=name, description=f"COCO-format panoptic dataset {name!r}")
        super().__init__(config=config, file_format="array_record", **kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__.splitlines()[0],
            features=_features(),
            # Keep the annotations JSON's order: reproducible indices.
            disable_shuffling=True,
            metadata=tfds.core.MetadataDict(categories=self._categories),
        )

    def _split_generators(self, dl_manager):
        return {split: self._generate_examples(source, self.stats[split]) for split, source in self._sources.items()}

    def _generate_examples(self, source: COCOPanoptic, stats: DatasetStats):
        for index, record in source.iter_records():
            stats.add(record["height"], record["width"], record["segments_info"])
            yield index, _encode(record)


def _encode(record: Mapping) -> dict:
    """A :meth:`COCOPanoptic.read_record` record -> the stored features."""
    segs = record["segments_info"]
    col = lambda key: np.array([int(s[key]) for s in segs], np.int64)  # noqa: E731
    return {
        "image": record["image_bytes"],
        "panoptic": record["panoptic_bytes"],
        "image_id": str(record["image_id"]),
        "image_id_is_int": isinstance(record["image_id"], (int, np.integer)),
        "file_name": record["file_name"],
        "panoptic_file_name": record["panoptic_file_name"],
        "height": int(record["height"]),
        "width": int(record["width"]),
        "segments": {
            "id": col("id"),
            "category_id": col("category_id"),
            "iscrowd": col("iscrowd"),
            "area": col("area"),
            "bbox": np.array([list(s["bbox"]) for s in segs], np.int64).reshape(len(segs), 4),
        },
    }


def prepare_panoptic(
    name: str,
    sources: Mapping[str, COCOPanoptic],
    data_dir: str | os.PathLike,
    *,
    overwrite: bool = False,
) -> dict:
    """Validate and write splits as a prepared dataset (module docstring for the layout).

    Args:
      name: the dataset's name: letters, digits, ``_``, ``-`` and ``.``.
      sources: split name -> :class:`COCOPanoptic` (its ``on_error`` decides
        raise or skip). All splits must have the same categories.
      data_dir: the root of prepared datasets.
      overwrite: rebuild if the dataset is already there (else an error).
    Returns:
      ``{"path": str, "splits": {split: {"examples": int, "skipped": [{"file", "reason"}]}}}``.
    Raises:
      PanopticDataError: bad data (``on_error="raise"``), categories that
        differ between splits, or a split with no valid example.
      FileExistsError: already prepared and not ``overwrite``.
    """
    if not re.fullmatch(r"[A-Za-z0-9_.\-]+", name or ""):
        raise ConfigError(f"dataset name {name!r}: use letters, digits, '_', '-', '.'")
    if not sources:
        raise ValueError("prepare_panoptic needs at least one split")
    first_split, first = next(iter(sources.items()))
    for split, source in sources.items():
        if not re.fullmatch(r"\w+", split):
            raise ConfigError(f"split name {split!r}: use letters, digits and '_'")
        if LabelSpace(source.categories) != first.label_space:
            raise PanopticDataError(
                f"split {split!r} ({source.where}) has other categories than split {first_split!r} ({first.where})"
            )
        if len(source) == 0:
            raise PanopticDataError(
                f"split {split!r}: no usable annotations in {source.where} (skipped {source.num_skipped}: "
                f"{_reasons(source.skipped)})"
            )
    data_dir = Path(os.path.expanduser(str(data_dir)))
    builder = PcvPanoptic(name=name, sources=sources, categories=first.categories, data_dir=str(data_dir))
    path = Path(builder.data_dir)
    if path.exists():
        if not overwrite:
            raise FileExistsError(f"{path} is already prepared; pass overwrite=True (--overwrite) to rebuild it")
        shutil.rmtree(path)
    with tempfile.TemporaryDirectory() as downloads:  # tfds wants one; nothing is downloaded
        try:
            builder.download_and_prepare(download_dir=downloads)
        except AssertionError as e:
            # tfds refuses a split that yielded nothing; say why in our words.
            for split, source in sources.items():
                if source.num_skipped and source.num_skipped >= len(source):
                    raise PanopticDataError(
                        f"split {split!r}: all {len(source)} examples were skipped: {_reasons(source.skipped)}"
                    ) from e
            raise
    label_space = first.label_space
    with open(path / CATEGORIES_FILE, "w") as f:
        json.dump(
            {"name": name, "categories": first.categories, "category_ids": list(label_space.category_ids)}, f, indent=1
        )
    skipped = {split: list(source.skipped) for split, source in sources.items()}
    with open(path / SKIPPED_FILE, "w") as f:
        json.dump(skipped, f, indent=1)
    stats = {split: builder.stats[split].result() for split in sources}
    with open(path / STATS_FILE, "w") as f:
        json.dump(stats, f, indent=1)
    splits = {
        split: {"examples": builder.info.splits[split].num_examples, "skipped": skipped[split], "stats": stats[split]}
        for split in sources
    }
    return {"path": str(path), "splits": splits}


def read_stats(path: str | os.PathLike) -> dict:
    """The ``stats.json`` of a prepared dataset (:mod:`pcv.data.stats`), by its folder."""
    folder = find_prepared(path)
    file = folder / STATS_FILE
    if not file.exists():
        raise PanopticDataError(f"{file} not found: {folder} was prepared by an older pcv; prepare it again")
    try:
        return json.loads(file.read_text())
    except json.JSONDecodeError as e:
        raise PanopticDataError(f"{file} is not valid JSON ({e}); prepare the dataset again") from None


def _reasons(skipped: list[dict], limit: int = 3) -> str:
    text = "; ".join(s["reason"] for s in skipped[:limit])
    return text + (f"; ... ({len(skipped) - limit} more)" if len(skipped) > limit else "")


def find_prepared(path: str | os.PathLike, dataset: str | None = None) -> Path:
    """The directory of a prepared dataset (the one holding ``dataset_info.json``).

    ``path`` may be that directory, ``{data_dir}/pcv_panoptic/{name}`` (its
    newest version is taken) or ``data_dir`` itself with ``dataset`` naming it.
    """
    root = Path(os.path.expanduser(str(path)))
    if (root / "dataset_info.json").is_file():
        return root
    candidates = [root / BUILDER_NAME / dataset, root / dataset] if dataset else [root]
    for base in candidates:
        versions = [p for p in base.glob("*") if (p / "dataset_info.json").is_file()] if base.is_dir() else []
        if versions:
            return max(versions, key=lambda p: tuple(int(v) for v in re.findall(r"\d+", p.name)))
    wanted = f"{root}/{BUILDER_NAME}/{dataset}/<version>/" if dataset else f"{root}/dataset_info.json"
    raise FileNotFoundError(f"no prepared dataset at {root} (looked for {wanted}); run python -m pcv.prepare")


class PreparedPanoptic(PanopticSource):
    """Random access over one split of a prepared dataset; the source protocol.

    Args:
      path: a prepared dataset (see :func:`find_prepared`).
      split: e.g. ``"train"``, ``"val"``.
      dataset: the name, when ``path`` is the ``data_dir`` root.

    Attributes as :class:`~pcv.data.coco_panoptic.COCOPanoptic`:
    ``categories``, ``label_space``, ``category_ids``, ``thing_mask``,
    ``num_classes``; ``path``, ``split``. Picklable (the open files are
    reopened per process), so grain workers can share it.
    """

    def __init__(self, path: str | os.PathLike, split: str, *, dataset: str | None = None):
        self.path = find_prepared(path, dataset)
        self.split = split
        cat_file = self.path / CATEGORIES_FILE
        if cat_file.is_file():
            with open(cat_file) as f:
                stored = json.load(f)
        else:  # categories.json is written last; tfds metadata has the list too
            meta_file = self.path / "metadata.json"
            if not meta_file.is_file():
                raise FileNotFoundError(
                    f"{self.path}: neither {CATEGORIES_FILE} nor metadata.json: incomplete prepare?"
                )
            with open(meta_file) as f:
                stored = json.load(f)
        self.categories = check_categories(stored.get("categories"), str(cat_file))
        self.label_space = LabelSpace(self.categories)
        if "category_ids" in stored and list(stored["category_ids"]) != list(self.label_space.category_ids):
            raise PanopticDataError(
                f"{cat_file}: stored train-id order {stored['category_ids'][:8]}... differs from this version's "
                f"LabelSpace {list(self.label_space.category_ids)[:8]}...: re-prepare the dataset"
            )
        self._source = None
        self._length = len(self._open())

    def _open(self):
        if self._source is None:
            builder = tfds.builder_from_directory(str(self.path))
            if self.split not in builder.info.splits:
                raise ConfigError(f"split {self.split!r} is not in {self.path}; it has {sorted(builder.info.splits)}")
            self._source = builder.as_data_source(self.split)
        return self._source

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_source"] = None
        return state

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: int) -> dict:
        return decode_record(stored_to_record(self._open()[self._position(index)]))

    def __repr__(self) -> str:
        return f"PreparedPanoptic({str(self.path)!r}, split={self.split!r}, {self._length} examples)"


def stored_to_record(raw: Mapping) -> dict:
    """One example as tfds reads it back -> a record for :func:`decode_record`."""
    text = lambda v: v.decode("utf-8") if isinstance(v, bytes) else str(v)  # noqa: E731
    segs = raw["segments"]
    n = len(segs["id"])
    bbox = np.asarray(segs["bbox"]).reshape(n, 4)
    image_id = text(raw["image_id"])
    return {
        "image_bytes": raw["image"],
        "panoptic_bytes": raw["panoptic"],
        "image_id": int(image_id) if bool(raw["image_id_is_int"]) else image_id,
        "file_name": text(raw["file_name"]),
        "panoptic_file_name": text(raw["panoptic_file_name"]),
        "segments_info": [
            {
                "id": int(segs["id"][j]),
                "category_id": int(segs["category_id"][j]),
                "iscrowd": int(segs["iscrowd"][j]),
                "area": int(segs["area"][j]),
                "bbox": [int(v) for v in bbox[j]],
            }
            for j in range(n)
        ],
    }

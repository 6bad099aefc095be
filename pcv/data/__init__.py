"""Data: panoptic examples, the built-in synthetic dataset, and batching.

- :mod:`pcv.data.panoptic`: the example format every source yields,
  :class:`LabelSpace` (category ids -> train ids, things first),
  :func:`gt_for_pq` and :func:`write_coco_panoptic`.
- :mod:`pcv.data.synthetic`: :class:`SyntheticPanoptic`, demo data drawn on
  the fly, deterministic from ``(seed, split, index)``.
- :mod:`pcv.data.batching`: :func:`make_batch`, examples -> normalised images
  and PCV targets at the output stride.
- :mod:`pcv.data.coco_panoptic`: :class:`COCOPanoptic`, a validating source
  over COCO-format panoptic files (``coco2017``, ``cityscapes``, ``custom``
  layouts, zips read in place); :class:`PanopticDataError`.
- :mod:`pcv.data.tfds_panoptic`: ``prepare_panoptic`` (tfds builder ->
  array_record, no TensorFlow) and ``PreparedPanoptic``, the reader of a
  prepared split (imported lazily: tfds is slow to import).
- ``python -m pcv.data.prepare``: the command that prepares a dataset.
- :func:`make_datasets`: the ``(train, val)`` sources a config names.

::

    from pcv.data import SyntheticPanoptic, make_batch
    from pcv.voting import VoteGrid
    ds = SyntheticPanoptic("train", size=(128, 128), seed=0)
    batch = make_batch([ds[i] for i in range(8)], VoteGrid(((1, 1), (3, 2))), ds.label_space)
    # images [8, 128, 128, 3] float32; semantic / votes / weights [8, 32, 32]
"""

from pcv.data.batching import (
    DEFAULT_STRIDE,
    IMAGE_MEAN,
    IMAGE_STD,
    denormalize_images,
    example_targets,
    make_batch,
    normalize_images,
)
from pcv.data.coco_panoptic import COCOPanoptic, PanopticDataError, cityscapes, coco2017, custom
from pcv.data.panoptic import (
    LabelSpace,
    PanopticSource,
    as_label_space,
    gt_for_pq,
    segments_from_ids,
    write_coco_panoptic,
)
from pcv.data.synthetic import CATEGORIES, SyntheticConfig, SyntheticPanoptic, draw_scene

__all__ = [
    "CATEGORIES",
    "COCOPanoptic",
    "PanopticDataError",
    "PanopticSource",
    "PreparedPanoptic",
    "prepare_panoptic",
    "cityscapes",
    "coco2017",
    "custom",
    "DATASETS",
    "DEFAULT_STRIDE",
    "IMAGE_MEAN",
    "IMAGE_STD",
    "LabelSpace",
    "SyntheticConfig",
    "SyntheticPanoptic",
    "as_label_space",
    "denormalize_images",
    "draw_scene",
    "example_targets",
    "gt_for_pq",
    "make_batch",
    "make_datasets",
    "normalize_images",
    "segments_from_ids",
    "write_coco_panoptic",
]

#: Data sources :func:`make_datasets` knows, by ``config.data.name``.
DATASETS = ("synthetic", "panoptic")


def __getattr__(name):
    # Lazy: importing tensorflow_datasets takes seconds; only prepared data needs it.
    if name in ("PreparedPanoptic", "prepare_panoptic"):
        from pcv.data import tfds_panoptic

        return getattr(tfds_panoptic, name)
    raise AttributeError(f"module 'pcv.data' has no attribute {name!r}")


def make_datasets(config):
    """``(train, val)`` random-access sources for a trainer config.

    Reads ``config.seed`` and ``config.data``: ``name`` (one of ``DATASETS``).

    - ``"synthetic"``: ``image_size`` ``(H, W)``, ``num_val``, and optionally
      ``num_train`` (default: unbounded, every index a new scene).
    - ``"panoptic"``: a dataset prepared by ``python -m pcv.data.prepare``:
      ``data_dir`` (the directory it printed, or the ``--data_dir`` root with
      ``dataset`` naming it), ``train_split`` (default ``"train"``),
      ``val_split`` (default ``"val"``). Returns raw
      :class:`~pcv.data.tfds_panoptic.PreparedPanoptic` sources: examples of
      their own sizes, untransformed.
    """
    data = config.data
    get = data.get if hasattr(data, "get") else lambda k, d=None: getattr(data, k, d)
    if data.name == "panoptic":
        from pcv.data.tfds_panoptic import PreparedPanoptic

        data_dir = get("data_dir", None)
        if not data_dir:
            raise ValueError("config.data.data_dir must name a prepared dataset (python -m pcv.data.prepare)")
        dataset = get("dataset", None)
        try:
            train = PreparedPanoptic(data_dir, get("train_split", "train"), dataset=dataset)
            val = PreparedPanoptic(data_dir, get("val_split", "val"), dataset=dataset)
        except (FileNotFoundError, ValueError) as e:
            raise type(e)(f"config.data.data_dir={data_dir!r}: {e}") from e
        return train, val
    if data.name == "synthetic":
        size = tuple(data.image_size)
        num_train = data.get("num_train", None) if hasattr(data, "get") else None
        train = SyntheticPanoptic("train", size=size, num_examples=num_train, seed=config.seed)
        val = SyntheticPanoptic("val", size=size, num_examples=data.num_val, seed=config.seed)
        return train, val
    raise ValueError(f"unknown dataset {data.name!r}; known: {', '.join(DATASETS)}")

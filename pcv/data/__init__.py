"""Data: panoptic examples from their sources, transforms, targets and the input pipeline.

- :mod:`pcv.data.panoptic`: the example format every source yields,
  :class:`LabelSpace` (category ids -> train ids, things first), the PNG id
  encoding (:func:`rgb2id`, :func:`id2rgb`), :class:`Subset`.
- :mod:`pcv.data.synthetic`: :class:`SyntheticPanoptic`, demo data drawn on
  the fly, deterministic from ``(seed, split, index)``.
- :mod:`pcv.data.coco_panoptic`: :class:`COCOPanoptic`, a validating source
  over COCO-format panoptic files (``coco2017``, ``cityscapes``, ``custom``
  layouts, zips read in place); :class:`PanopticDataError`.
- :mod:`pcv.data.tfds_panoptic`: ``prepare_panoptic`` (tfds builder ->
  array_record, no TensorFlow) and ``PreparedPanoptic``, the reader of a
  prepared split (imported lazily: tfds is slow to import).
- :mod:`pcv.data.transforms`: training augmentation and the evaluation
  geometry (:class:`~pcv.data.transforms.EvalGeometry`).
- :mod:`pcv.data.batching`: :func:`make_batch`, examples -> normalised images
  and PCV targets at the output stride.
- :mod:`pcv.data.pipeline`: the grain pipelines (training, evaluation).
- :func:`make_datasets`: the splits a :class:`pcv.config.DataConfig` names.

::

    from pcv.data import SyntheticPanoptic, make_batch
    from pcv.voting import VoteGrid
    ds = SyntheticPanoptic("train", size=(128, 128), seed=0)
    batch = make_batch([ds[i] for i in range(8)], VoteGrid(((1, 1), (3, 2))), ds.label_space)
    # images [8, 128, 128, 3] float32; semantic / votes / weights [8, 32, 32]
"""

from __future__ import annotations

import dataclasses

from pcv.data.batching import IMAGE_MEAN, IMAGE_STD, denormalize_images, example_targets, make_batch, normalize_images
from pcv.data.coco_panoptic import COCOPanoptic, PanopticDataError, cityscapes, coco2017, custom
from pcv.data.panoptic import (
    LabelSpace,
    PanopticSource,
    Subset,
    as_label_space,
    gt_for_pq,
    id2rgb,
    rgb2id,
    segments_from_ids,
)
from pcv.data.synthetic import CATEGORIES, SyntheticConfig, SyntheticPanoptic, draw_scene
from pcv.errors import ConfigError

__all__ = [
    "CATEGORIES",
    "COCOPanoptic",
    "IMAGE_MEAN",
    "IMAGE_STD",
    "LabelSpace",
    "PanopticDataError",
    "PanopticSource",
    "PreparedPanoptic",
    "Splits",
    "Subset",
    "SyntheticConfig",
    "SyntheticPanoptic",
    "as_label_space",
    "cityscapes",
    "coco2017",
    "custom",
    "denormalize_images",
    "draw_scene",
    "example_targets",
    "gt_for_pq",
    "id2rgb",
    "make_batch",
    "make_datasets",
    "normalize_images",
    "prepare_panoptic",
    "rgb2id",
    "segments_from_ids",
]


def __getattr__(name):
    # Lazy: importing tensorflow_datasets takes seconds; only prepared data needs it.
    if name in ("PreparedPanoptic", "prepare_panoptic"):
        from pcv.data import tfds_panoptic

        return getattr(tfds_panoptic, name)
    raise AttributeError(f"module 'pcv.data' has no attribute {name!r}")


@dataclasses.dataclass(frozen=True)
class Splits:
    """The splits of a run: ``train``, ``val`` and ``calibration`` (None unless held out)."""

    train: PanopticSource
    val: PanopticSource
    calibration: PanopticSource | None = None

    def get(self, name: str) -> PanopticSource:
        """A split by name: ``"train"``, ``"val"`` or ``"calibration"``."""
        found = {"train": self.train, "val": self.val, "calibration": self.calibration}.get(name)
        if found is None:
            have = ", ".join(k for k in ("train", "val", "calibration") if getattr(self, k) is not None)
            raise ConfigError(f"split {name!r}: this run has {have}")
        return found


def make_datasets(data, seed: int = 0) -> Splits:
    """The random-access sources a :class:`pcv.config.DataConfig` describes.

    - ``name = "synthetic"``: scenes of ``image_size``; train has ``num_train``
      (0 = unbounded), val ``num_val``, calibration ``calibration_images``,
      each a different stream of scenes.
    - ``name = "panoptic"``: a dataset prepared by ``python -m pcv.prepare``
      at ``data_dir``; ``train_split`` and ``val_split``. With
      ``calibration_images = n`` the *last* n examples of the training split
      are held out as the calibration split (never trained on).

    Sources return raw examples of their own sizes, untransformed.
    """
    if data.name == "synthetic":
        size = tuple(data.image_size)
        train = SyntheticPanoptic("train", size=size, num_examples=data.num_train or None, seed=seed)
        val = SyntheticPanoptic("val", size=size, num_examples=data.num_val, seed=seed)
        calibration = None
        if data.calibration_images:
            calibration = SyntheticPanoptic("calibration", size=size, num_examples=data.calibration_images, seed=seed)
        return Splits(train, val, calibration)
    from pcv.data.tfds_panoptic import PreparedPanoptic

    try:
        train = PreparedPanoptic(data.data_dir, data.train_split)
        val = PreparedPanoptic(data.data_dir, data.val_split)
    except (FileNotFoundError, ValueError) as e:
        raise ConfigError(f"config.data.data_dir={data.data_dir!r}: {e}") from None
    calibration = None
    if data.calibration_images:
        n, held = len(train), data.calibration_images
        if held >= n:
            raise ConfigError(
                f"config.data.calibration_images={held}: the {data.train_split!r} split has only "
                f"{n} examples; hold out fewer"
            )
        calibration = Subset(train, n - held, n, "calibration")
        train = Subset(train, 0, n - held, data.train_split)
    return Splits(train, val, calibration)

"""The splits a :class:`~pcv.config.DataConfig` names: :func:`make_datasets` -> train, val, calibration."""

from __future__ import annotations

import dataclasses

from pcv.data.panoptic import (
    PanopticSource,
    Subset,
)
from pcv.data.synthetic import SyntheticPanoptic
from pcv.errors import ConfigError


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
    from pcv.data.tfds_panoptic import PreparedPanoptic  # tensorflow_datasets takes seconds to import

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

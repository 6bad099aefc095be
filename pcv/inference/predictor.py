"""From a trained model to an answer for one image: ``Predictor(image) -> Prediction``.

::

    from pcv import Predictor
    predictor = Predictor.from_workdir("workdir/synthetic")         # latest checkpoint
    result = predictor(image)              # image: uint8 [H, W, 3], any size
    result.ids                             # int32 [H, W] panoptic id map, 0 = void
    result.segments_info                   # [{"id", "category_id", "category_name", "isthing",
                                           #   "area", "bbox", "score", ...}]
    result.heatmap, result.peaks           # the votes, for pictures (pcv.viz)

A :class:`Predictor` holds everything between pixels and segments: the
network and its weights, the voting grid, the label space, the
post-processing settings (:class:`pcv.config.InferenceConfig`, calibrated
ones when the work dir has them) and the evaluation geometry
(:class:`pcv.data.transforms.EvalGeometry`: how an image of any size is
resized and padded to the one shape the network is compiled for, and how
the answer goes back to the image's own size). ``python -m pcv.predict``,
``python -m pcv.evaluate``, training's evaluation and the notebook all go
through it.

Batched use: :meth:`Predictor.predict_batch` (images of any sizes), and
:meth:`Predictor.run_padded` for batches already resized and padded (the
evaluator's path, sharded over a device mesh and over hosts).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding, PartitionSpec, SingleDeviceSharding

from pcv import config as config_lib
from pcv.config import OUTPUT_STRIDE, InferenceConfig
from pcv.data.batching import normalize_images
from pcv.data.panoptic import LabelSpace
from pcv.data.transforms import EvalGeometry
from pcv.errors import ConfigError, WorkdirError
from pcv.inference.postprocess import flip_tta, panoptic_inference
from pcv.inference.segments import Prediction, finish
from pcv.models import build
from pcv.runtime.workdir import CATEGORIES, Workdir
from pcv.voting import VoteGrid


class Predictor:
    """A trained PCV model ready to segment images (module docstring).

    Args:
      graphdef: the network's NNX graph definition.
      model_state: ``{"params", "rest"}`` (pure dicts of arrays).
      grid: the voting grid.
      label_space: categories and train ids.
      inference: post-processing settings.
      geometry: how images are sized for the network.
      flip: horizontal-flip test-time augmentation.
      mesh: a mesh with a ``data`` axis to shard batches over (and over
        hosts); None: this host's first device.
      step: the checkpoint step, for messages and file names.
    """

    def __init__(
        self,
        graphdef,
        model_state: Mapping,
        grid: VoteGrid,
        label_space: LabelSpace,
        *,
        inference: InferenceConfig = InferenceConfig(),
        geometry: EvalGeometry,
        flip: bool = False,
        mesh=None,
        step: int | None = None,
    ):
        self.graphdef = graphdef
        self.grid = grid
        self.label_space = label_space
        self.inference = inference
        self.geometry = geometry
        self.flip = flip
        self.mesh = mesh
        self.step = step
        if mesh is None:
            device = jax.local_devices()[0]
            self._data = self._replicated = SingleDeviceSharding(device)
        else:
            self._data = NamedSharding(mesh, PartitionSpec("data"))
            self._replicated = NamedSharding(mesh, PartitionSpec())
        self.model_state = jax.device_put(dict(model_state), self._replicated)
        self._forward = _forward_fn(graphdef, grid, flip, self._data)
        self._post = _post_fn(grid, tuple(bool(t) for t in label_space.thing_mask), inference, self._data)

    # -- construction ---------------------------------------------------------

    @classmethod
    def from_workdir(
        cls,
        workdir,
        step: int | None = None,
        *,
        overrides: Mapping | None = None,
        calibrated: bool = True,
        flip: bool = False,
        mesh=None,
    ) -> Predictor:
        """The model of a work dir's checkpoint (default the newest).

        Its settings are the run's recorded config with, when ``calibrated``,
        the post-processing the work dir's calibration chose
        (``calibration.json``, :mod:`pcv.evaluation.calibration`), then
        ``overrides`` (dotted fields, ``{"inference.threshold": 2.0}``, as
        :func:`pcv.config.override` takes them): the post-processing and the
        evaluation geometry may change, the network may not.
        """
        wd = workdir if isinstance(workdir, Workdir) else Workdir(workdir)
        wd.require()
        for name in overrides or {}:
            if name == "grid" or name.startswith("model."):
                raise ConfigError(f"config.{name}: cannot change for a trained model (it defines the network)")
        config = config_lib.override(wd.read_config(calibrated=calibrated), overrides or {})
        config, labels, graphdef, step, model_state = restore_model(wd, step, config=config, mesh=mesh)
        return cls(
            graphdef,
            model_state,
            VoteGrid(config.grid),
            labels,
            inference=config.inference,
            geometry=EvalGeometry.from_config(config.data),
            flip=flip,
            mesh=mesh,
            step=step,
        )

    def replace(self, **changes) -> Predictor:
        """A copy with other ``model_state``, ``inference``, ``flip``, ``step``, ... (compiled code is shared)."""
        kwargs = dict(inference=self.inference, geometry=self.geometry, flip=self.flip, mesh=self.mesh, step=self.step)
        model_state = changes.pop("model_state", self.model_state)
        kwargs.update(changes)
        return Predictor(self.graphdef, model_state, self.grid, self.label_space, **kwargs)

    # -- the computation --------------------------------------------------------

    def _place(self, images: np.ndarray):
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise ValueError(f"expected uint8 images [B, H, W, 3], got {images.dtype} {images.shape}")
        if self.mesh is None:
            return jax.device_put(images, self._data)
        return jax.make_array_from_process_local_data(self._data, images)

    def to_host(self, tree):
        if self.mesh is None or jax.process_count() == 1:
            return jax.device_get(tree)

        local = multihost_utils.global_array_to_host_local_array(tree, self.mesh, PartitionSpec("data"))
        return jax.tree.map(np.asarray, local)

    def logits(self, images: np.ndarray) -> dict:
        """The heads' outputs of padded uint8 images ``[B, Hp, Wp, 3]`` (device arrays; log-probabilities with flip)."""
        return self._forward(self.model_state, self._place(images))

    def postprocess(
        self, logits: Mapping, output_size: tuple[int, int] | None = None, inference: InferenceConfig | None = None
    ) -> dict:
        """Post-process heads' outputs (from :meth:`logits`) into this host's results, as numpy.

        ``output_size``: size of the returned ``semantic`` / ``instance``
        maps (default: the padded input, 4 x the map). ``inference``
        overrides the predictor's settings (calibration tries many).
        """
        h, w = logits["semantic"].shape[1:3]
        out_hw = tuple(output_size) if output_size else (h * OUTPUT_STRIDE, w * OUTPUT_STRIDE)
        post = (
            self._post
            if inference is None or inference == self.inference
            else _post_fn(self.grid, tuple(bool(t) for t in self.label_space.thing_mask), inference, self._data)
        )
        return self.to_host(post(logits["semantic"], logits["votes"], out_hw))

    def run_padded(self, images: np.ndarray) -> dict:
        """Padded uint8 images ``[B, Hp, Wp, 3]`` (this host's part of a global batch) -> numpy results.

        The batched :func:`pcv.inference.panoptic_inference` output, maps at
        ``(Hp, Wp)``, for this host's images.
        """
        return self.postprocess(self.logits(images), tuple(np.shape(images)[1:3]))

    def to_prediction(self, result: Mapping, meta: Mapping) -> Prediction:
        """One image's raw result (maps at the padded size) -> its :class:`Prediction` at the original size."""
        labels = self.label_space
        return finish(
            result,
            meta,
            category_ids=labels.category_ids,
            thing_mask=labels.thing_mask,
            names=labels.names,
            threshold=self.inference.threshold,
            stride=OUTPUT_STRIDE,
        )

    # -- images ---------------------------------------------------------------

    def preprocess(self, image: np.ndarray, image_id=None) -> tuple[np.ndarray, dict]:
        """One image -> (padded uint8 ``[Hp, Wp, 3]``, meta) (:class:`~pcv.data.transforms.EvalGeometry`)."""
        return self.geometry.preprocess(image, image_id)

    def predict_batch(self, images: Sequence[np.ndarray]) -> list[Prediction]:
        """Predict images of any sizes (uint8 ``[H, W, 3]`` each) in one batch."""
        if not len(images):
            return []
        padded, metas = zip(*(self.preprocess(img, i) for i, img in enumerate(images)))
        stacked = np.stack(padded)
        if self.mesh is not None:  # the batch must fill the mesh: repeat the last image
            devices = self.mesh.devices.size // jax.process_count()
            fill = -len(stacked) % devices
            stacked = np.concatenate([stacked, np.repeat(stacked[-1:], fill, 0)]) if fill else stacked
        raw = self.run_padded(stacked)
        return [self.to_prediction(jax.tree.map(lambda a, j=j: a[j], raw), meta) for j, meta in enumerate(metas)]

    def __call__(self, image: np.ndarray) -> Prediction:
        """Predict one uint8 ``[H, W, 3]`` image of any size."""
        return self.predict_batch([image])[0]

    def __repr__(self) -> str:
        return (
            f"Predictor(step={self.step}, {self.label_space.num_classes} classes, {self.grid!r}, "
            f"{self.inference}, input {self.geometry.pad_shape}, flip={self.flip})"
        )


def restore_model(wd: Workdir, step: int | None = None, *, config=None, mesh=None):
    """``(config, label_space, graphdef, step, model_state)`` of a work dir's checkpoint (default the newest).

    ``config`` replaces the recorded one (its model fields must be the
    trained ones); the state is replicated over ``mesh``, else on this
    host's first device.
    """
    wd.require()
    config = wd.read_config() if config is None else config
    try:
        labels = LabelSpace(wd.read_categories())
    except (TypeError, ValueError) as e:
        raise WorkdirError(f"{wd.path / CATEGORIES}: not a list of COCO categories ({e})") from None
    graphdef, abstract = build.abstract_model(config.model, labels.num_classes, VoteGrid(config.grid))
    sharding = SingleDeviceSharding(jax.local_devices()[0]) if mesh is None else NamedSharding(mesh, PartitionSpec())
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), abstract)
    step, model_state = wd.restore_model_state(abstract, step)
    return config, labels, graphdef, step, model_state


# ----------------------------------------------------------------------------
# Compiled functions, shared by predictors of the same network and settings.
# ----------------------------------------------------------------------------


def forward_body(graphdef, grid: VoteGrid, flip: bool):
    """``(model_state, uint8 images [B, Hp, Wp, 3]) -> {"semantic", "votes"}``: the network part, to jit."""

    def forward(model_state, images):
        model = build.merge(graphdef, model_state)
        x = normalize_images(images)
        if flip:
            return flip_tta(model, x, grid)
        return model(x)

    return forward


def post_body(grid: VoteGrid, thing_mask: tuple, inference: InferenceConfig):
    """``(semantic, votes, out_hw) -> result``: the post-processing part, to jit (``out_hw`` static)."""

    def post(semantic, votes, out_hw):
        return panoptic_inference(semantic, votes, grid, thing_mask, inference, output_size=out_hw)

    return post


@functools.lru_cache(maxsize=16)
def _forward_fn(graphdef, grid: VoteGrid, flip: bool, data_sharding):
    return jax.jit(forward_body(graphdef, grid, flip), out_shardings=data_sharding)


@functools.lru_cache(maxsize=64)
def _post_fn(grid: VoteGrid, thing_mask: tuple, inference: InferenceConfig, data_sharding):
    return jax.jit(post_body(grid, thing_mask, inference), static_argnums=2, out_shardings=data_sharding)

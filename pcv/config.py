"""The run configuration: every field, its default and its meaning, defined once.

One representation: :class:`Config`, frozen dataclasses, one per section
(``DataConfig``, ``ModelConfig``, ``LossConfig``, ``OptimizerConfig``,
``InferenceConfig``), each validating its own fields in ``__post_init__``.
Its defaults are the built-in demo's (small network, 128 x 128 synthetic
scenes), except the post-processing, whose defaults are the paper's COCO
settings. Library functions take the typed pieces.

Every config enters through one of three doors and is validated there:

- a config file, by name or path (:func:`load`, ``--config=name[:variant]``):
  the shipped ones in ``pcv/configs`` return ``override(Config(), {...})``,
  only what differs from the defaults; a file in the older form, a
  ``ml_collections.ConfigDict`` built on :func:`default_config`, still loads;
- a work dir's ``config.json`` (:func:`from_json`);
- changes by dotted name (:func:`override`), which is also what
  ``--config.<field>=<value>`` on the command line does (:mod:`pcv.cli`,
  once, for every command).

An unknown field, a wrong type or a bad value raises one
:class:`~pcv.errors.ConfigError` naming the field (``config.data.crop_size:
...``). :func:`changed_fields` lists what differs between two configs, and
:data:`RESUMABLE` says which fields a restarted run may change.

Field comments say what each value means; sizes are ``(H, W)`` in pixels.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import json
import os
import pathlib
import re
from collections.abc import Mapping
from typing import Any

import ml_collections

from pcv.errors import ConfigError
from pcv.voting.grid import VoteGrid

# The network's geometry, defined once. The heads predict at OUTPUT_STRIDE: one
# map pixel per 4 x 4 input pixels, so targets, heatmaps, peaks and vote bins
# live on a map of ceil(H / 4) x ceil(W / 4). The ResNet trunk halves the
# resolution five times (C5 is at stride 32), so input sizes are multiples of
# SIZE_MULTIPLE.

#: Output stride of the semantic and vote heads.
OUTPUT_STRIDE = 4
#: Input heights and widths are multiples of this (the coarsest feature stride, C5).
SIZE_MULTIPLE = 32


def round_up(n: int, multiple: int = SIZE_MULTIPLE) -> int:
    """The smallest multiple of ``multiple`` that is >= ``n``."""
    return -(-int(n) // multiple) * multiple


DATASETS = ("synthetic", "panoptic")
BACKBONES = ("small", "resnet50", "resnet101")
NORMS = ("batch", "frozen", "group")
HEAD_NORMS = (*NORMS, "none")
DTYPES = ("float32", "bfloat16")
SCHEDULES = ("poly", "step")
CENTROIDS = ("mass", "box")
AGGREGATION_METHODS = ("shift", "conv")


_DURATION = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)\s*h)?\s*(?:(\d+(?:\.\d+)?)\s*m)?\s*(?:(\d+(?:\.\d+)?)\s*s?)?\s*$")


def _seconds(text: str) -> float:
    """Seconds of a duration that matches ``_DURATION`` (``"1h30m"``, ``"90s"``, ``"90"``); 0 for ``""``."""
    hours, minutes, seconds = (float(g) if g else 0.0 for g in _DURATION.match(text).groups())
    return hours * 3600 + minutes * 60 + seconds


def budget_seconds(config: Config) -> float:
    """``config.time_budget`` in seconds; 0 when the run has none."""
    return _seconds(config.time_budget)


def _need(ok: bool, field: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{field}: {message}")


def _size(value, field: str, *, allow_empty: bool, multiple: int = 1) -> None:
    if allow_empty and len(value) == 0:
        return
    _need(
        len(value) == 2 and all(isinstance(v, int) and v > 0 and v % multiple == 0 for v in value),
        field,
        f"{tuple(value)} must be (H, W), positive"
        + (f" multiples of {multiple}" if multiple > 1 else "")
        + (" (or () for the default)" if allow_empty else ""),
    )


# ----------------------------------------------------------------------------
# Sections.
# ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where examples come from and how they are transformed (``config.data``)."""

    name: str = "synthetic"  # "synthetic" (built-in demo, drawn on the fly) or "panoptic" (python -m pcv.prepare)
    data_dir: str = ""  # panoptic: the prepared dataset (the directory pcv.prepare printed); required to run
    train_split: str = "train"  # panoptic: split to train on
    val_split: str = "val"  # panoptic: split to report PQ on
    calibration_images: int = 0  # images held out of train_split to calibrate post-processing (0 = none)
    image_size: tuple = (128, 128)  # synthetic: drawn size; the default crop; eval fits images into it (see below)
    num_train: int = 0  # synthetic: distinct training scenes (0 = unbounded, every step new ones)
    num_val: int = 128  # synthetic: validation scenes
    crop_size: tuple = ()  # training crop (H, W), multiples of 32; () = image_size
    scale_range: tuple = (1.0, 1.0)  # random scale factor of the shorter side, uniform in (lo, hi)
    base_size: int = 0  # shorter side at scale 1; 0 = the image's own
    hflip: bool = True  # random horizontal flips (targets are computed after the flip)
    color_jitter: float = 0.0  # max relative brightness/contrast/saturation change; 0 = off
    num_workers: int = 0  # input worker processes per host; 0 = read in the trainer's process
    read_threads: int = 2  # threads of in-process reading
    eval_short_side: int = 0  # eval/predict: resize the shorter side to this; 0 = fit into image_size
    eval_max_size: int = 0  # eval/predict: cap on the longer side (0 = none; needs eval_pad_shape)
    eval_pad_shape: tuple = ()  # eval/predict: one padded input shape (H, W); () = square of eval_max_size

    def __post_init__(self):
        _need(self.name in DATASETS, "name", f"{self.name!r} must be one of {DATASETS}")
        _need(self.calibration_images >= 0, "calibration_images", f"must be >= 0, got {self.calibration_images}")
        _size(self.image_size, "image_size", allow_empty=False, multiple=SIZE_MULTIPLE)
        _need(self.num_train >= 0, "num_train", f"must be >= 0 (0 = unbounded), got {self.num_train}")
        _need(self.num_val >= 1, "num_val", f"must be >= 1, got {self.num_val}")
        _size(self.crop_size, "crop_size", allow_empty=True, multiple=SIZE_MULTIPLE)
        lo_hi = tuple(self.scale_range)
        _need(
            len(lo_hi) == 2 and 0 < lo_hi[0] <= lo_hi[1], "scale_range", f"{lo_hi} must be (lo, hi) with 0 < lo <= hi"
        )
        _need(
            self.base_size >= 0, "base_size", f"must be >= 0 (0 = the image's own shorter side), got {self.base_size}"
        )
        _need(0 <= self.color_jitter < 1, "color_jitter", f"must be in [0, 1) (0 = off), got {self.color_jitter}")
        _need(self.num_workers >= 0, "num_workers", f"must be >= 0 (0 = in-process), got {self.num_workers}")
        _need(self.read_threads >= 1, "read_threads", f"must be >= 1, got {self.read_threads}")
        _need(
            self.eval_short_side >= 0,
            "eval_short_side",
            f"must be >= 0 (0 = fit into image_size), got {self.eval_short_side}",
        )
        _need(
            self.eval_max_size == 0 or self.eval_max_size >= self.eval_short_side,
            "eval_max_size",
            f"{self.eval_max_size} must be 0 (no limit) or >= eval_short_side ({self.eval_short_side})",
        )
        _need(
            self.eval_short_side == 0 or self.eval_max_size > 0 or bool(self.eval_pad_shape),
            "eval_pad_shape",
            "must be given when eval_max_size is 0 (no bound on the padded evaluation size)",
        )
        _size(self.eval_pad_shape, "eval_pad_shape", allow_empty=True, multiple=SIZE_MULTIPLE)

    @property
    def train_crop(self) -> tuple[int, int]:
        """The training crop ``(H, W)``: ``crop_size``, else ``image_size``."""
        return tuple(self.crop_size or self.image_size)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The network (``config.model``): ResNet, FPN, fusion to stride 4, two 1x1 heads."""

    backbone: str = "small"  # "small" (demos, tests), "resnet50", "resnet101"
    fpn_channels: int = 64  # channels of P2..P5
    fusion_channels: int = 64  # channels of the stride-4 fusion feeding the heads
    backbone_norm: str = "batch"  # "batch" (synchronised over the global batch), "frozen" (with pretrained), "group"
    head_norm: str = "batch"  # norm of the FPN and fusion convs: the above or "none"
    dtype: str = "float32"  # compute dtype: "float32" or "bfloat16" (weights, loss and voting stay float32)
    pretrained: str = ""  # ImageNet backbone weights (.safetensors, or .pth with torch); "" = from scratch

    def __post_init__(self):
        _need(self.backbone in BACKBONES, "backbone", f"{self.backbone!r} must be one of {BACKBONES}")
        _need(self.fpn_channels >= 1, "fpn_channels", f"must be >= 1, got {self.fpn_channels}")
        _need(self.fusion_channels >= 1, "fusion_channels", f"must be >= 1, got {self.fusion_channels}")
        _need(self.backbone_norm in NORMS, "backbone_norm", f"{self.backbone_norm!r} must be one of {NORMS}")
        _need(self.head_norm in HEAD_NORMS, "head_norm", f"{self.head_norm!r} must be one of {HEAD_NORMS}")
        _need(self.dtype in DTYPES, "dtype", f"{self.dtype!r} must be one of {DTYPES}")
        _need(
            not self.pretrained or self.backbone_norm in ("batch", "frozen"),
            "backbone_norm",
            f"{self.backbone_norm!r} cannot take pretrained BatchNorm weights; use 'frozen' or 'batch'",
        )


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """Weights of the two heads' losses (``config.loss``)."""

    semantic_weight: float = 1.0  # weight of the semantic cross-entropy
    vote_weight: float = 1.0  # weight of the vote cross-entropy

    def __post_init__(self):
        _need(self.semantic_weight >= 0, "semantic_weight", f"must be >= 0, got {self.semantic_weight}")
        _need(self.vote_weight >= 0, "vote_weight", f"must be >= 0, got {self.vote_weight}")


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    """SGD with momentum, linear warmup, then poly or step decay (``config.optimizer``)."""

    learning_rate: float = 0.05  # peak learning rate, reached after warmup
    momentum: float = 0.9  # SGD momentum
    weight_decay: float = 1e-4  # on conv and dense kernels only
    warmup_steps: int = 100  # linear warmup from 0
    schedule: str = "poly"  # decay after warmup: "poly" or "step"
    poly_power: float = 0.9  # poly: lr * (1 - t / T) ** power
    step_boundaries: tuple = (0.67, 0.89)  # step: fractions of the steps where lr is multiplied by step_factor
    step_factor: float = 0.1  # step: the multiplier at each boundary
    clip_norm: float = 0.0  # global gradient-norm clipping; 0 = off

    def __post_init__(self):
        _need(self.learning_rate > 0, "learning_rate", f"must be > 0, got {self.learning_rate}")
        _need(self.momentum >= 0, "momentum", f"must be >= 0, got {self.momentum}")
        _need(self.weight_decay >= 0, "weight_decay", f"must be >= 0, got {self.weight_decay}")
        _need(self.warmup_steps >= 0, "warmup_steps", f"must be >= 0, got {self.warmup_steps}")
        _need(self.schedule in SCHEDULES, "schedule", f"{self.schedule!r} must be one of {SCHEDULES}")
        _need(
            all(0 < f < 1 for f in self.step_boundaries),
            "step_boundaries",
            f"{tuple(self.step_boundaries)} must be fractions of the run, each in (0, 1)",
        )
        _need(self.clip_norm >= 0, "clip_norm", f"must be >= 0 (0 = off), got {self.clip_norm}")


@dataclasses.dataclass(frozen=True)
class InferenceConfig:
    """The logits -> panoptic post-processing (``config.inference``, :mod:`pcv.inference`)."""

    threshold: float = 4.0  # heatmap value at or above which a pixel belongs to a peak region
    max_instances: int = 100  # N, the static number of instance slots
    top_t: int = 1  # how many of each pixel's best bins take part in backprojection
    min_stuff_area: int = 4096  # stuff segments smaller than this (pixels of the output map) become void
    method: str = "shift"  # vote aggregation: "shift" (fast) or "conv" (the paper's transposed convs)
    # Steps 6-7 at the input size from bilinearly upsampled logits, instead of the stride-4 map
    # resized by nearest neighbour (the paper's step 8, kept by the COCO and Cityscapes configs).
    full_resolution: bool = True  # sharper masks than the stride-4 staircase (measured in BENCHMARKS.md)

    def __post_init__(self):
        _need(self.max_instances >= 1, "max_instances", f"must be >= 1, got {self.max_instances}")
        _need(self.top_t >= 1, "top_t", f"must be >= 1, got {self.top_t}")
        _need(self.min_stuff_area >= 0, "min_stuff_area", f"must be >= 0, got {self.min_stuff_area}")
        _need(self.method in AGGREGATION_METHODS, "method", f"{self.method!r} must be one of {AGGREGATION_METHODS}")


@dataclasses.dataclass(frozen=True)
class Config:
    """A whole run: data, grid, targets, model, loss, schedule, post-processing, bookkeeping."""

    seed: int = 0  # initialisation, shuffling and augmentation
    data: DataConfig = DataConfig()  # where examples come from, how they are transformed
    grid: tuple = ((1, 1), (3, 2))  # voting grid: (cell_size, rounds) pairs; must span the large instances at stride 4
    centroid: str = "mass"  # instance centre of the vote targets: "mass" (mean pixel) or "box" (box middle)
    weight_power: float = 0.5  # per-pixel loss weight = area ** -weight_power
    model: ModelConfig = ModelConfig()  # the network
    loss: LossConfig = LossConfig()  # the heads' loss weights
    batch_size: int = 16  # global batch, across all devices and hosts
    eval_batch_size: int = 0  # global evaluation batch; 0 = batch_size
    num_devices: int = 0  # devices to use; 0 = every device of every host
    steps: int = 1000  # training steps (with a time_budget: at most this many)
    time_budget: str = ""  # wall clock from the start of pcv.train to results.json ("10m", "90s", "1h30m"); "" = none
    optimizer: OptimizerConfig = OptimizerConfig()  # SGD, warmup, decay
    inference: InferenceConfig = InferenceConfig()  # the post-processing
    init_from: str = ""  # fine-tune: start from a trained work dir or exported bundle ("path[:step]")
    log_every: int = 50  # console line, metrics.jsonl and TensorBoard every this many steps
    eval_every: int = 500  # PQ on the validation split every this many steps; 0 = only at the end
    checkpoint_every: int = 500  # save every this many steps (and at the end, and when preempted)
    keep_checkpoints: int = 3  # newest checkpoints kept; at least 1
    num_panel_images: int = 4  # validation images drawn into panel.png

    def __post_init__(self):
        _need(self.seed >= 0, "seed", f"must be >= 0, got {self.seed}")
        try:
            VoteGrid(self.grid)
        except ValueError as e:
            raise ConfigError(f"grid: {e}") from None
        _need(self.centroid in CENTROIDS, "centroid", f"{self.centroid!r} must be one of {CENTROIDS}")
        _need(self.weight_power >= 0, "weight_power", f"must be >= 0, got {self.weight_power}")
        _need(self.batch_size >= 1, "batch_size", f"must be >= 1, got {self.batch_size}")
        _need(
            self.eval_batch_size >= 0, "eval_batch_size", f"must be >= 0 (0 = batch_size), got {self.eval_batch_size}"
        )
        _need(self.num_devices >= 0, "num_devices", f"must be >= 0 (0 = all devices), got {self.num_devices}")
        _need(self.steps >= 1, "steps", f"must be >= 1, got {self.steps}")
        budget = self.time_budget
        _need(
            bool(_DURATION.match(budget)) and (not budget.strip() or _seconds(budget) > 0),
            "time_budget",
            f"{self.time_budget!r} must be a duration such as '10m', '90s' or '1h30m' (or '' for none)",
        )
        _need(
            self.optimizer.warmup_steps < self.steps,
            "optimizer.warmup_steps",
            f"{self.optimizer.warmup_steps} must be below steps ({self.steps})",
        )
        for name in ("log_every", "checkpoint_every"):
            _need(getattr(self, name) >= 1, name, f"must be >= 1, got {getattr(self, name)}")
        _need(self.eval_every >= 0, "eval_every", f"must be >= 0 (0 = only at the end), got {self.eval_every}")
        _need(
            self.keep_checkpoints >= 1,
            "keep_checkpoints",
            f"must be >= 1 (the newest checkpoint is what a restart resumes from), got {self.keep_checkpoints}",
        )
        _need(self.num_panel_images >= 0, "num_panel_images", f"must be >= 0, got {self.num_panel_images}")

    def to_dict(self) -> dict:
        """Plain JSON-ready nested dict (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


SECTIONS = {
    "data": DataConfig,
    "model": ModelConfig,
    "loss": LossConfig,
    "optimizer": OptimizerConfig,
    "inference": InferenceConfig,
}

#: Fields a restarted run may change without ``--allow_config_change``: they
#: decide how often things happen, how many processes read, and how the
#: model is evaluated, never what is trained.
RESUMABLE = frozenset(
    {
        "log_every",
        "eval_every",
        "checkpoint_every",
        "keep_checkpoints",
        "num_panel_images",
        "num_devices",
        "eval_batch_size",
        "data.num_workers",
        "data.read_threads",
        "data.eval_short_side",
        "data.eval_max_size",
        "data.eval_pad_shape",
        "model.pretrained",
        "init_from",
        *(f"inference.{f.name}" for f in dataclasses.fields(InferenceConfig)),
    }
)


# ----------------------------------------------------------------------------
# Reading configs: a config file, a work dir's config.json, dotted overrides.
# ----------------------------------------------------------------------------

#: The folder of the shipped config files (``pcv/configs``; ``configs/`` in a checkout).
CONFIG_DIR = pathlib.Path(__file__).resolve().parent / "configs"
#: Shipped config names (``--config=<name>[:variant]``).
SHIPPED = ("synthetic", "coco_r50", "cityscapes_r50", "custom")
#: The config ``python -m pcv.train`` runs without ``--config``.
DEFAULT = "synthetic"


def _coerce(value: Any, default: Any, where: str) -> Any:
    """``value`` in the type of the field's default (lists -> tuples, ints -> floats)."""
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected True or False, got {value!r}")
    if isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if isinstance(default, str):
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    if isinstance(default, tuple):
        if isinstance(value, str):
            raise ConfigError(f"{where}: expected a tuple such as {default!r}, got the string {value!r}")
        try:
            items = list(value)
        except TypeError:
            raise ConfigError(f"{where}: expected a tuple such as {default!r}, got {value!r}") from None
        element = default[0] if default else None
        out = []
        for i, v in enumerate(items):
            if isinstance(v, (list, tuple)):
                out.append(_coerce(v, element if isinstance(element, tuple) else (), f"{where}[{i}]"))
            elif element is None:
                out.append(v if not isinstance(v, float) or not v.is_integer() else int(v))
            else:
                out.append(_coerce(v, element, f"{where}[{i}]"))
        return tuple(out)
    return value


def _unknown(name: str, known, where: str) -> ConfigError:
    close = difflib.get_close_matches(name, list(known), n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return ConfigError(f"{where}.{name}: no such field{hint}")


def _section(cls, values: Mapping, where: str):
    if not isinstance(values, Mapping):
        raise ConfigError(f"{where}: expected a group of fields, got {values!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for name, value in values.items():
        if name not in fields:
            raise _unknown(name, fields, where)
        default = fields[name].default
        if name in SECTIONS and cls is Config:
            kwargs[name] = _section(SECTIONS[name], value, f"{where}.{name}")
        else:
            kwargs[name] = _coerce(value, default, f"{where}.{name}")
    try:
        return cls(**kwargs)
    except ConfigError as e:
        raise ConfigError(f"{where}.{e}") from None


def read(values, where: str = "config") -> Config:
    """A typed, validated :class:`Config` from what a config file returns or a work dir keeps.

    ``values``: a :class:`Config` (returned as it is), or a nested mapping of
    fields, such as the ``ml_collections.ConfigDict`` of a config file in
    the older form (:func:`default_config`) or parsed ``config.json``;
    missing fields keep their defaults. Raises
    :class:`~pcv.errors.ConfigError` naming the first bad field.
    """
    if isinstance(values, Config):
        return values
    if hasattr(values, "to_dict"):  # ml_collections.ConfigDict (FieldReferences resolved)
        values = values.to_dict()
    return _section(Config, values, where)


def from_json(text: str, where: str) -> Config:
    """The :class:`Config` of a work dir's ``config.json`` (``where``: its path, for messages)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{where} is not valid JSON: {e}") from None
    return read(data, "config")


def flat(config: Config) -> dict[str, Any]:
    """``{"data.crop_size": (512, 512), "steps": 90000, ...}``: every field by its dotted name."""
    out = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            out.update({f"{f.name}.{g.name}": getattr(value, g.name) for g in dataclasses.fields(value)})
        else:
            out[f.name] = value
    return out


#: Every field's dotted name (``"data.crop_size"``, ``"steps"``, ...).
FIELDS = tuple(flat(Config()))


def check_field(name: str) -> None:
    """Raise :class:`~pcv.errors.ConfigError` unless ``name`` is a field's dotted name (with a suggestion)."""
    if name in FIELDS:
        return
    group, _, last = name.rpartition(".")
    if group and group not in SECTIONS:
        raise ConfigError(f"config.{name}: no such field ({group!r} is not a group of fields)")
    known = [f.rpartition(".")[2] for f in FIELDS if f.rpartition(".")[0] == group]
    raise _unknown(last, known, f"config.{group}" if group else "config")


def override(config: Config, changes: Mapping[str, Any]) -> Config:
    """A copy of ``config`` with fields changed by dotted name, validated once, all together.

    ``override(config, {"data.num_val": 4, "steps": 2})``. Values are
    converted to the field's type (lists -> tuples, whole floats -> ints)
    and checked as a config file's are; an unknown field or a bad value
    raises :class:`~pcv.errors.ConfigError` naming it.
    """
    nested = dataclasses.asdict(config)
    for name, value in changes.items():
        check_field(name)
        group, _, last = name.rpartition(".")
        (nested[group] if group else nested)[last] = value
    return read(nested)


def changed_fields(old: Config, new: Config) -> list[tuple[str, Any, Any]]:
    """``[(field, old value, new value)]`` of every field that differs, in schema order."""
    a, b = flat(old), flat(new)
    return [(k, a[k], b[k]) for k in a if a[k] != b[k]]


def load(spec: str = DEFAULT) -> Config:
    """The config ``"name_or_path[:variant]"`` names: a shipped config (:data:`SHIPPED`) or a file.

    A config file defines ``get_config(arg)`` (``arg``: the text after the
    first ``:``, or None) returning a :class:`Config` (or a mapping of
    fields, read by :func:`read`).
    """
    name, sep, arg = str(spec).partition(":")
    path = pathlib.Path(os.path.expanduser(name))
    if name in SHIPPED and not path.is_file():
        path = CONFIG_DIR / f"{name}.py"
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist (shipped configs: {', '.join(SHIPPED)})")
    module_spec = importlib.util.spec_from_file_location(f"pcv_config_{path.stem}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ConfigError(f"config file {path} has no get_config(arg) function")
    try:
        return read(module.get_config(arg if sep else None))
    except ConfigError as e:
        raise ConfigError(f"{e} (in {path})") from None


def variant(config: Config, arg: str | None, name: str) -> Config:
    """A shipped config's variant: ``""`` or None, the config itself; ``"smoke"``, :func:`smoke` of it."""
    if arg in (None, ""):
        return config
    if arg == "smoke":
        return smoke(config)
    raise ConfigError(f"config {name}: unknown variant {arg!r}; use '' or 'smoke'")


def smoke(config: Config) -> Config:
    """The config shrunk to run in seconds on a CPU: small network, 64-pixel images, 6 steps.

    The data source, grid, label space and every code path stay those of the
    config; only sizes, counts and cadences shrink.
    """
    data, changes = (
        config.data,
        {
            "model.backbone": "small",
            "model.fpn_channels": 32,
            "model.fusion_channels": 32,
            "model.backbone_norm": "batch",
            "model.dtype": "float32",
            "model.pretrained": "",
            "data.image_size": (64, 64),
            "data.crop_size": (),
            "data.num_val": 8,
            "data.num_workers": 0,
            "batch_size": 8,
            "eval_batch_size": 0,
            "steps": 6,
            "optimizer.warmup_steps": 2,
            "log_every": 2,
            "eval_every": 0,
            "checkpoint_every": 3,
            "inference.min_stuff_area": 16,
            "inference.max_instances": min(config.inference.max_instances, 32),
            "num_panel_images": 2,
        },
    )
    if data.base_size:
        changes["data.base_size"] = 64
    if data.eval_short_side:
        changes.update({"data.eval_short_side": 64, "data.eval_max_size": 96, "data.eval_pad_shape": ()})
    return override(config, changes)


def default_config():
    """Every field with its default as an ``ml_collections.ConfigDict``: the older form of config files.

    A config file may build its config by setting fields on this and return
    it; :func:`load` reads what it returns into a :class:`Config`. The
    shipped configs return a :class:`Config` (:func:`override` of the
    defaults) instead.
    """
    return ml_collections.ConfigDict(dataclasses.asdict(Config()))

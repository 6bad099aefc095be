"""The shipped configs: ``ml_collections`` files with ``get_config(arg)``, inside the package.

They travel with every install (a wheel runs ``python -m pcv.train`` with no
checkout); in a checkout ``configs/`` at the top level is this folder. A
config is named by a shipped name or a file path, each with an optional
``:variant``::

    python -m pcv.train --config=coco_r50 ...                # a shipped config
    python -m pcv.train --config=configs/coco_r50.py:smoke   # the same file, by path
    python -m pcv.train --config=~/my_config.py              # your own file

Every shipped config has a ``smoke`` variant (:func:`smoke`) that shrinks it
so the same code path runs in seconds on a CPU. Fields, defaults and their
meaning: :mod:`pcv.config`.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from pcv.errors import ConfigError

#: The folder of the shipped config files.
CONFIG_DIR = Path(__file__).resolve().parent
#: Shipped config names (``--config=<name>[:variant]``).
NAMES = ("synthetic", "coco_r50", "cityscapes_r50", "custom")
#: The config ``python -m pcv.train`` runs without ``--config``.
DEFAULT = "synthetic"


def split_spec(spec: str) -> tuple[str, str | None]:
    """``"name_or_path[:variant]"`` -> ``(name_or_path, variant or None)``."""
    path, sep, arg = str(spec).partition(":")
    return path, (arg if sep else None)


def resolve(spec: str) -> str:
    """A config spec with a shipped name replaced by its file path; paths are kept (``~`` expanded)."""
    name, arg = split_spec(spec)
    path = Path(os.path.expanduser(name))
    if name in NAMES and not path.is_file():
        path = CONFIG_DIR / f"{name}.py"
    return str(path) + (f":{arg}" if arg is not None else "")


def load_file(path: str | os.PathLike, arg: str | None = None):
    """``get_config(arg)`` of the config file at ``path``, an ``ml_collections.ConfigDict``."""
    path = Path(os.path.expanduser(str(path)))
    if not path.is_file():
        known = ", ".join(NAMES)
        raise ConfigError(f"config file {path} does not exist (shipped configs: {known})")
    module_spec = importlib.util.spec_from_file_location(f"pcv_config_{path.stem}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ConfigError(f"config file {path} has no get_config(arg) function")
    return module.get_config(arg)


def load(spec: str = DEFAULT):
    """The ConfigDict of ``"name_or_path[:variant]"`` (module docstring)."""
    path, arg = split_spec(resolve(spec))
    return load_file(path, arg)


def unknown_variant(config_name: str, arg) -> ConfigError:
    return ConfigError(f"config {config_name}: unknown variant {arg!r}; use '' or 'smoke'")


def smoke(c):
    """Shrink a config in place so it runs in seconds on a CPU: small network, 64-pixel images, 6 steps.

    The data source, grid, label space and every code path stay those of the
    config; only sizes, counts and cadences shrink.
    """
    c.model.backbone = "small"
    c.model.fpn_channels = 32
    c.model.fusion_channels = 32
    c.model.backbone_norm = "batch"
    c.model.dtype = "float32"
    c.model.pretrained = ""
    c.data.image_size = (64, 64)
    c.data.crop_size = ()
    if c.data.base_size:
        c.data.base_size = 64
    c.data.num_val = 8
    c.data.num_workers = 0
    if c.data.eval_short_side:
        c.data.eval_short_side, c.data.eval_max_size, c.data.eval_pad_shape = 64, 96, ()
    c.batch_size = 8
    c.eval_batch_size = 0
    c.steps = 6
    c.optimizer.warmup_steps = 2
    c.log_every = 2
    c.eval_every = 0
    c.checkpoint_every = 3
    c.inference.min_stuff_area = 16
    c.inference.max_instances = min(c.inference.max_instances, 32)
    c.num_panel_images = 2
    return c

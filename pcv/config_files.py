"""Load ml_collections config files by path.

``configs/`` is a folder of config files (``get_config(arg)`` each), not a
package: the trainer reads them with ``--config=path[:arg]``, and everything
else (configs building on one another, the benchmark, tests, the notebook)
goes through :func:`load_config_file`.

    from pcv.config_files import CONFIG_DIR, load_config_file
    config = load_config_file(CONFIG_DIR / "synthetic.py", "smoke")
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import ml_collections

#: The repository's configs/ folder (an editable install or a checkout).
CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


def load_config_file(path: str | os.PathLike, arg: str | None = None) -> ml_collections.ConfigDict:
    """``get_config(arg)`` of the config file at ``path``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    spec = importlib.util.spec_from_file_location(f"pcv_config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ValueError(f"config file {path} has no get_config(arg) function")
    return module.get_config(arg)

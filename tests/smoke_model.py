"""A smoke-trained PCV model for the tests of the tools that use one (evaluate, predict).

Not a test module: ``from smoke_model import smoke_config, train_smoke``.
"""

from pathlib import Path

from pcv.config_files import CONFIG_DIR, load_config_file

ROOT = Path(__file__).resolve().parents[1]


def smoke_config(**overrides):
    """configs/synthetic.py:smoke with dotted-key overrides, e.g. ``{"data.num_val": 4}``."""
    config = load_config_file(CONFIG_DIR / "synthetic.py", "smoke")
    for key, value in overrides.items():
        node = config
        *path, last = key.split(".")
        for p in path:
            node = node[p]
        node[last] = value
    return config


def train_smoke(workdir) -> dict:
    """Train 4 steps (checkpoints at 2 and 4) with 4 validation images; returns the trainer's results."""
    from pcv import train

    config = smoke_config(steps=4, checkpoint_every=2, **{"data.num_val": 4})
    return train.train_and_evaluate(config, str(workdir))

"""Test setup: fake 8 CPU devices so sharded code paths run on a laptop.

The flag must be set before JAX initialises its backends, which is why it
lives here, at import time of the first module pytest loads.
"""
import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402


def pytest_report_header(config):
    return f"jax {jax.__version__}, devices: {jax.device_count()} x {jax.devices()[0].platform}"


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def smoke_workdir(tmp_path_factory):
    """A work dir with a smoke-trained model (checkpoints at steps 2 and 4), trained once per session.

    Shared by the tests of the tools that use a trained model (evaluate,
    predict); they write only below their own output folders in it.
    """
    from smoke_model import train_smoke

    workdir = tmp_path_factory.mktemp("smoke_model")
    train_smoke(workdir)
    return workdir

"""Test setup: fake 8 CPU devices, share compiled programs, and one smoke-trained model per session.

The XLA flag must be set before JAX initialises its backends, which is why it
lives here, at import time of the first module pytest loads. The persistent
compilation cache (a temporary folder, removed at exit) lets the many short
trainings and the subprocesses the tests start (commands, hosts) reuse each
other's compiled programs instead of compiling them again.
"""

import atexit
import os
import shutil
import tempfile

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _cache = tempfile.mkdtemp(prefix="pcv_test_jax_cache_")
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"

import jax  # noqa: E402
import pytest  # noqa: E402


def pytest_report_header(config):
    return f"jax {jax.__version__}, devices: {jax.device_count()} x {jax.devices()[0].platform}"


@pytest.fixture(scope="session")
def smoke_workdir(tmp_path_factory):
    """A work dir with a smoke-trained model (checkpoints at steps 2 and 4), trained once per session.

    Shared by the tests of the tools that use a trained model (evaluate,
    predict, export); they write only below their own output folders in it.
    """
    from smoke_model import train_smoke

    workdir = tmp_path_factory.mktemp("smoke_model")
    train_smoke(workdir)
    return workdir

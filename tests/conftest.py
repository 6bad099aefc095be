"""Test setup: fake 8 CPU devices, compile fast, share compiled programs, one smoke-trained model per session.

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

# LLVM's optimisations off: the tests' programs are tiny, their compilation is what costs (a third less).
os.environ["XLA_FLAGS"] = (
    "--xla_backend_optimization_level=0 "
    + os.environ.get("XLA_FLAGS", "")
    + " --xla_force_host_platform_device_count=8"
).strip()
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


# The tests CI runs again against the lowest dependency versions pyproject.toml
# allows (``-m floors``): the ones that lean on each dependency's API (jax and
# flax: the voting core and a training run; optax and orbax: resume; grain:
# the pipeline's workers and saved position; tensorboardX and tensorboard:
# event files; safetensors; ml_collections: configs; tqdm: the live bar; tensorflow-datasets: prepare),
# kept to about a minute.
FLOORS_MODULES = {"test_grid.py", "test_aggregation.py", "test_backprojection.py", "test_structure.py"}
FLOORS_TESTS = {
    "test_smoke_run_writes_results_and_learns",
    "test_state_in_an_orbax_checkpoint_next_to_the_train_state",
    "test_worker_processes_give_the_same_batches",
    "test_metric_writer_writes_tensorboard_and_jsonl",
    "test_safetensors_round_trip",
    "test_build_model_loads_config_model_pretrained_into_pcvnet",
    "test_every_field_has_a_default_and_a_comment",
    "test_a_config_file_in_the_older_configdict_form_still_loads",
    "test_progress_on_a_terminal_is_a_live_bar",
    "test_prepare_custom_and_read_back",
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.name in FLOORS_MODULES or item.originalname in FLOORS_TESTS:
            item.add_marker(pytest.mark.floors)

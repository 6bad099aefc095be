"""Work dirs on Google Cloud Storage, against a real GCS API server on 127.0.0.1 (gcp-storage-emulator).

The emulator runs in its own process, started here on a free port and
stopped at the end. Google's clients and gcsfs find it through
``STORAGE_EMULATOR_HOST``, TensorStore (Orbax's arrays) through
``TENSORSTORE_GCS_HTTP_URL``. Everything else keeps to 127.0.0.1: no
credential lookup (``GOOGLE_AUTH_TOKEN_FOR_TESTING``; the metadata server
pointed at a closed local port) and no bucket-type probe over gRPC
(``GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false``; recent gcsfs would otherwise
stall about a minute per bucket).

Three settings of the emulator make it answer at about the speed of a real
bucket: TCP_NODELAY (without it every response waits ~40 ms for a delayed
ACK), a listen backlog larger than TensorStore's 32 concurrent requests
(without it connections are dropped and retried after seconds), and no
persistence file (it would re-encode every object's metadata on each write;
this emulator lives in memory and is never restarted).

The emulator does not return object generations on reads, which the OCDBT
checkpoint format needs for its conditional writes; against an emulator
:mod:`pcv.workdir` writes plain zarr checkpoints instead (the rest of the
path is the production one).
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from smoke_model import ROOT, reaped

pytest.importorskip("gcp_storage_emulator", reason="needs gcp-storage-emulator: pip install -e '.[test]'")

BUCKET = "pcv-test"
EMULATOR = """
import sys
from http import server as http_server
from gcp_storage_emulator import server, storage
server.RequestHandler.disable_nagle_algorithm = True
http_server.HTTPServer.request_queue_size = 256
storage.Storage._write_config_to_file = lambda self: None  # in memory only; never restarted
server.create_server("127.0.0.1", int(sys.argv[1]), in_memory=True, default_bucket=sys.argv[2]).run()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def gcs(tmp_path_factory):
    """The environment that points every client at an emulator started for this module."""
    port = free_port()
    script = tmp_path_factory.mktemp("emulator") / "emulator.py"
    script.write_text(EMULATOR)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(port), BUCKET], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.time() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail("the storage emulator did not start")
            time.sleep(0.2)
    url = f"http://127.0.0.1:{port}"
    env = dict(
        os.environ,
        STORAGE_EMULATOR_HOST=url,
        TENSORSTORE_GCS_HTTP_URL=url,
        GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT="false",
        GOOGLE_AUTH_TOKEN_FOR_TESTING="emulator",
        GCE_METADATA_ROOT="127.0.0.1:9",
        GCE_METADATA_HOST="127.0.0.1:9",
        GCE_METADATA_IP="127.0.0.1:9",
        NO_GCE_CHECK="true",
        PYTHONPATH=str(ROOT),
    )
    yield env
    proc.terminate()
    proc.wait(timeout=10)


def command(env, cwd, module, *args, **popen):
    return subprocess.Popen(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def bucket(env):
    """A client of the emulator in this process (the trainers run in their own).

    gcsfs's core class: the package-level one probes each bucket's type over gRPC first.
    """
    from gcsfs.core import GCSFileSystem

    return GCSFileSystem(endpoint_url=env["STORAGE_EMULATOR_HOST"], token="anon", skip_instance_cache=True)


def gcs_listing(env, prefix):
    return sorted("gs://" + p for p in bucket(env).find(prefix))


def gcs_read(env, path):
    return bucket(env).cat_file(path).decode()


def test_train_kill_resume_and_evaluate_in_a_bucket(gcs, tmp_path):
    run = f"gs://{BUCKET}/runs/smoke"
    args = [
        "--config=synthetic:smoke",
        f"--workdir={run}",
        "--config.steps=16",
        "--config.log_every=1",
        "--config.data.num_val=2",
        "--config.num_devices=1",
    ]
    # Evaluating after every step keeps the first run busy long enough to be killed after its first save.
    first = command(gcs, tmp_path, "pcv.train", *args, "--config.checkpoint_every=4", "--config.eval_every=1")
    with reaped(first):
        deadline = time.time() + 240
        client = bucket(gcs)
        while not client.exists(f"{run}/checkpoints/4/commit_success.txt"):  # one cheap request a second
            client.invalidate_cache()
            assert time.time() < deadline and first.poll() is None, first.stderr.read()[-3000:]
            time.sleep(1)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    # The restart may save less often (checkpoint_every may change on resume): one more save, at the end.
    second = command(gcs, tmp_path, "pcv.train", *args, "--config.checkpoint_every=100", "--config.eval_every=0")
    out, err = second.communicate(timeout=600)
    assert second.returncode == 0, err[-3000:]
    assert "taking over the stale lock" in out and "resumed from step " in out
    listing = gcs_listing(gcs, run)
    for name in ("config.json", "categories.json", "metrics.jsonl", "panel.png", "results.json"):
        assert f"{run}/{name}" in listing, name
    assert any(p.startswith(f"{run}/events.out.tfevents.") for p in listing)
    results = json.loads(gcs_read(gcs, f"{run}/results.json"))
    assert results["step"] == 16 and f"{run}/lock.json" not in listing

    evaluate = command(gcs, tmp_path, "pcv.evaluate", f"--workdir={run}", "--workers=0", "--config.num_devices=1")
    out, err = evaluate.communicate(timeout=600)
    assert evaluate.returncode == 0, err[-3000:]
    scored = json.loads(gcs_read(gcs, f"{run}/eval/val_step16/results.json"))
    assert scored["eval"]["All"]["pq"] == pytest.approx(results["eval"]["All"]["pq"], abs=1e-12)
    assert scored["files"]["predictions_json"].startswith("gs://")
    assert os.listdir(tmp_path) == []  # nothing became a local folder named gs:

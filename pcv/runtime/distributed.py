"""Many hosts, one run: joining ``jax.distributed`` from the environment, and the few host collectives pcv needs.

Every way of starting JAX on many machines says so in the environment;
:func:`plan` reads it (a pure function: environment in, the arguments of
``jax.distributed.initialize`` out) and :func:`initialize` acts on it:

=====================================  =====================================================
environment                            what happens
=====================================  =====================================================
``PCV_DISTRIBUTED=0``                  one process, no ``jax.distributed`` (refused if a
                                       launcher says there are more)
``PCV_DISTRIBUTED=1``                  a bare ``jax.distributed.initialize()`` (JAX detects)
``JAX_COORDINATOR_ADDRESS``            explicit: ``host:port`` (or ``host`` plus
                                       ``JAX_COORDINATOR_PORT``, as xpk sets for GPUs),
                                       ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID`` (or a
                                       Kubernetes ``JOB_COMPLETION_INDEX``), optional
                                       ``JAX_LOCAL_DEVICE_IDS`` ("0,1,2,3")
Slurm (``srun``: ``SLURM_NTASKS`` > 1)  bare ``initialize()``: JAX reads ``SLURM_*``
Open MPI (``OMPI_COMM_WORLD_SIZE`` > 1) bare ``initialize()`` (Open MPI 4), or through
                                       mpi4py where ``OMPI_MCA_orte_hnp_uri`` is absent (5)
Cloud TPU VM / GKE TPU                 bare ``initialize()``: JAX asks the TPU metadata
(TPU chips present, or                 (a single-host TPU VM simply gets one process)
``TPU_WORKER_HOSTNAMES``)
anything else                          one process
=====================================  =====================================================

``PCV_INIT_TIMEOUT`` and ``PCV_HEARTBEAT_TIMEOUT`` (seconds) set the
initialisation and heartbeat timeouts. After joining, the number of
processes JAX sees must equal what the launcher says, else the run stops:
N copies each training their own model into one work dir is the failure
this prevents.

GPUs: JAX wants **one process per GPU** under Slurm and MPI (``srun
--ntasks-per-node=<GPUs per node>``; JAX binds each process to the GPU of
its local rank), or one process per node with ``JAX_LOCAL_DEVICE_IDS``
listing the node's GPUs. A process per node without it sees one GPU.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils

from pcv.errors import PcvError

GOOGLE_PCI_VENDOR = "0x1ae0"


class LaunchError(PcvError):
    """The environment describes a multi-host launch that cannot work."""


@dataclasses.dataclass(frozen=True)
class Plan:
    """How this process joins a run.

    Attributes:
      method: "single", "explicit", "slurm", "openmpi", "tpu" or "forced".
      initialize: whether to call ``jax.distributed.initialize``.
      kwargs: its arguments (``{}``: a bare call, JAX detects the cluster).
      expected_processes: the process count the launcher announces (None: unknown).
      source: the environment variable the decision rests on, for messages.
    """

    method: str
    initialize: bool
    kwargs: dict
    expected_processes: int | None
    source: str


def _int(environ: Mapping[str, str], name: str) -> int:
    try:
        return int(environ[name])
    except ValueError:
        raise LaunchError(f"{name}={environ[name]!r} is not an integer") from None


def _timeouts(environ: Mapping[str, str]) -> dict:
    out = {}
    for name, key in (
        ("PCV_INIT_TIMEOUT", "initialization_timeout"),
        ("PCV_HEARTBEAT_TIMEOUT", "heartbeat_timeout_seconds"),
    ):
        if environ.get(name):
            out[key] = _int(environ, name)
    return out


def _device_ids(environ: Mapping[str, str]) -> dict:
    text = environ.get("JAX_LOCAL_DEVICE_IDS", "").strip()
    if not text:
        return {}
    try:
        return {"local_device_ids": [int(x) for x in text.split(",") if x.strip()]}
    except ValueError:
        raise LaunchError(f"JAX_LOCAL_DEVICE_IDS={text!r}: expected comma-separated device numbers") from None


def plan(environ: Mapping[str, str], *, tpu_vm: bool = False) -> Plan:
    """The launch the environment describes (module docstring); pure, no JAX call.

    Args:
      environ: the process environment.
      tpu_vm: whether TPU chips are attached (:func:`tpu_chips_present`).
    Raises:
      LaunchError: contradictory or incomplete variables, naming them.
    """
    extra = {**_timeouts(environ), **_device_ids(environ)}
    expected, source = None, ""
    if _int_or(environ, "SLURM_NTASKS") > 1:
        expected, source = int(environ["SLURM_NTASKS"]), "SLURM_NTASKS"
    elif _int_or(environ, "OMPI_COMM_WORLD_SIZE") > 1:
        expected, source = int(environ["OMPI_COMM_WORLD_SIZE"]), "OMPI_COMM_WORLD_SIZE"
    elif environ.get("TPU_WORKER_HOSTNAMES") or environ.get("TPU_PROCESS_ADDRESSES"):
        hosts = (environ.get("TPU_PROCESS_ADDRESSES") or environ["TPU_WORKER_HOSTNAMES"]).split(",")
        if len(hosts) > 1:
            expected, source = len(hosts), "TPU_WORKER_HOSTNAMES"

    switch = environ.get("PCV_DISTRIBUTED", "").strip().lower()
    if switch in ("0", "off", "false", "no"):
        if expected:
            raise LaunchError(
                f"PCV_DISTRIBUTED={switch} but {source}={expected}: {expected} processes would each "
                "train their own model into one work dir; unset PCV_DISTRIBUTED"
            )
        return Plan("single", False, {}, 1, "PCV_DISTRIBUTED")
    if switch in ("1", "on", "true", "yes"):
        return Plan("forced", True, extra, expected, source or "PCV_DISTRIBUTED")

    if environ.get("JAX_COORDINATOR_ADDRESS"):
        address = environ["JAX_COORDINATOR_ADDRESS"].strip()
        host_only = address.rsplit(":", 1)[-1] == address or address.endswith("]")
        if host_only:
            if not environ.get("JAX_COORDINATOR_PORT"):
                raise LaunchError(
                    f"JAX_COORDINATOR_ADDRESS={address!r} has no port: add ':PORT' or set JAX_COORDINATOR_PORT"
                )
            address = f"{address}:{_int(environ, 'JAX_COORDINATOR_PORT')}"
        missing = [n for n in ("JAX_NUM_PROCESSES",) if not environ.get(n)]
        id_var = (
            "JAX_PROCESS_ID"
            if environ.get("JAX_PROCESS_ID")
            else ("JOB_COMPLETION_INDEX" if environ.get("JOB_COMPLETION_INDEX") else None)
        )
        if id_var is None:
            missing.append("JAX_PROCESS_ID")
        if missing:
            raise LaunchError(
                f"JAX_COORDINATOR_ADDRESS is set but {' and '.join(missing)} "
                f"{'is' if len(missing) == 1 else 'are'} not: an explicit launch names the "
                "coordinator, the number of processes and this process's id"
            )
        count, index = _int(environ, "JAX_NUM_PROCESSES"), _int(environ, id_var)
        if count < 1 or not 0 <= index < count:
            raise LaunchError(f"{id_var}={index} must be in [0, JAX_NUM_PROCESSES={count})")
        if expected and expected != count:
            raise LaunchError(f"JAX_NUM_PROCESSES={count} but {source}={expected}")
        kwargs = dict(coordinator_address=address, num_processes=count, process_id=index, **extra)
        return Plan("explicit", True, kwargs, count, "JAX_COORDINATOR_ADDRESS")

    if source == "SLURM_NTASKS":
        if not environ.get("SLURM_STEP_NODELIST") or "SLURM_PROCID" not in environ:
            raise LaunchError(
                f"SLURM_NTASKS={expected} but this process was not started by srun (no "
                "SLURM_STEP_NODELIST / SLURM_PROCID): start one task per GPU with srun "
                "(launch/slurm/train.sbatch)"
            )
        return Plan("slurm", True, extra, expected, source)
    if source == "OMPI_COMM_WORLD_SIZE":
        kwargs = dict(extra)
        if "OMPI_MCA_orte_hnp_uri" not in environ:  # Open MPI 5 (PMIx): JAX finds the peers through mpi4py
            kwargs["cluster_detection_method"] = "mpi4py"
        return Plan("openmpi", True, kwargs, expected, source)
    if tpu_vm or source == "TPU_WORKER_HOSTNAMES":
        return Plan("tpu", True, extra, expected, source or "TPU chips")
    return Plan("single", False, {}, None, "")


def _int_or(environ: Mapping[str, str], name: str, default: int = 1) -> int:
    try:
        return int(environ.get(name, default))
    except ValueError:
        return default


def tpu_chips_present() -> bool:
    """Whether Google TPU chips are on this machine's PCI bus (what JAX itself checks)."""
    for vendor in glob.glob("/sys/bus/pci/devices/*/vendor"):
        try:
            with open(vendor) as f:
                if f.read().strip() == GOOGLE_PCI_VENDOR:
                    return True
        except OSError:
            continue
    return False


def initialize(environ: Mapping[str, str] | None = None, log=print) -> Plan:
    """Join the run the environment describes, then check the process count (module docstring)."""
    environ = os.environ if environ is None else environ
    how = plan(environ, tpu_vm=tpu_chips_present())
    if how.initialize and not jax.distributed.is_initialized():
        # CPU hosts (tests, launch/local.py) need a collectives library; it changes nothing on GPU or TPU.
        if not jax.config.jax_cpu_collectives_implementation:
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
        try:
            jax.distributed.initialize(**how.kwargs)
        except (RuntimeError, ValueError) as e:
            raise LaunchError(
                f"jax.distributed.initialize failed ({how.method} launch, from {how.source}): "
                f"{str(e).strip().splitlines()[0]}"
            ) from e
    count = jax.process_count()
    if how.expected_processes and count != how.expected_processes:
        raise LaunchError(
            f"the launcher started {how.expected_processes} processes ({how.source}) but JAX sees {count}: "
            "they would not train one model together; see launch/README.md"
        )
    return how


# ----------------------------------------------------------------------------
# Host collectives (no-ops with one process).
# ----------------------------------------------------------------------------


def process_index() -> int:

    return jax.process_index()


def process_count() -> int:

    return jax.process_count()


def is_main() -> bool:
    return process_index() == 0


def sync(name: str) -> None:
    """Wait until every host got here."""
    if process_count() > 1:
        multihost_utils.sync_global_devices(name)


def allgather_array(array) -> np.ndarray:
    """``[hosts, ...]``: a same-shaped numpy array from every host, bit for bit.

    The bytes travel as uint8: JAX without 64-bit mode would round float64
    to float32 and int64 to int32 on the way.
    """
    array = np.ascontiguousarray(np.asarray(array))
    if process_count() == 1:
        return array[None]

    raw = np.asarray(multihost_utils.process_allgather(array.view(np.uint8).reshape(-1), tiled=False))
    return raw.view(array.dtype).reshape((raw.shape[0], *array.shape))


def sum_across_hosts(array) -> np.ndarray:
    """The element-wise sum of a same-shaped numpy array over all hosts (in host order, full precision)."""
    array = np.asarray(array)
    if process_count() == 1:
        return array
    return allgather_array(array).sum(0).astype(array.dtype)


def gather_objects(obj: Any) -> list:
    """``[obj of host 0, obj of host 1, ...]`` on every host; ``obj`` must be JSON-serialisable."""
    if process_count() == 1:
        return [obj]

    data = np.frombuffer(json.dumps(obj).encode(), np.uint8)
    sizes = allgather_array(np.array([data.size], np.int64)).reshape(-1)
    padded = np.zeros(int(sizes.max()), np.uint8)
    padded[: data.size] = data
    rows = np.asarray(multihost_utils.process_allgather(padded, tiled=False))
    return [json.loads(bytes(rows[i, : sizes[i]]).decode()) for i in range(len(sizes))]


def broadcast_object(obj: Any) -> Any:
    """Host 0's ``obj`` on every host (JSON-serialisable)."""
    return gather_objects(obj if is_main() else None)[0]

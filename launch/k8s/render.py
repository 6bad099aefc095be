#!/usr/bin/env python3
r"""Render the JobSet manifest of a pcv training run on Kubernetes (GKE GPU or TPU node pools).

    python launch/k8s/render.py --platform=gpu --image=us-docker.pkg.dev/p/r/pcv:latest --hosts=2 \
        -- --config=coco_r50 --workdir=gs://bucket/runs/coco > jobset.yaml
    python launch/k8s/render.py --platform=tpu --tpu-accelerator=tpu-v5p-slice --tpu-topology=2x2x2 \
        --hosts=2 --image=... -- --config=coco_r50 --workdir=gs://bucket/runs/coco | kubectl apply -f -
    python launch/k8s/render.py ... --apply [--dry-run]   # kubectl apply it (or print the command)

One template (jobset.yaml.tmpl) for both: ``parallelism = completions =
hosts`` indexed pods restarted together by the JobSet, exit 42 (preempted,
checkpoint saved) and pod disruptions restart every host without counting
against ``maxRestarts``, and a termination grace period longer than a
checkpoint save.

- GPU: one pod per node with all its GPUs; the explicit coordinator
  variables pcv reads (``JAX_COORDINATOR_ADDRESS`` = pod 0 through the
  JobSet's headless service, ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID`` =
  the pod's completion index), ``nvidia.com/gpu`` limits, the GPU XLA flags
  of launch/gpu_env.sh.
- TPU: ``google.com/tpu`` limits and the GKE TPU node selectors; GKE gives
  each pod ``TPU_WORKER_HOSTNAMES`` / ``TPU_WORKER_ID``, from which JAX joins
  the slice.

The work dir must be gs:// (pods share no disk). Standard library only.
"""

from __future__ import annotations

import argparse
import json
import shlex
import string
import subprocess
import sys
from pathlib import Path

TEMPLATE = Path(__file__).with_name("jobset.yaml.tmpl")
GPU_ENV = Path(__file__).resolve().parents[1] / "gpu_env.sh"
PORT = 1234


def gpu_xla_flags() -> str:
    """The flags of launch/gpu_env.sh (one definition for Slurm, local GPU hosts and Kubernetes)."""
    text = GPU_ENV.read_text()
    start = text.index('PCV_GPU_XLA_FLAGS="') + len('PCV_GPU_XLA_FLAGS="')
    return " ".join(text[start : text.index('"', start)].replace("\\\n", " ").split())


def flow(value) -> str:
    """A value as a YAML flow node (JSON is YAML)."""
    return json.dumps(value)


def render(
    platform: str,
    image: str,
    hosts: int,
    args: list[str],
    *,
    name: str = "pcv-train",
    gpus_per_host: int = 8,
    tpu_accelerator: str = "tpu-v5p-slice",
    tpu_topology: str = "2x2x2",
    tpu_chips_per_host: int = 4,
    grace: int = 600,
    max_restarts: int = 10,
) -> str:
    if hosts < 1:
        raise ValueError(f"--hosts must be >= 1, got {hosts}")
    index = {
        "valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}
    }
    if platform == "gpu":
        env = [
            {"name": "JAX_COORDINATOR_ADDRESS", "value": f"{name}-workers-0-0.{name}"},
            {"name": "JAX_COORDINATOR_PORT", "value": str(PORT)},
            {"name": "JAX_NUM_PROCESSES", "value": str(hosts)},
            {"name": "JAX_PROCESS_ID", **index},
            {"name": "XLA_FLAGS", "value": gpu_xla_flags()},
        ]
        limits = {"nvidia.com/gpu": gpus_per_host}
        node_selector = {}
        annotations = {}
    elif platform == "tpu":
        env = [{"name": "PCV_DISTRIBUTED", "value": "1"}]
        limits = {"google.com/tpu": tpu_chips_per_host}
        node_selector = {
            "cloud.google.com/gke-tpu-accelerator": tpu_accelerator,
            "cloud.google.com/gke-tpu-topology": tpu_topology,
        }
        annotations = {"alpha.jobset.sigs.k8s.io/exclusive-topology": "cloud.google.com/gke-nodepool"}
    else:
        raise ValueError(f"--platform must be gpu or tpu, got {platform!r}")
    values = {
        "name": name,
        "image": image,
        "hosts": hosts,
        "args": flow(list(args)),
        "env": flow(env),
        "limits": flow(limits),
        "node_selector": flow(node_selector),
        "grace": grace,
        "max_restarts": max_restarts,
        "port": PORT,
        "annotations": "".join(f"\n    {k}: {v}" for k, v in annotations.items()) or " {}",
    }
    return string.Template(TEMPLATE.read_text()).substitute(values)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="launch/k8s/render.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--platform", required=True, choices=("gpu", "tpu"))
    p.add_argument("--image", required=True, help="container image with pcv installed")
    p.add_argument("--hosts", type=int, required=True, help="pods (JAX processes); keep fixed across restarts")
    p.add_argument("--name", default="pcv-train")
    p.add_argument("--gpus-per-host", type=int, default=8)
    p.add_argument("--tpu-accelerator", default="tpu-v5p-slice")
    p.add_argument("--tpu-topology", default="2x2x2")
    p.add_argument("--tpu-chips-per-host", type=int, default=4)
    p.add_argument("--grace", type=int, default=600, help="termination grace period (s), > a checkpoint save")
    p.add_argument("--max-restarts", type=int, default=10)
    p.add_argument("--apply", action="store_true", help="kubectl apply the manifest")
    p.add_argument("--dry-run", action="store_true", help="with --apply: print the command and manifest only")
    p.add_argument("args", nargs=argparse.REMAINDER, help="-- then the pcv.train arguments")
    a = p.parse_args(argv)
    args = a.args[1:] if a.args[:1] == ["--"] else a.args
    try:
        manifest = render(
            a.platform,
            a.image,
            a.hosts,
            args,
            name=a.name,
            gpus_per_host=a.gpus_per_host,
            tpu_accelerator=a.tpu_accelerator,
            tpu_topology=a.tpu_topology,
            tpu_chips_per_host=a.tpu_chips_per_host,
            grace=a.grace,
            max_restarts=a.max_restarts,
        )
    except ValueError as e:
        print(f"launch/k8s/render.py: error: {e}", file=sys.stderr)
        return 1
    if not a.apply:
        sys.stdout.write(manifest)
        return 0
    cmd = ["kubectl", "apply", "-f", "-"]
    if a.dry_run:
        print(f"# {shlex.join(cmd)} <<EOF")
        sys.stdout.write(manifest)
        return 0
    return subprocess.run(cmd, input=manifest, text=True).returncode


if __name__ == "__main__":
    sys.exit(main())

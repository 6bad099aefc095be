#!/bin/bash
# pcv on a Cloud TPU VM pod: create, set up, train, stop, delete.
#
#   export TPU_NAME=pcv-v4-32 ZONE=us-central2-b ACCELERATOR_TYPE=v4-32 RUNTIME_VERSION=tpu-ubuntu2204-base
#   launch/tpu_vm.sh create [--spot]        # a queued resource; waits until it is ACTIVE
#   launch/tpu_vm.sh setup                  # install jax[tpu] and pcv on every worker
#   launch/tpu_vm.sh train -- --config=coco_r50 --workdir=gs://bucket/runs/coco ...
#   launch/tpu_vm.sh stop                   # stop pcv and free the TPUs on every worker
#   launch/tpu_vm.sh delete
#   launch/tpu_vm.sh --dry-run <command> ...  # print the gcloud commands, run nothing
#
# Every worker runs the same command (gcloud ... ssh --worker=all); pcv calls
# jax.distributed.initialize() itself on a TPU VM and JAX finds the other
# workers through the TPU metadata. TPU VM workers share no disk: the work
# dir must be gs://; the dataset may be on each worker's disk or a gcsfuse
# mount. Keep the slice shape fixed across restarts. Exit code 42 from train
# means preempted: run `train` again with the same arguments to resume.
#
# Settings (environment): TPU_NAME, ZONE, ACCELERATOR_TYPE, RUNTIME_VERSION,
# PROJECT (optional), PCV_PIP_SPEC (what `setup` installs; default: this
# repository from GitHub), PCV_ENV (extra "VAR=value ..." for train).

set -euo pipefail

dry_run=0
if [[ "${1:-}" == "--dry-run" ]]; then
  dry_run=1
  shift
fi
command="${1:-}"
shift || true

TPU_NAME="${TPU_NAME:-pcv-tpu}"
ZONE="${ZONE:-us-central2-b}"
ACCELERATOR_TYPE="${ACCELERATOR_TYPE:-v4-32}"
RUNTIME_VERSION="${RUNTIME_VERSION:-tpu-ubuntu2204-base}"
PCV_PIP_SPEC="${PCV_PIP_SPEC:-pcv @ git+https://github.com/OWNER/pcv}"
project_args=()
if [[ -n "${PROJECT:-}" ]]; then
  project_args=(--project "${PROJECT}")
fi

run() {
  if [[ "${dry_run}" == "1" ]]; then
    printf '%q ' "$@"
    printf '\n'
  else
    "$@"
  fi
}

on_all_workers() {
  run gcloud compute tpus tpu-vm ssh "${TPU_NAME}" --zone "${ZONE}" "${project_args[@]}" --worker=all \
    --command "$1"
}

quote_args() {
  local out="" arg
  for arg in "$@"; do
    out+=" $(printf '%q' "${arg}")"
  done
  printf '%s' "${out}"
}

case "${command}" in
  create)
    spot=()
    if [[ "${1:-}" == "--spot" ]]; then
      spot=(--spot)
    fi
    run gcloud compute tpus queued-resources create "${TPU_NAME}" --node-id "${TPU_NAME}" --zone "${ZONE}" \
      "${project_args[@]}" --accelerator-type "${ACCELERATOR_TYPE}" --runtime-version "${RUNTIME_VERSION}" \
      "${spot[@]}"
    if [[ "${dry_run}" == "0" ]]; then
      until [[ "$(gcloud compute tpus queued-resources describe "${TPU_NAME}" --zone "${ZONE}" \
                  "${project_args[@]}" --format='value(state.state)')" == "ACTIVE" ]]; do
        echo "waiting for ${TPU_NAME} to become ACTIVE..." >&2
        sleep 30
      done
    fi
    ;;
  setup)
    on_all_workers "pip install -U 'jax[tpu]' $(printf '%q' "${PCV_PIP_SPEC}")"
    ;;
  train)
    if [[ "${1:-}" == "--" ]]; then
      shift
    fi
    on_all_workers "${PCV_ENV:+${PCV_ENV} }python3 -m pcv.train$(quote_args "$@")"
    ;;
  stop)
    # A killed or hung run keeps /dev/accel* (or /dev/vfio/*) open; the next run could not start.
    on_all_workers "pkill -f 'python3 -m pcv' || true; sudo lsof -t /dev/accel* /dev/vfio/* 2>/dev/null | xargs -r sudo kill -9 || true"
    ;;
  delete)
    run gcloud compute tpus queued-resources delete "${TPU_NAME}" --zone "${ZONE}" "${project_args[@]}" \
      --force --quiet
    ;;
  *)
    echo "usage: launch/tpu_vm.sh [--dry-run] create [--spot] | setup | train -- <pcv.train args> | stop | delete" >&2
    exit 2
    ;;
esac

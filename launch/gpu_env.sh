# shellcheck shell=bash
# Source before starting pcv on NVIDIA GPUs: the XLA flags the JAX GPU
# performance guide recommends for data-parallel training.
#
#   latency hiding scheduler   overlap the gradient all-reduce with compute
#   *_combine_threshold_bytes  fewer, larger collectives (128 MiB buckets)
#
# The user's own XLA_FLAGS come last, so any flag set there wins. Unknown
# flags make XLA abort at start-up; test/test_launch.py checks that these
# parse with the installed jaxlib.

PCV_GPU_XLA_FLAGS="--xla_gpu_enable_latency_hiding_scheduler=true \
--xla_gpu_all_reduce_combine_threshold_bytes=134217728 \
--xla_gpu_all_gather_combine_threshold_bytes=134217728 \
--xla_gpu_reduce_scatter_combine_threshold_bytes=134217728"
export XLA_FLAGS="${PCV_GPU_XLA_FLAGS}${XLA_FLAGS:+ ${XLA_FLAGS}}"
# Let XLA keep 90% of each GPU's memory (the rest for NCCL and CUDA libraries).
export XLA_PYTHON_CLIENT_MEM_FRACTION="${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.9}"

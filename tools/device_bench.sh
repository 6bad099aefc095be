#!/bin/bash
# The accelerator figures of BENCHMARKS.md in one call, on a machine with a GPU (or TPU) and jax for it.
#
#   bash tools/device_bench.sh [OUT_DIR]          # default OUT_DIR: $OUT, else ./device_bench
#
# Installs what such a machine usually lacks from wheels carried in .whl/ (grain, ml_collections,
# etils, tensorboardX, safetensors, array_record, flatbuffers; see BENCHMARKS.md for the download command),
# then runs, each writing JSON next to a log:
#   1. python -m pcv.bench voting   aggregation, backprojection and whole inference at COCO and
#                                   Cityscapes scale, each against one read of the same input;
#   2. python -m pcv.bench scaling  inference and aggregation against map size and K, with peak memory;
#   3. python -m pcv.bench memory   compiled peak memory of inference and of a ResNet-50 step per image;
#   4. python -m pcv.bench train    a ResNet-50-FPN step at 512x512 and 800x1344, bf16 and float32;
#   5. the torchvision ResNet-50 parity tests (skipped on CPU machines without torch).
# Nothing here needs a dataset or a download.
set -uo pipefail
out="${1:-${OUT:-device_bench}}"
mkdir -p "${out}"
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="/tmp/site:${PWD}${PYTHONPATH:+:${PYTHONPATH}}"
else
  export PYTHONPATH="${PWD}${PYTHONPATH:+:${PYTHONPATH}}"
fi
export PYTHONUNBUFFERED=1
python3 -c "import jax; print('jax', jax.__version__, jax.devices())" 2>&1 | tee "${out}/env.log"
python3 -m pcv.bench voting --sizes=coco,cityscapes --repeats=30 --json="${out}/voting.json" 2>&1 | tee "${out}/voting.log"
python3 -m pcv.bench scaling --repeats=20 --json="${out}/scaling.json" 2>&1 | tee "${out}/scaling.log"
python3 -m pcv.bench memory --sizes=coco,cityscapes --json="${out}/memory.json" 2>&1 | tee "${out}/memory.log"
for dtype in bfloat16 float32; do
  for size in 512 800x1344; do
    python3 -m pcv.bench train --backbone=resnet50 --image_size="${size}" --batch=16 --repeats=10 --dtype="${dtype}" \
      --json="${out}/train_${dtype}_${size}.json" 2>&1 | tee -a "${out}/train.log"
  done
done
python3 -m pytest -q -p no:cacheprovider tests/test_pretrained.py -k torch 2>&1 | tee "${out}/parity.log"

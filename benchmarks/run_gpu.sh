#!/usr/bin/env bash
# The real-size GPU run behind README.md's GPU figures, as run on a bare CUDA machine that has
# torch, transformers, pytest and pytest-benchmark but not diffusers/peft/pluggy: those travel
# as wheels in .benchwhl/ (ignored by git), fetched on a machine with pip access by
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 -d .benchwhl \
#       diffusers==0.42.1 peft==0.21.2 pluggy==1.7.0 importlib_metadata
# Results: $OUT/gpu.json (the ratios), $OUT/bench.json (pytest-benchmark), $OUT/gpu.log.
set -o pipefail
OUT=${OUT:-/tmp/bench-out}; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .benchwhl/*.whl || exit 1
python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --no-cache-dir --target /tmp/vm . || exit 1
export PYTHONPATH=/tmp/vm:/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.log"
python3 -c "import torch, diffusers, peft, transformers; print('torch', torch.__version__, 'diffusers', diffusers.__version__, 'peft', peft.__version__, 'transformers', transformers.__version__)" | tee -a "$OUT/gpu.log"
VIDEOMAGE_BENCH_SIZE=real VIDEOMAGE_BENCH_JSON="$OUT/gpu.json" timeout "${BENCH_TIMEOUT:-300}" \
  python3 -m pytest benchmarks -q -s --benchmark-only -p no:cacheprovider --benchmark-json="$OUT/bench.json" 2>&1 \
  | grep -v -e "kept in float32" | tee -a "$OUT/gpu.log"

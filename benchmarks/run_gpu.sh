#!/usr/bin/env bash
# The real-size GPU run behind README.md's GPU figures, as run on a bare CUDA machine that has
# torch, transformers, pytest and pytest-benchmark but not diffusers/peft/pluggy: those travel
# as wheels in .benchwhl/ (ignored by git), fetched on a machine with pip access by
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 -d .benchwhl \
#       diffusers==0.42.1 peft==0.21.2 pluggy==1.7.0 accelerate importlib_metadata
# Results: $OUT/gpu-<backbone>.json (the ratios), $OUT/bench-<backbone>.json (pytest-benchmark),
# $OUT/plan-<backbone>.json (videomage plan's estimates), $OUT/gpu.log.
set -o pipefail
OUT=${OUT:-/tmp/bench-out}; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .benchwhl/*.whl || exit 1
python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --no-cache-dir --target /tmp/vm . || exit 1
export PYTHONPATH=/tmp/vm:/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.log"
python3 -c "import torch, diffusers, peft, transformers; print('torch', torch.__version__, 'diffusers', diffusers.__version__, 'peft', peft.__version__, 'transformers', transformers.__version__)" | tee -a "$OUT/gpu.log"
# Both backbones: the published ZeroScope UNet, then Wan 2.1 1.3B's transformer (BENCH_BACKBONES to choose).
for backbone in ${BENCH_BACKBONES:-zeroscope wan}; do
  VIDEOMAGE_BENCH_SIZE=real VIDEOMAGE_BENCH_BACKBONE=$backbone VIDEOMAGE_BENCH_JSON="$OUT/gpu-$backbone.json" \
    timeout "${BENCH_TIMEOUT:-300}" \
    python3 -m pytest benchmarks -q -s --benchmark-only -p no:cacheprovider --benchmark-json="$OUT/bench-$backbone.json" 2>&1 \
    | grep -v -e "kept in float32" | tee -a "$OUT/gpu.log"
done
# The planner's estimates beside the measured peaks, for the targets of benchmarks/README.md.
python3 -m videomage plan --model Wan-AI/Wan2.1-T2V-1.3B-Diffusers --frames 33 --height 480 --width 832 \
  --gradient-checkpointing --json > "$OUT/plan-wan.json" 2>> "$OUT/gpu.log"
python3 -m videomage plan --model cerspense/zeroscope_v2_576w --frames 24 --height 320 --width 576 \
  --gradient-checkpointing --json > "$OUT/plan-zeroscope.json" 2>> "$OUT/gpu.log"

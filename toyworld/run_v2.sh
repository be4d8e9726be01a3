#!/usr/bin/env bash
# Start (or resume) toy world v2's base-model training in the background, logging to runs/v2/train.log.
# From the repository root: toyworld/run_v2.sh [extra train_v2 options]
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p runs/v2
PY=${PYTHON:-.venv/bin/python}
OMP_NUM_THREADS=1 setsid nohup "$PY" -m toyworld.train_v2 --out runs/v2 \
  --warm plugins/videomage_toyworld/model_v2 "$@" >>runs/v2/train.log 2>&1 </dev/null &
echo $! >runs/v2/train.pid
echo "training pid $(cat runs/v2/train.pid), log runs/v2/train.log"

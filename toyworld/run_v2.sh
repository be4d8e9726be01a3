#!/usr/bin/env bash
# Start (or resume) toy world v2's base-model training in the background, logging to $RUN/train.log
# (RUN: the run folder, default runs/v2). From the repository root: toyworld/run_v2.sh [extra train_v2 options]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
RUN=${RUN:-runs/v2}
mkdir -p "$RUN"
OMP_NUM_THREADS=1 setsid nohup "$PY" -m toyworld.train_v2 --out "$RUN" \
  --warm plugins/videomage_toyworld/model_v2 "$@" >>"$RUN/train.log" 2>&1 </dev/null &
echo $! >"$RUN/train.pid"
echo "training pid $(cat "$RUN/train.pid"), log $RUN/train.log"

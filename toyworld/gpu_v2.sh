#!/usr/bin/env bash
# One prepared GPU session of toy world v2's base-model training, sized for a 15-minute window:
# about 9 minutes of training (checkpoints every 200 steps, so a cut run keeps its progress),
# then the evaluation, shipping the model into the package if it beats the shipped one.
# From the repository root, on the GPU machine:  toyworld/gpu_v2.sh [extra train_v2 options]
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
RUN=${RUN:-runs/v2}  # the run folder
timeout 540 "$PY" -m toyworld.train_v2 --out "$RUN" --warm plugins/videomage_toyworld/model_v2 \
  --device cuda --bf16 --batch 64 --lr 5e-3 --threads 8 --checkpoint-every 200 --export-every 200 --log-every 50 "$@"
"$PY" -m toyworld.evaluate_v2 --model $RUN/model --ship --no-commit --log $RUN/eval.jsonl --threads 8 --device cuda

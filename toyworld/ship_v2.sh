#!/usr/bin/env bash
# Every INTERVAL seconds (default 1800), evaluate toy world v2's latest export (runs/v2/model) over
# 64 samples and ship + commit it into plugins/videomage_toyworld/model_v2 when it beats the shipped
# one. Results go to runs/v2/eval.jsonl, output to runs/v2/ship.log. From the repository root:
#   toyworld/ship_v2.sh [INTERVAL]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
INTERVAL=${1:-1800}
OMP_NUM_THREADS=1 setsid nohup bash -c "
  while true; do
    sleep $INTERVAL
    if [ -d runs/v2/model ]; then
      $PY -m toyworld.evaluate_v2 --model runs/v2/model --ship --log runs/v2/eval.jsonl --sheet runs/v2/eval-latest.png || true
    fi
  done" >>runs/v2/ship.log 2>&1 </dev/null &
echo $! >runs/v2/ship.pid
echo "ship loop pid $(cat runs/v2/ship.pid), log runs/v2/ship.log"

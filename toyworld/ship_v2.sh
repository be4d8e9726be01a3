#!/usr/bin/env bash
# Every INTERVAL seconds (default 1800), evaluate toy world v2's latest export ($RUN/model) over
# 64 samples and ship + commit it into plugins/videomage_toyworld/model_v2 when it beats the shipped
# one. Results go to $RUN/eval.jsonl, output to $RUN/ship.log. From the repository root:
#   toyworld/ship_v2.sh [INTERVAL]
# RUN names the run folder (default runs/v2); COMMIT=0 ships without committing (commit by hand
# once, instead of a weights commit per improvement). PAUSE=1 stops the training process
# ($RUN/train.pid) while each evaluation runs and gives the evaluation THREADS threads (default 2):
# for training that itself uses every core (run_v2.sh --threads 2).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
RUN=${RUN:-runs/v2}  # the run folder
INTERVAL=${1:-1800}
NO_COMMIT=$([ "${COMMIT:-1}" = 0 ] && echo --no-commit || true)
PAUSE=${PAUSE:-0}
THREADS=$([ "$PAUSE" = 1 ] && echo "${THREADS:-2}" || echo 1)
OMP_NUM_THREADS=1 setsid nohup bash -c "
  while true; do
    sleep $INTERVAL
    if [ -d $RUN/model ]; then
      TRAINER=\$( [ $PAUSE = 1 ] && cat $RUN/train.pid 2>/dev/null || true )
      [ -n \"\$TRAINER\" ] && kill -STOP \$TRAINER 2>/dev/null || true
      OMP_NUM_THREADS=$THREADS $PY -m toyworld.evaluate_v2 --model $RUN/model --threads $THREADS --ship $NO_COMMIT \\
        --log $RUN/eval.jsonl --sheet $RUN/eval-latest.png || true
      [ -n \"\$TRAINER\" ] && kill -CONT \$TRAINER 2>/dev/null || true
    fi
  done" >>$RUN/ship.log 2>&1 </dev/null &
echo $! >$RUN/ship.pid
echo "ship loop pid $(cat $RUN/ship.pid), log $RUN/ship.log"

#!/usr/bin/env bash
# Runs the generator and DETECTORS detectors against the local broker in the foreground.
# Ctrl-C (or SIGTERM) stops the services cleanly, then the broker; its data is kept.
set -uo pipefail

cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
DETECTORS=${DETECTORS:-1}
[[ "$DETECTORS" =~ ^[1-9][0-9]*$ ]] || { echo "run-local: DETECTORS must be a positive number" >&2; exit 2; }

pids=()
stop_all() {
  local status=${1:-0}
  trap '' INT TERM
  echo "run-local: stopping services..." >&2
  kill -TERM "${pids[@]}" 2>/dev/null
  wait "${pids[@]}" 2>/dev/null
  kafka/broker.sh down
  exit "$status"
}
trap stop_all INT TERM

for ((i = 0; i < DETECTORS; i++)); do
  TRANSACTIONAL_ID="detector-local-$i" "$PYTHON" -m detector &
  pids+=($!)
done
"$PYTHON" -m generator &
pids+=($!)

echo "run-local: generator and $DETECTORS detector(s) running; watch with 'make consume-fraud'; Ctrl-C stops" >&2
# If a service exits by itself (bad setting, broker gone), stop the rest too.
wait -n "${pids[@]}"
status=$?
echo "run-local: a service exited with status $status; stopping the rest" >&2
stop_all "$status"

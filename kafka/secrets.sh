#!/usr/bin/env bash
# The secrets of secure mode: a CA of the project's own, the broker's certificate, the SCRAM
# users' passwords and the admin's client config for Kafka's CLI tools. `kafka/broker.sh up
# --secure` uses them (and runs `create` first); `make docker-secrets` exports the copies that
# docker-compose.*.secure.yml mount. Only what is missing is made; no secret is ever printed.
# Run `kafka/secrets.sh help` for the commands.
set -euo pipefail

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
REPO_ROOT=$(cd -- "$SCRIPT_DIR/.." && pwd -P)
DEFAULT_SECRETS_DIR="$REPO_ROOT/.kafka-secrets"   # git-ignored
SCRAM_USERS=(admin generator detector broker)     # broker: the broker's own inter-broker login
CERT_SAN="DNS:localhost,DNS:broker,IP:127.0.0.1,IP:0:0:0:0:0:0:0:1"  # broker: the compose host name
# What docker-compose.kafka.secure.yml and docker-compose.secure.yml mount as compose secrets.
DOCKER_SECRETS=(ca.crt broker.p12 keystore.password admin.password generator.password
                detector.password broker.password)

die() { printf 'secrets.sh: %s\n' "$*" >&2; exit 1; }
say() { printf 'secrets.sh: %s\n' "$*" >&2; }

usage() {
  cat <<EOF
usage: kafka/secrets.sh COMMAND [ARGS]

  create [--secrets-dir S] [--docker] [--quiet]
                  create what is missing in S (mode 700, files 600): the users' passwords
                  (${SCRAM_USERS[*]}), a CA, the broker's certificate
                  (CN=broker, for localhost, 127.0.0.1 and the compose host broker) in a PKCS#12
                  keystore, and admin.properties for Kafka's CLI tools; then print where they
                  are (--quiet: only what was created). --docker also exports what
                  docker-compose.*.secure.yml mount into S/docker
  where [--secrets-dir S]
                  print where the CA, the passwords and admin.properties are
  users           print the SCRAM users, one a line (the broker adds them to new storage)

  --secrets-dir   KAFKA_SECRETS_DIR   $DEFAULT_SECRETS_DIR
EOF
}

# 32 random letters and digits: safe inside JAAS quotes, properties files and CLI arguments.
new_password() {
  local pw=""
  while ((${#pw} < 32)); do
    pw+=$(head -c 64 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')
  done
  printf '%s' "${pw:0:32}"
}

# Creates what is missing in secrets dir $1; prints (to stderr) the names of what it made.
ensure_secrets() {
  local sdir="$1" user made=()
  command -v openssl >/dev/null \
    || die "openssl not found; secure mode needs it to create the CA and the broker certificate"
  local lock_fd
  exec {lock_fd}>"$sdir/.lock"
  flock "$lock_fd"
  (
    umask 077
    cd "$sdir" || exit 1
    for user in "${SCRAM_USERS[@]}"; do
      if [[ ! -s "$user.password" ]]; then
        new_password >"$user.password.tmp" && mv -f "$user.password.tmp" "$user.password" || exit 1
        made+=("$user.password")
      fi
    done
    if [[ ! -s ca.key || ! -s ca.crt ]]; then
      openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 \
        -subj "/CN=fraud-detection local Kafka CA" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -keyout ca.key -out ca.crt >openssl.log 2>&1 || { cat openssl.log >&2; exit 1; }
      rm -f broker.crt   # a new CA needs a new broker certificate
      made+=(ca.crt)
    fi
    # (Re)issue the broker certificate when missing, not from this CA, or expiring within a day.
    if [[ ! -s broker.crt || ! -s broker.key || ! -s broker.p12 || ! -s keystore.password ]] \
      || ! openssl verify -CAfile ca.crt broker.crt >/dev/null 2>&1 \
      || ! openssl x509 -checkend 86400 -noout -in broker.crt >/dev/null 2>&1; then
      printf 'subjectAltName=%s\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n' \
        "$CERT_SAN" >broker.ext
      [[ -s keystore.password ]] || new_password >keystore.password
      { openssl req -new -newkey rsa:2048 -nodes -subj "/CN=broker" -keyout broker.key -out broker.csr \
          && openssl x509 -req -sha256 -days 825 -in broker.csr -CA ca.crt -CAkey ca.key \
               -set_serial "0x$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')" \
               -extfile broker.ext -out broker.crt \
          && openssl pkcs12 -export -name broker -in broker.crt -inkey broker.key -certfile ca.crt \
               -passout file:keystore.password -out broker.p12.tmp \
          && mv -f broker.p12.tmp broker.p12; } >openssl.log 2>&1 || { cat openssl.log >&2; exit 1; }
      rm -f broker.csr broker.ext
      made+=(broker.crt)
    fi
    rm -f openssl.log
    # Kafka's CLI tools as the admin (`--command-config`); rewritten so that it follows the files.
    {
      printf 'security.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-512\n'
      printf 'sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="%s";\n' \
        "$(<admin.password)"
      printf 'ssl.truststore.type=PEM\nssl.truststore.location=%s/ca.crt\n' "$(pwd -P)"
    } >admin.properties.tmp && mv -f admin.properties.tmp admin.properties || exit 1
    find . -maxdepth 1 -type f -exec chmod 600 {} +
    ((${#made[@]} == 0)) || say "created in $sdir: ${made[*]}"
  ) || die "could not create the secrets in $sdir"
  exec {lock_fd}>&-
}

# Compose bind-mounts file secrets with their host permissions (uid/gid/mode are not applied),
# and the containers run as other users (kafka: 1000, the services: 10001), so these copies are
# world-readable files inside a directory only the owner may enter (mode 700).
export_docker_secrets() {
  local sdir="$1" out="$1/docker" f
  mkdir -p -- "$out" || die "cannot create $out"
  chmod 700 "$sdir" "$out" || die "cannot restrict $out"
  for f in "${DOCKER_SECRETS[@]}"; do
    if ! { install -m 644 "$sdir/$f" "$out/$f.tmp" && mv -f "$out/$f.tmp" "$out/$f"; }; then
      die "cannot write $out/$f"
    fi
  done
  say "Docker secrets exported to $out (directory mode 700; files 644 for the containers' users)"
}

print_location() {
  local sdir="$1"
  say "credentials and CA are in $sdir (readable by you only):"
  say "  CA certificate (KAFKA_SSL_CA_FILE): $sdir/ca.crt"
  say "  passwords (KAFKA_SASL_PASSWORD_FILE): $sdir/{admin,generator,detector}.password"
  say "  Kafka CLI tools as admin: --command-config $sdir/admin.properties"
}

# Parses --secrets-dir (and, where allowed, --docker / --quiet) into globals.
OPT_SECRETS_DIR="" OPT_DOCKER=0 OPT_QUIET=0
parse_opts() {
  local allow_flags="$1"; shift
  while (($#)); do
    case "$1" in
      --secrets-dir)   (($# >= 2)) || die "--secrets-dir needs a value"; OPT_SECRETS_DIR="$2"; shift 2 ;;
      --secrets-dir=*) OPT_SECRETS_DIR="${1#*=}"; shift ;;
      --docker)        [[ "$allow_flags" == 1 ]] || die "unknown option: $1"; OPT_DOCKER=1; shift ;;
      --quiet)         [[ "$allow_flags" == 1 ]] || die "unknown option: $1"; OPT_QUIET=1; shift ;;
      -h|--help)       usage; exit 0 ;;
      *)               die "unknown argument: $1 (see: kafka/secrets.sh help)" ;;
    esac
  done
  OPT_SECRETS_DIR="${OPT_SECRETS_DIR:-${KAFKA_SECRETS_DIR:-$DEFAULT_SECRETS_DIR}}"
}

# The absolute path of secrets dir $1, created (mode 700) if missing.
secrets_dir() {
  if ! { mkdir -p -- "$1" && chmod 700 "$1"; }; then die "cannot create secrets dir $1"; fi
  (cd -- "$1" && pwd -P)
}

main() {
  local cmd="${1:-help}"
  (($#)) && shift
  case "$cmd" in
    create)
      parse_opts 1 "$@"
      local sdir
      sdir=$(secrets_dir "$OPT_SECRETS_DIR")
      ensure_secrets "$sdir"
      ((OPT_DOCKER)) && export_docker_secrets "$sdir"
      ((OPT_QUIET)) || print_location "$sdir" ;;
    where)
      parse_opts 0 "$@"
      [[ -s "$OPT_SECRETS_DIR/admin.properties" ]] \
        || die "no secrets in $OPT_SECRETS_DIR yet; run: kafka/secrets.sh create --secrets-dir $OPT_SECRETS_DIR"
      print_location "$(cd -- "$OPT_SECRETS_DIR" && pwd -P)" ;;
    users)
      (($# == 0)) || die "users takes no arguments"
      printf '%s\n' "${SCRAM_USERS[@]}" ;;
    help|-h|--help) usage ;;
    *) usage >&2; exit 2 ;;
  esac
}

main "$@"

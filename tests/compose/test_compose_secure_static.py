"""Static checks of the secure compose variant: no Docker engine, no broker, no network.

docker-compose.kafka.secure.yml and docker-compose.secure.yml are override files, used as
`-f docker-compose.kafka.yml -f docker-compose.kafka.secure.yml` and `-f docker-compose.yml -f
docker-compose.secure.yml`. They are checked alone and merged with their base file by the
Compose Specification's merge rules: validity against the Compose schema, the broker's security
settings (SASL_SSL only, mutual TLS for the controller, the StandardAuthorizer, super users), the
least-privilege ACLs of kafka-init, the secrets (only as compose `secrets:` files, each one
mounted where it is read, none in an environment value), and that the apps' variables are
settings the code reads.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from detector.app import DEAD_LETTER_MAX_MESSAGE_BYTES
from detector.config import DetectorSettings
from fraudcore.config import CommonSettings
from generator.config import GeneratorSettings
from tests.compose.compose_files import (
    REPO,
    as_str,
    compose_cli,
    environment_of,
    interpolate,
    parse_listeners,
    read_dotenv,
    references,
    walk_strings,
)
from tests.compose.compose_merge import merge
from tests.compose.compose_schema import ComposeSchema, load_compose_schema

KAFKA_BASE, KAFKA_SECURE = "docker-compose.kafka.yml", "docker-compose.kafka.secure.yml"
APP_BASE, APP_SECURE = "docker-compose.yml", "docker-compose.secure.yml"
OVERRIDES = {KAFKA_SECURE: KAFKA_BASE, APP_SECURE: APP_BASE}
SECRETS_DIR = ".kafka-secrets/docker"
USERS = ("admin", "broker", "generator", "detector")
APPS: dict[str, type[CommonSettings]] = {
    "generator": GeneratorSettings,
    "detector": DetectorSettings,
}


def _load(name: str) -> dict[str, Any]:
    doc = yaml.safe_load((REPO / name).read_text())
    assert isinstance(doc, dict), f"{name} is not a YAML mapping"
    return doc


@pytest.fixture(scope="module")
def raw() -> dict[str, dict[str, Any]]:
    return {name: _load(name) for name in (*OVERRIDES, *OVERRIDES.values())}


@pytest.fixture(scope="module")
def merged(raw: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each override merged onto its base, variables resolved from .env alone."""
    dotenv = read_dotenv()
    return {
        override: interpolate(merge(raw[base], raw[override]), dotenv)
        for override, base in OVERRIDES.items()
    }


@pytest.fixture(scope="module")
def compose_schema() -> ComposeSchema:
    return load_compose_schema()


def _service(doc: dict[str, Any], name: str) -> dict[str, Any]:
    service: dict[str, Any] = doc["services"][name]
    return service


def _env(service: dict[str, Any]) -> dict[str, str]:
    return {key: as_str(value) for key, value in environment_of(service).items()}


def _script(service: dict[str, Any]) -> str:
    command = service["command"]
    return "\n".join(command) if isinstance(command, list) else str(command)


# --------------------------------------------------------------------------- schema


@pytest.mark.parametrize("name", [*OVERRIDES, "merged kafka", "merged app"])
def test_matches_the_compose_spec(
    name: str,
    raw: dict[str, dict[str, Any]],
    merged: dict[str, dict[str, Any]],
    compose_schema: ComposeSchema,
) -> None:
    doc = {
        "merged kafka": merged[KAFKA_SECURE],
        "merged app": merged[APP_SECURE],
    }.get(name) or interpolate(raw[name], read_dotenv())
    errors = sorted(
        compose_schema.validator().iter_errors(doc), key=lambda e: list(e.absolute_path)
    )
    report = "\n".join(f"  at {'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)
    assert not errors, f"{name} violates the Compose Specification:\n{report}"


@pytest.mark.parametrize("name", OVERRIDES)
def test_no_version_key_and_variables_have_the_base_defaults(
    name: str, raw: dict[str, dict[str, Any]]
) -> None:
    assert "version" not in raw[name]
    dotenv = read_dotenv()
    for text in walk_strings(raw[name]):
        for var, op, default in references(text):
            assert op == ":-", f"{name}: ${{{var}}} needs a `:-default`"
            if var in dotenv:
                assert default == dotenv[var], f"{name}: ${{{var}}} default differs from .env"


@pytest.mark.parametrize(("override", "base"), OVERRIDES.items())
def test_compose_cli_accepts_the_merged_files(override: str, base: str, tmp_path: Path) -> None:
    cli = compose_cli()
    if cli is None:
        pytest.skip("no Compose v2 CLI (`docker compose` plugin or docker-compose v2) on PATH")
    out = subprocess.run(
        [*cli, "-f", base, "-f", override, "config", "--quiet", "--no-path-resolution"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # The secret files exist only after `make docker-secrets`; all else must be accepted.
    problems = [line for line in out.stderr.splitlines() if ".kafka-secrets" not in line]
    assert out.returncode == 0 or not problems, out.stderr


# --------------------------------------------------------------------------- the broker


def test_broker_has_no_plaintext_listener(merged: dict[str, dict[str, Any]]) -> None:
    env = _env(_service(merged[KAFKA_SECURE], "broker"))
    listeners = parse_listeners(env["KAFKA_LISTENERS"])
    advertised = parse_listeners(env["KAFKA_ADVERTISED_LISTENERS"])
    protocols = dict(
        item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    )
    assert set(listeners) <= set(protocols)
    assert {protocols[name] for name in advertised} == {"SASL_SSL"}
    assert protocols["CONTROLLER"] == "SSL", "the controller listener is TLS too"
    assert "PLAINTEXT" not in protocols.values()
    assert advertised["SASL_SSL"] == ("broker", 9092), "containers still use broker:9092"
    assert advertised["SASL_SSL_HOST"] == ("localhost", 29092)
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] == "SASL_SSL"
    assert env["KAFKA_LISTENER_NAME_CONTROLLER_SSL_CLIENT_AUTH"] == "required"
    assert env["KAFKA_SSL_ENDPOINT_IDENTIFICATION_ALGORITHM"] == "https"
    assert "SCRAM-SHA-512" in env["KAFKA_SASL_ENABLED_MECHANISMS"].split(",")
    assert env["KAFKA_SASL_MECHANISM_INTER_BROKER_PROTOCOL"] == "SCRAM-SHA-512"


def test_broker_authorizes_every_request(merged: dict[str, dict[str, Any]]) -> None:
    env = _env(_service(merged[KAFKA_SECURE], "broker"))
    assert env["KAFKA_AUTHORIZER_CLASS_NAME"] == (
        "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    )
    assert env["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"] == "false"
    assert set(env["KAFKA_SUPER_USERS"].split(";")) == {"User:admin", "User:broker"}
    # The controller's client certificate (CN=broker) maps to User:broker.
    rule = env["KAFKA_SSL_PRINCIPAL_MAPPING_RULES"].split(",")[0]
    pattern, replacement = re.fullmatch(r"RULE:(.*)/(.*)/", rule).groups()  # type: ignore[union-attr]
    assert re.sub(pattern, replacement.replace("$", "\\"), "CN=broker") == "broker"


def test_broker_keeps_the_image_and_has_a_volume_of_its_own(
    raw: dict[str, dict[str, Any]], merged: dict[str, dict[str, Any]]
) -> None:
    base = _service(raw[KAFKA_BASE], "broker")
    broker = _service(merged[KAFKA_SECURE], "broker")
    assert broker["image"] == base["image"] == "apache/kafka:4.1.1"
    assert "image" not in _service(raw[KAFKA_SECURE], "broker"), "only the base pins the image"
    mounts = {str(v).split(":")[1]: str(v).split(":")[0] for v in broker["volumes"]}
    assert mounts[_env(broker)["KAFKA_LOG_DIRS"]] == "kafka-data-secure", (
        "a volume formatted by the plaintext broker has no SCRAM users"
    )
    assert "kafka-data-secure" in merged[KAFKA_SECURE]["volumes"]


def test_broker_start_script_formats_the_scram_users_and_starts_kafka(
    merged: dict[str, dict[str, Any]],
) -> None:
    script = _script(_service(merged[KAFKA_SECURE], "broker"))
    assert "kafka-storage.sh format --ignore-formatted" in script
    assert "--add-scram" in script
    assert re.search(r"for user in admin broker generator detector\b", script)
    assert "SCRAM-SHA-512 SCRAM-SHA-256" in script
    assert (
        script.rstrip()
        .splitlines()[-1]
        .strip()
        .startswith("exec /opt/kafka/bin/kafka-server-start.sh")
    )
    assert "umask 077" in script, "the generated properties hold passwords"


def test_broker_healthcheck_logs_in(merged: dict[str, dict[str, Any]]) -> None:
    check = _service(merged[KAFKA_SECURE], "broker")["healthcheck"]
    test = " ".join(check["test"][1:])
    assert re.search(r"kafka-broker-api-versions\.sh --bootstrap-server broker:9092\b", test)
    assert "--command-config /tmp/kafka-secure/admin.properties" in test
    assert "admin.properties" in _script(_service(merged[KAFKA_SECURE], "broker"))
    for key in ("interval", "timeout", "retries", "start_period"):
        assert key in check, f"healthcheck.{key} comes from the base file"


# --------------------------------------------------------------------------- kafka-init


def _acl_grants(script: str) -> list[tuple[str, frozenset[str], frozenset[str]]]:
    """(principal, operations, resources) of every `allow` line of the kafka-init script."""
    grants = []
    joined = script.replace("\\\n", " ")
    for line in joined.splitlines():
        words = [word.strip('"') for word in line.split()]
        if not words or words[0] != "allow":
            continue
        principal = words[words.index("--allow-principal") + 1]
        operations = frozenset(w for i, w in enumerate(words) if words[i - 1] == "--operation")
        resources = frozenset(
            f"{words[i - 1][2:]}={w}"
            for i, w in enumerate(words)
            if words[i - 1] in ("--topic", "--group", "--transactional-id")
        )
        if "PREFIXED" in words:
            resources = frozenset(f"{r}*" for r in resources)
        grants.append((principal, operations, resources))
    return grants


def test_kafka_init_grants_least_privilege(merged: dict[str, dict[str, Any]]) -> None:
    init = _service(merged[KAFKA_SECURE], "kafka-init")
    read, write = frozenset({"READ", "DESCRIBE"}), frozenset({"WRITE", "DESCRIBE"})
    grants = _acl_grants(_script(init))
    assert len(grants) == 4
    assert set(grants) == {
        ("User:generator", write, frozenset({"topic=$TRANSACTIONS_TOPIC"})),
        ("User:detector", read, frozenset({"topic=$TRANSACTIONS_TOPIC", "group=$CONSUMER_GROUP"})),
        (
            "User:detector",
            write,
            frozenset({"topic=$LEGIT_TOPIC", "topic=$FRAUD_TOPIC", "topic=$DEAD_LETTER_TOPIC"}),
        ),
        ("User:detector", write, frozenset({"transactional-id=$CONSUMER_GROUP*"})),
    }


def test_kafka_init_creates_the_topics_as_admin(merged: dict[str, dict[str, Any]]) -> None:
    init = _service(merged[KAFKA_SECURE], "kafka-init")
    script = _script(init)
    env = _env(init)
    assert init["depends_on"]["broker"]["condition"] == "service_healthy"
    assert script.count("--command-config") >= 2, "topics and ACLs both as admin"
    for var in ("TRANSACTIONS_TOPIC", "LEGIT_TOPIC", "FRAUD_TOPIC", "DEAD_LETTER_TOPIC"):
        assert f'create "${var}"' in script
    assert int(env["DEAD_LETTER_MAX_MESSAGE_BYTES"]) == DEAD_LETTER_MAX_MESSAGE_BYTES
    app_env = _env(_service(merged[APP_SECURE], "detector"))
    assert env["CONSUMER_GROUP"] == app_env["CONSUMER_GROUP"], "the ACL names the app's group"
    assert env["BOOTSTRAP_SERVER"] == "broker:9092"


def test_local_broker_creates_the_same_dead_letter_topic() -> None:
    """kafka/broker.sh --secure creates the topics too (the services may not)."""
    text = (REPO / "kafka" / "broker.sh").read_text()
    match = re.search(r"^DEAD_LETTER_MAX_MESSAGE_BYTES=(\d+)$", text, re.M)
    assert match, "kafka/broker.sh no longer sets DEAD_LETTER_MAX_MESSAGE_BYTES"
    assert int(match[1]) == DEAD_LETTER_MAX_MESSAGE_BYTES


# --------------------------------------------------------------------------- secrets


@pytest.mark.parametrize("name", OVERRIDES)
def test_secrets_are_files_from_the_ignored_secrets_dir(
    name: str, raw: dict[str, dict[str, Any]]
) -> None:
    secrets = raw[name].get("secrets") or {}
    assert secrets, f"{name} defines no secrets"
    for secret, spec in secrets.items():
        assert set(spec) == {"file"}, f"{secret}: only file secrets (no environment:)"
        assert spec["file"].startswith(f"./{SECRETS_DIR}/"), spec["file"]
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", f"{SECRETS_DIR}/ca.crt"], cwd=REPO, check=False
    )
    assert ignored.returncode == 0, f"{SECRETS_DIR} must be git-ignored"


def test_broker_sh_exports_every_secret_file_compose_mounts(raw: dict[str, dict[str, Any]]) -> None:
    text = (REPO / "kafka" / "broker.sh").read_text()
    body = text[text.index("export_docker_secrets() {") :]
    body = body[: body.index("\n}\n")]
    exported = set(re.findall(r"[\w.]+\.(?:crt|p12|password)", body))
    for name in OVERRIDES:
        for spec in raw[name]["secrets"].values():
            assert Path(spec["file"]).name in exported, f"broker.sh does not export {spec}"


@pytest.mark.parametrize(
    ("override", "service"),
    [
        (KAFKA_SECURE, "broker"),
        (KAFKA_SECURE, "kafka-init"),
        (APP_SECURE, "generator"),
        (APP_SECURE, "detector"),
    ],
)
def test_each_service_reads_only_the_secrets_it_mounts(
    override: str, service: str, merged: dict[str, dict[str, Any]]
) -> None:
    spec = _service(merged[override], service)
    mounted = {
        str(item) if not isinstance(item, dict) else item["source"] for item in spec["secrets"]
    }
    assert mounted <= set(merged[override]["secrets"]), "undefined secret"
    text = " ".join(walk_strings(spec))
    read = set(re.findall(r"/run/secrets/(\w+)", text)) | set(re.findall(r"\bsecret (\w+)", text))
    if service == "broker":  # the SCRAM loop reads kafka_<user>_password for every user
        read |= {f"kafka_{user}_password" for user in USERS}
    assert read <= mounted, f"{service} reads secrets it does not mount: {read - mounted}"


@pytest.mark.parametrize("name", OVERRIDES)
def test_no_secret_in_an_environment_value(name: str, merged: dict[str, dict[str, Any]]) -> None:
    for service_name, service in merged[name]["services"].items():
        for key, value in _env(service).items():
            assert not re.search(r"PASSWORD$|SECRET|TOKEN", key), f"{service_name}: {key}"
            assert "jaas" not in key.lower(), f"{service_name}: {key}"
            assert "password=" not in value, f"{service_name}: {key}"


# --------------------------------------------------------------------------- the apps


@pytest.mark.parametrize("service", APPS)
def test_app_logs_in_as_itself_with_a_password_file(
    service: str, merged: dict[str, dict[str, Any]]
) -> None:
    spec = _service(merged[APP_SECURE], service)
    env = _env(spec)
    assert env["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert env["KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert env["KAFKA_SASL_USERNAME"] == service
    assert env["KAFKA_SASL_PASSWORD_FILE"] == f"/run/secrets/kafka_{service}_password"
    assert env["KAFKA_SSL_CA_FILE"] == "/run/secrets/kafka_ca"
    assert "KAFKA_SASL_PASSWORD" not in env
    assert env["KAFKA_BROKER_URL"] == "broker:9092", "the base file's broker address stays"
    assert set(spec["secrets"]) == {"kafka_ca", f"kafka_{service}_password"}, (
        "a service mounts its own password only"
    )
    assert "TRANSACTIONAL_ID" not in env, "the default id starts with the group, as the ACL wants"


@pytest.mark.parametrize("service", APPS)
def test_app_env_names_are_settings_the_code_reads(
    service: str, raw: dict[str, dict[str, Any]]
) -> None:
    readable = {name.upper() for name in APPS[service].model_fields}
    env = environment_of(_service(raw[APP_SECURE], service))
    assert set(env) <= readable, f"not settings of {service}: {sorted(set(env) - readable)}"

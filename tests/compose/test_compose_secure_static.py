"""Static checks of the secure compose variant: no Docker engine, no broker, no network.

docker-compose.kafka.secure.yml and docker-compose.secure.yml are override files, used as
`-f docker-compose.kafka.yml -f docker-compose.kafka.secure.yml` and `-f docker-compose.yml -f
docker-compose.secure.yml`. Here each is checked as written, next to the values it relies on in
its base file: validity against the Compose schema, the broker's security settings (SASL_SSL
only, mutual TLS for the controller, the StandardAuthorizer, super users), the least-privilege
ACLs of kafka-init, the secrets (only as compose `secrets:` files, each one mounted where it is
read, none in an environment value), and that the apps' variables are settings the code reads.

The merged result is checked by the real Compose CLI in the Docker tier
(tests/docker/test_compose_config.py, `make test-docker`), not by a merge of our own.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from detector.config import DetectorSettings
from fraudcore.config import CommonSettings
from fraudcore.core import topics
from fraudcore.core.topics import DEAD_LETTER_MAX_MESSAGE_BYTES
from generator.config import GeneratorSettings
from tests.compose.compose_files import (
    REPO,
    as_str,
    assert_only_tls_listeners,
    environment_of,
    interpolate,
    read_dotenv,
    references,
    walk_strings,
)
from tests.compose.compose_schema import ComposeSchema, load_compose_schema
from tests.compose.kafka_init import TOPIC_LIST_IN_CONTAINER, expected_topics, run_kafka_init

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
def secure(raw: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each override as written, variables resolved from .env alone."""
    dotenv = read_dotenv()
    return {override: interpolate(raw[override], dotenv) for override in OVERRIDES}


@pytest.fixture(scope="module")
def base(raw: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The base file of each override, variables resolved from .env alone."""
    dotenv = read_dotenv()
    return {override: interpolate(raw[name], dotenv) for override, name in OVERRIDES.items()}


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


@pytest.mark.parametrize("name", OVERRIDES)
def test_matches_the_compose_spec(
    name: str, secure: dict[str, dict[str, Any]], compose_schema: ComposeSchema
) -> None:
    doc = secure[name]
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


# --------------------------------------------------------------------------- the broker


def test_broker_has_no_plaintext_listener(
    secure: dict[str, dict[str, Any]], base: dict[str, dict[str, Any]]
) -> None:
    env = _env(_service(secure[KAFKA_SECURE], "broker"))
    # Every base setting that names a plaintext listener is replaced by the override.
    plaintext = {
        key
        for key, value in _env(_service(base[KAFKA_SECURE], "broker")).items()
        if re.search(r"\bPLAINTEXT", value)
    }
    assert plaintext, "the base broker has plaintext listeners to replace"
    assert plaintext <= set(env), f"left from the base file: {sorted(plaintext - set(env))}"
    advertised = assert_only_tls_listeners(env)
    assert advertised["SASL_SSL"] == ("broker", 9092), "containers still use broker:9092"
    assert advertised["SASL_SSL_HOST"] == ("localhost", 29092)
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] == "SASL_SSL"
    assert env["KAFKA_LISTENER_NAME_CONTROLLER_SSL_CLIENT_AUTH"] == "required"
    assert env["KAFKA_SSL_ENDPOINT_IDENTIFICATION_ALGORITHM"] == "https"
    assert "SCRAM-SHA-512" in env["KAFKA_SASL_ENABLED_MECHANISMS"].split(",")
    assert env["KAFKA_SASL_MECHANISM_INTER_BROKER_PROTOCOL"] == "SCRAM-SHA-512"


def test_broker_authorizes_every_request(secure: dict[str, dict[str, Any]]) -> None:
    env = _env(_service(secure[KAFKA_SECURE], "broker"))
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
    secure: dict[str, dict[str, Any]], base: dict[str, dict[str, Any]]
) -> None:
    base_broker = _service(base[KAFKA_SECURE], "broker")
    broker = _service(secure[KAFKA_SECURE], "broker")
    assert base_broker["image"] == "apache/kafka:4.1.1"
    assert "image" not in broker, "only the base pins the image"
    mounts = {str(v).split(":")[1]: str(v).split(":")[0] for v in broker["volumes"]}
    # The same target as the base's volume, so that compose replaces it (merged by target).
    assert mounts == {_env(base_broker)["KAFKA_LOG_DIRS"]: "kafka-data-secure"}, (
        "a volume formatted by the plaintext broker has no SCRAM users"
    )
    assert "kafka-data-secure" in secure[KAFKA_SECURE]["volumes"]


def test_broker_start_script_formats_the_scram_users_and_starts_kafka(
    secure: dict[str, dict[str, Any]],
) -> None:
    script = _script(_service(secure[KAFKA_SECURE], "broker"))
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


def test_broker_healthcheck_logs_in(
    secure: dict[str, dict[str, Any]], base: dict[str, dict[str, Any]]
) -> None:
    check = _service(secure[KAFKA_SECURE], "broker")["healthcheck"]
    test = " ".join(check["test"][1:])
    assert re.search(r"kafka-broker-api-versions\.sh --bootstrap-server broker:9092\b", test)
    assert "--command-config /tmp/kafka-secure/admin.properties" in test
    assert "admin.properties" in _script(_service(secure[KAFKA_SECURE], "broker"))
    assert set(check) == {"test"}, "only the test is replaced; the timing is the base file's"
    base_check = _service(base[KAFKA_SECURE], "broker")["healthcheck"]
    for key in ("interval", "timeout", "retries", "start_period"):
        assert key in base_check, f"healthcheck.{key} comes from the base file"


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


def test_kafka_init_grants_least_privilege(secure: dict[str, dict[str, Any]]) -> None:
    init = _service(secure[KAFKA_SECURE], "kafka-init")
    read, write = frozenset({"READ", "DESCRIBE"}), frozenset({"WRITE", "DESCRIBE"})
    grants = _acl_grants(_script(init))
    changelogs = frozenset({"CREATE", "DESCRIBE", "READ", "WRITE"})
    assert len(grants) == 5
    assert set(grants) == {
        ("User:generator", write, frozenset({"topic=$TRANSACTIONS_TOPIC"})),
        ("User:detector", read, frozenset({"topic=$TRANSACTIONS_TOPIC", "group=$CONSUMER_GROUP"})),
        (
            "User:detector",
            write,
            frozenset({"topic=$LEGIT_TOPIC", "topic=$FRAUD_TOPIC", "topic=$DEAD_LETTER_TOPIC"}),
        ),
        ("User:detector", write, frozenset({"transactional-id=$CONSUMER_GROUP*"})),
        # The rules' changelog topics, by their prefix (topics.changelog_prefix): the detector
        # creates, writes and restores them, and no other topic of its group's name.
        ("User:detector", changelogs, frozenset({"topic=$CONSUMER_GROUP-*"})),
    }


def _merged_init(secure: dict[str, dict[str, Any]], base: dict[str, dict[str, Any]]) -> Any:
    """kafka-init as the override makes it: its command and secrets, the base file's mount and
    environment with its own on top (the Docker tier checks Compose's own merge)."""
    init = _service(secure[KAFKA_SECURE], "kafka-init")
    base_init = _service(base[KAFKA_SECURE], "kafka-init")
    return base_init | init | {"environment": environment_of(base_init) | environment_of(init)}


def _init_secrets(init: dict[str, Any]) -> tuple[str, ...]:
    return tuple(str(s) if not isinstance(s, dict) else s["source"] for s in init["secrets"])


def test_kafka_init_creates_the_topics_as_admin(
    secure: dict[str, dict[str, Any]], base: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    init = _service(secure[KAFKA_SECURE], "kafka-init")
    base_init = _service(base[KAFKA_SECURE], "kafka-init")
    script = _script(init)
    env = _env(base_init) | _env(init)
    assert base_init["depends_on"]["broker"]["condition"] == "service_healthy"
    assert "depends_on" not in init
    assert "volumes" not in init, "the topic list is the base file's mount"
    assert f"< {TOPIC_LIST_IN_CONTAINER}" in script
    assert str(DEAD_LETTER_MAX_MESSAGE_BYTES) not in " ".join(walk_strings(init))
    app_env = _env(_service(base[APP_SECURE], "detector"))
    assert env["CONSUMER_GROUP"] == app_env["CONSUMER_GROUP"], "the ACL names the app's group"
    assert env["BOOTSTRAP_SERVER"] == "broker:9092"
    # The script as the container runs it: the declared topics, every one as admin.
    merged = _merged_init(secure, base)
    calls = run_kafka_init(merged, read_dotenv(), tmp_path, _init_secrets(init))
    assert calls.topics == expected_topics(read_dotenv())
    assert calls.as_admin == set(calls.topics)
    assert calls.topics[topics.DEAD_LETTER_TOPIC][1] == {
        "max.message.bytes": str(DEAD_LETTER_MAX_MESSAGE_BYTES)
    }


def test_kafka_init_grants_the_acls_on_the_topics_it_creates(
    secure: dict[str, dict[str, Any]], base: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    """Names from the variables (or, with none set, from the topic list) reach both the topics
    and the ACLs (CONSUMER_GROUP is interpolated by Compose, here from .env)."""
    init = _service(secure[KAFKA_SECURE], "kafka-init")
    group = _env(init)["CONSUMER_GROUP"]
    read, write = frozenset({"READ", "DESCRIBE"}), frozenset({"WRITE", "DESCRIBE"})
    overrides = {"TRANSACTIONS_TOPIC": "custom.in", "FRAUD_TOPIC": "custom.fraud"}
    for case, variables in (("overrides", read_dotenv() | overrides), ("no-variables", {})):
        calls = run_kafka_init(
            _merged_init(secure, base), variables, tmp_path / case, _init_secrets(init)
        )
        assert calls.topics == expected_topics(variables), case
        names = {
            setting: variables.get(setting) or spec.name
            for setting, spec in zip(topics.SETTINGS, topics.default_topics(), strict=True)
        }
        source = frozenset({f"topic={names['TRANSACTIONS_TOPIC']}"})
        outputs = frozenset(
            f"topic={names[s]}" for s in ("LEGIT_TOPIC", "FRAUD_TOPIC", "DEAD_LETTER_TOPIC")
        )
        assert sorted(calls.acls) == sorted(
            [
                ("User:generator", write, source),
                ("User:detector", read, source | {f"group={group}"}),
                ("User:detector", write, outputs),
                ("User:detector", write, frozenset({f"transactional-id={group}*"})),
                (
                    "User:detector",
                    frozenset({"CREATE", "DESCRIBE", "READ", "WRITE"}),
                    frozenset({f"topic={topics.changelog_prefix(group)}*"}),
                ),
            ]
        ), case


def _broker_sh_topics(variables: dict[str, str]) -> list[str]:
    """The topics `kafka/broker.sh up --secure` creates (its load_topics) under `variables`:
    "name partitions [config=value ...]" each."""
    script = 'source "$0" help >/dev/null && load_topics && printf "%s\\n" "${TOPIC_SPECS[@]}"'
    env = {"PATH": os.environ["PATH"], **variables}
    done = subprocess.run(
        ["bash", "-c", script, str(REPO / "kafka" / "broker.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_local_broker_creates_the_declared_topics() -> None:
    """kafka/broker.sh --secure creates the topics too (the services may not): those of
    kafka/topics.txt, under the names and partition count of the services' variables."""
    text = (REPO / "kafka" / "broker.sh").read_text()
    assert "topics.txt" in text
    for copy in (str(DEAD_LETTER_MAX_MESSAGE_BYTES), *(t.name for t in topics.default_topics())):
        assert copy not in text, f"kafka/broker.sh keeps a copy of {copy}"

    def specs(variables: dict[str, str]) -> list[str]:
        return [
            " ".join([name, str(count), *(f"{k}={v}" for k, v in configs.items())])
            for name, (count, configs) in expected_topics(variables).items()
        ]

    assert _broker_sh_topics({}) == specs({})
    variables = {"DEAD_LETTER_TOPIC": "custom.invalid", "TRANSACTIONS_TOPIC_PARTITIONS": "5"}
    assert _broker_sh_topics(variables) == specs(variables)
    assert f"custom.invalid 5 max.message.bytes={DEAD_LETTER_MAX_MESSAGE_BYTES}" in specs(variables)


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


def test_secrets_sh_exports_every_secret_file_compose_mounts(
    raw: dict[str, dict[str, Any]],
) -> None:
    """`make docker-secrets` (kafka/broker.sh secrets --docker, i.e. kafka/secrets.sh create
    --docker) copies each file of its DOCKER_SECRETS list into the docker dir."""
    text = (REPO / "kafka" / "secrets.sh").read_text()
    listed = re.search(r"^DOCKER_SECRETS=\(([^)]*)\)", text, re.M)
    assert listed, "kafka/secrets.sh no longer lists DOCKER_SECRETS"
    exported = set(listed[1].split())
    body = text[text.index("export_docker_secrets() {") :]
    assert '"${DOCKER_SECRETS[@]}"' in body[: body.index("\n}\n")]
    for name in OVERRIDES:
        for spec in raw[name]["secrets"].values():
            assert Path(spec["file"]).name in exported, f"secrets.sh does not export {spec}"


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
    override: str,
    service: str,
    secure: dict[str, dict[str, Any]],
    base: dict[str, dict[str, Any]],
) -> None:
    spec = _service(secure[override], service)
    mounted = {
        str(item) if not isinstance(item, dict) else item["source"] for item in spec["secrets"]
    }
    assert mounted <= set(secure[override]["secrets"]), "undefined secret"
    # What the base file gives the service and the override does not replace reads none either.
    text = (
        " ".join(walk_strings(spec))
        + " "
        + " ".join(walk_strings(_env(_service(base[override], service))))
    )
    read = set(re.findall(r"/run/secrets/(\w+)", text)) | set(re.findall(r"\bsecret (\w+)", text))
    if service == "broker":  # the SCRAM loop reads kafka_<user>_password for every user
        read |= {f"kafka_{user}_password" for user in USERS}
    assert read <= mounted, f"{service} reads secrets it does not mount: {read - mounted}"


@pytest.mark.parametrize("name", OVERRIDES)
def test_no_secret_in_an_environment_value(
    name: str, secure: dict[str, dict[str, Any]], base: dict[str, dict[str, Any]]
) -> None:
    for service_name, service in [
        *secure[name]["services"].items(),
        *base[name]["services"].items(),
    ]:
        for key, value in _env(service).items():
            assert not re.search(r"PASSWORD$|SECRET|TOKEN", key), f"{service_name}: {key}"
            assert "jaas" not in key.lower(), f"{service_name}: {key}"
            assert "password=" not in value, f"{service_name}: {key}"


# --------------------------------------------------------------------------- the apps


@pytest.mark.parametrize("service", APPS)
def test_app_logs_in_as_itself_with_a_password_file(
    service: str, secure: dict[str, dict[str, Any]], base: dict[str, dict[str, Any]]
) -> None:
    spec = _service(secure[APP_SECURE], service)
    env = _env(_service(base[APP_SECURE], service)) | _env(spec)
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

"""Static checks of the Docker artifacts: no Docker engine, no broker, no network.

Covers docker-compose.kafka.yml, docker-compose.yml, .env, the Dockerfile (one stage per
service on a shared base) and .dockerignore: validity against the Compose Specification JSON schema
(see compose_schema.py for where it comes from), pinning, the broker's KRaft settings, the
network contract between the two files, and that every environment variable handed to a
service is one its code reads.
"""

from __future__ import annotations

import ast
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml

from fraudcore.core import topics
from fraudcore.core.topics import DEAD_LETTER_MAX_MESSAGE_BYTES
from tests.compose.compose_files import (
    REPO,
    as_str,
    environment_of,
    interpolate,
    parse_listeners,
    read_dotenv,
    references,
    walk_strings,
)
from tests.compose.compose_schema import ComposeSchema, load_compose_schema
from tests.compose.dockerfile import (
    DOCKERFILE,
    chain,
    copy_sources,
    instructions,
    stages,
    target_cmd,
    target_instructions,
)
from tests.compose.kafka_init import (
    TOPIC_LIST,
    TOPIC_LIST_IN_CONTAINER,
    expected_topics,
    run_kafka_init,
)

KAFKA_FILE = "docker-compose.kafka.yml"
APP_FILE = "docker-compose.yml"
COMPOSE_FILES = (KAFKA_FILE, APP_FILE)
SERVICES = ("generator", "detector")
# Every stage the Dockerfile builds: the services and the dashboard page (profile `web`).
IMAGES = (*SERVICES, "dashboard")
# The arguments a stage's CMD adds after `python -m <package>`.
CMD_ARGS = {"dashboard": ["--web"]}
NETWORK = "kafka-network"
KAFKA_IMAGE_REPO = "apache/kafka"

# The values the tutorial's stack runs with (containers reach the broker as broker:9092).
EXPECTED_APP_ENV = {
    "generator": {
        "KAFKA_BROKER_URL": "broker:9092",
        "TRANSACTIONS_TOPIC": "queueing.transactions",
        "TRANSACTIONS_PER_SECOND": "1000",
    },
    "detector": {
        "KAFKA_BROKER_URL": "broker:9092",
        "TRANSACTIONS_TOPIC": "queueing.transactions",
        "LEGIT_TOPIC": "streaming.transactions.legit",
        "FRAUD_TOPIC": "streaming.transactions.fraud",
        "DEAD_LETTER_TOPIC": "streaming.transactions.invalid",
        "CONSUMER_GROUP": "detector",
    },
}
EXPECTED_TOPICS = {
    "TRANSACTIONS_TOPIC": "queueing.transactions",
    "LEGIT_TOPIC": "streaming.transactions.legit",
    "FRAUD_TOPIC": "streaming.transactions.fraud",
    "DEAD_LETTER_TOPIC": "streaming.transactions.invalid",
}


@pytest.fixture(scope="module")
def raw() -> dict[str, dict[str, Any]]:
    """The compose files as YAML (anchors and merge keys resolved, variables not)."""
    docs = {}
    for name in COMPOSE_FILES:
        doc = yaml.safe_load((REPO / name).read_text())
        assert isinstance(doc, dict), f"{name} is not a YAML mapping"
        docs[name] = doc
    return docs


@pytest.fixture(scope="module")
def dotenv() -> dict[str, str]:
    return read_dotenv()


@pytest.fixture(scope="module")
def resolved(raw: dict[str, dict[str, Any]], dotenv: dict[str, str]) -> dict[str, dict[str, Any]]:
    """The compose files as `docker compose` sees them with only .env (no shell variables)."""
    return {name: interpolate(doc, dotenv) for name, doc in raw.items()}


@pytest.fixture(scope="session")
def compose_schema() -> ComposeSchema:
    return load_compose_schema()  # raises (fails) when the schema cannot be had


# --------------------------------------------------------------------------- schema


def test_compose_schema_is_the_official_spec(compose_schema: ComposeSchema) -> None:
    schema = compose_schema.schema
    assert schema.get("title") == "Compose Specification", compose_schema.source
    for key in ("services", "networks", "volumes"):
        assert key in schema.get("properties", {}), f"{compose_schema.source} lacks {key}"
    compose_schema.validator()  # the schema itself is valid for the draft it declares


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_compose_file_matches_compose_spec(
    name: str, resolved: dict[str, dict[str, Any]], compose_schema: ComposeSchema
) -> None:
    validator = compose_schema.validator()
    errors = sorted(validator.iter_errors(resolved[name]), key=lambda e: list(e.absolute_path))
    report = "\n".join(
        f"  at {'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in errors
    )
    if errors:
        pytest.fail(
            f"{name} violates the Compose Specification ({compose_schema.source}):\n{report}"
        )


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_no_version_key(name: str, raw: dict[str, dict[str, Any]]) -> None:
    assert "version" not in raw[name], f"{name}: the top-level `version` key is obsolete"


# --------------------------------------------------------------------------- interpolation


def test_every_variable_has_a_default_in_the_compose_file(raw: dict[str, dict[str, Any]]) -> None:
    """The files work even without .env: each ${VAR} carries its own `:-default`."""
    missing = [
        f"{name}: ${{{var}}}"
        for name, doc in raw.items()
        for text in walk_strings(doc)
        for var, op, _ in references(text)
        if op != ":-"
    ]
    assert not missing, f"variables without a `:-default`: {missing}"


def test_dotenv_agrees_with_the_compose_defaults(
    raw: dict[str, dict[str, Any]], dotenv: dict[str, str]
) -> None:
    defaults: dict[str, set[str]] = {}
    for doc in raw.values():
        for text in walk_strings(doc):
            for var, _, arg in references(text):
                defaults.setdefault(var, set()).add(arg)
    unused = sorted(set(dotenv) - set(defaults))
    assert not unused, f".env sets variables no compose file uses: {unused}"
    for var, values in defaults.items():
        assert len(values) == 1, f"${{{var}}} has different defaults across the files: {values}"
        if var in dotenv:
            assert dotenv[var] == next(iter(values)), (
                f".env says {var}={dotenv[var]} but the compose default is {values}"
            )


def test_app_env_does_not_follow_host_kafka_broker_url(raw: dict[str, dict[str, Any]]) -> None:
    """A KAFKA_BROKER_URL exported for host runs (localhost:...) must not leak into containers."""
    for text in walk_strings(raw[APP_FILE]):
        names = [var for var, _, _ in references(text)]
        assert "KAFKA_BROKER_URL" not in names, f"{APP_FILE} interpolates ${{KAFKA_BROKER_URL}}"


# --------------------------------------------------------------------------- network


def test_kafka_file_creates_the_network(resolved: dict[str, dict[str, Any]]) -> None:
    default = resolved[KAFKA_FILE].get("networks", {}).get("default")
    assert default, f"{KAFKA_FILE} must configure networks.default"
    assert default.get("name") == NETWORK
    assert not default.get("external"), f"{KAFKA_FILE} must create {NETWORK}, not expect it"
    for name, service in resolved[KAFKA_FILE]["services"].items():
        assert "network_mode" not in service, f"{name} must stay on the default network"


def test_app_file_joins_the_network_as_external(
    raw: dict[str, dict[str, Any]], resolved: dict[str, dict[str, Any]]
) -> None:
    default = resolved[APP_FILE].get("networks", {}).get("default")
    assert default, f"{APP_FILE} must configure networks.default"
    assert default.get("name") == NETWORK
    assert default.get("external") is True
    # The same expression in both files, so overriding it moves both stacks together.
    assert (
        raw[APP_FILE]["networks"]["default"]["name"]
        == raw[KAFKA_FILE]["networks"]["default"]["name"]
    )
    for name, service in resolved[APP_FILE]["services"].items():
        assert "network_mode" not in service, f"{name} must stay on the default network"
        assert service.get("networks") in (None, ["default"], {"default": None}), name


# --------------------------------------------------------------------------- images


def _image_tag(image: str) -> tuple[str, str]:
    name, _, _digest = image.partition("@")
    repo, sep, tag = name.rpartition(":")
    if not sep or "/" in tag:
        return name, ""
    return repo, tag


def test_images_are_pinned(resolved: dict[str, dict[str, Any]]) -> None:
    for file, doc in resolved.items():
        for name, service in doc["services"].items():
            image = service.get("image")
            if image is None:
                assert "build" in service, f"{file}:{name} has neither image nor build"
                continue
            _, tag = _image_tag(image)
            assert tag, f"{file}:{name}: {image} has no tag"
            assert tag != "latest", f"{file}:{name}: {image} is not pinned"
            # An optional leading "v": prom/prometheus and kafbat/kafka-ui only tag v1.2.3.
            assert re.fullmatch(r"v?\d+(\.\d+)+([-.][\w.-]+)?", tag), (
                f"{file}:{name}: {image} has no concrete version tag"
            )


def _pom_kafka_version() -> str:
    pom = REPO / "kafka" / "pom.xml"
    assert pom.is_file(), "kafka/pom.xml is missing"
    for element in ET.parse(pom).iter():  # noqa: S314 - our own file
        if element.tag.rpartition("}")[2] == "kafka.version":
            assert element.text, "empty <kafka.version>"
            return element.text.strip()
    raise AssertionError("kafka/pom.xml has no <kafka.version> property")


def test_kafka_image_matches_pom_version(resolved: dict[str, dict[str, Any]]) -> None:
    version = _pom_kafka_version()
    images = [
        service["image"]
        for doc in resolved.values()
        for service in doc["services"].values()
        if _image_tag(service.get("image", ""))[0] == KAFKA_IMAGE_REPO
    ]
    assert images, f"no {KAFKA_IMAGE_REPO} image in the compose files"
    for image in images:
        assert _image_tag(image)[1] == version, f"{image} but kafka/pom.xml has Kafka {version}"


# --------------------------------------------------------------------------- broker


def _broker(resolved: dict[str, dict[str, Any]]) -> dict[str, Any]:
    broker: dict[str, Any] = resolved[KAFKA_FILE]["services"]["broker"]
    return broker


def _broker_env(resolved: dict[str, dict[str, Any]]) -> dict[str, str]:
    return {k: as_str(v) for k, v in environment_of(_broker(resolved)).items()}


def test_broker_is_single_node_kraft(resolved: dict[str, dict[str, Any]]) -> None:
    broker = _broker(resolved)
    env = _broker_env(resolved)
    assert broker.get("hostname") == "broker"
    assert "container_name" not in broker or broker["container_name"] == "broker"
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert not any("ZOOKEEPER" in key for key in env), "KRaft only: no ZooKeeper settings"
    for file, doc in resolved.items():
        for name, service in doc["services"].items():
            assert "zookeeper" not in (name + service.get("image", "")).lower(), f"{file}:{name}"
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", env["CLUSTER_ID"]), "CLUSTER_ID: a base64url UUID"

    listeners = parse_listeners(env["KAFKA_LISTENERS"])
    advertised = parse_listeners(env["KAFKA_ADVERTISED_LISTENERS"])
    protocols = dict(
        item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    )
    assert set(listeners) <= set(protocols), "every listener needs a security protocol"
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] == "CONTROLLER"
    assert "CONTROLLER" in listeners
    assert "CONTROLLER" not in advertised, "the controller listener is not for clients"
    controller_port = listeners["CONTROLLER"][1]
    assert (
        env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@broker:{controller_port}"
    )
    assert advertised["PLAINTEXT"] == ("broker", 9092), "containers use broker:9092"
    assert listeners["PLAINTEXT"][1] == 9092
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] == "PLAINTEXT"


def test_broker_host_listener_is_published(resolved: dict[str, dict[str, Any]]) -> None:
    env = _broker_env(resolved)
    listeners = parse_listeners(env["KAFKA_LISTENERS"])
    host, advertised_port = parse_listeners(env["KAFKA_ADVERTISED_LISTENERS"])["PLAINTEXT_HOST"]
    assert host == "localhost"
    ports = _broker(resolved).get("ports", [])
    assert len(ports) == 1, "publish only the host listener (not 9092, not the controller)"
    bind_ip, published, target = str(ports[0]).split(":")
    assert bind_ip == "127.0.0.1", "reachable from this machine only"
    assert int(published) == advertised_port, "advertised port must be the published one"
    assert int(target) == listeners["PLAINTEXT_HOST"][1]
    assert advertised_port != 9092, "9092 is the Docker-free broker's port (kafka/broker.sh)"


def test_broker_internal_topics_fit_one_node(resolved: dict[str, dict[str, Any]]) -> None:
    env = _broker_env(resolved)
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"
    assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "1"
    assert env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == "1"
    assert env["KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS"] == "0"
    # As kafka/broker.sh: KAFKA_GROUP_PROTOCOL=consumer detectors may set a 6 s session timeout.
    assert env["KAFKA_GROUP_CONSUMER_MIN_SESSION_TIMEOUT_MS"] == "6000"


def test_broker_data_is_on_a_named_volume(resolved: dict[str, dict[str, Any]]) -> None:
    doc = resolved[KAFKA_FILE]
    log_dirs = _broker_env(resolved)["KAFKA_LOG_DIRS"]
    mounts = [str(v).split(":") for v in _broker(resolved).get("volumes", [])]
    named = {target: source for source, target, *_ in mounts}
    assert log_dirs in named, f"KAFKA_LOG_DIRS={log_dirs} is not on a volume"
    assert named[log_dirs] in (doc.get("volumes") or {}), "use a named volume, not a bind mount"


def test_broker_healthcheck_is_real(resolved: dict[str, dict[str, Any]]) -> None:
    check = _broker(resolved).get("healthcheck")
    assert check, "the broker needs a healthcheck (kafka-init waits for service_healthy)"
    assert not check.get("disable")
    test = check["test"]
    assert isinstance(test, list), "use the list form of healthcheck.test"
    assert test[0] in ("CMD", "CMD-SHELL")
    command = " ".join(test[1:])
    assert re.search(r"/opt/kafka/bin/kafka-(broker-api-versions|topics)\.sh\b", command), command
    assert re.search(r"--bootstrap-server[ =](broker|localhost):9092\b", command), command
    for key in ("interval", "timeout", "retries", "start_period"):
        assert key in check, f"healthcheck.{key} missing"


# --------------------------------------------------------------------------- kafka-init


def test_kafka_init_creates_the_topics_once_broker_is_healthy(
    resolved: dict[str, dict[str, Any]],
) -> None:
    init = resolved[KAFKA_FILE]["services"]["kafka-init"]
    broker = _broker(resolved)
    assert init.get("image") == broker["image"], "kafka-init uses the broker's image (its CLI)"
    assert init.get("depends_on", {}).get("broker", {}).get("condition") == "service_healthy"
    assert init.get("restart", "no") == "no", "a one-shot job must not restart"
    env = environment_of(init)
    assert env.get("BOOTSTRAP_SERVER") == "broker:9092"
    script = "\n".join(init["command"]) if isinstance(init["command"], list) else init["command"]
    assert "--create" in script
    assert "--if-not-exists" in script, "re-running kafka-init must be harmless"
    assert "$BOOTSTRAP_SERVER" in script


def test_kafka_init_reads_the_topic_list_mounted_read_only(
    resolved: dict[str, dict[str, Any]],
) -> None:
    """The image has none of our code: the topics come from kafka/topics.txt, which
    tests/unit/test_topics.py keeps equal to what fraudcore/core/topics.py declares."""
    init = resolved[KAFKA_FILE]["services"]["kafka-init"]
    mounts = [str(volume).split(":") for volume in init.get("volumes", [])]
    assert ["./kafka/topics.txt", TOPIC_LIST_IN_CONTAINER, "ro"] in mounts, mounts
    assert TOPIC_LIST.read_text() == topics.topic_list()
    script = "\n".join(init["command"])
    assert f"< {TOPIC_LIST_IN_CONTAINER}" in script
    for literal in (str(DEAD_LETTER_MAX_MESSAGE_BYTES), *EXPECTED_TOPICS.values()):
        assert literal not in " ".join(walk_strings(init)), f"kafka-init keeps a copy of {literal}"
    # Each topic's setting and the partition count come through from the shell or .env.
    env = environment_of(init)
    for name in (*topics.SETTINGS, topics.PARTITIONS_SETTING):
        assert name in env, f"kafka-init does not pass {name} through"
        assert env[name] is None, f"{name}: pass it through (no value), as topics.txt has it"


def test_kafka_init_creates_the_declared_topics(
    resolved: dict[str, dict[str, Any]], dotenv: dict[str, str], tmp_path: Path
) -> None:
    """The script as the container runs it, with .env alone and with nothing at all: the topics
    of fraudcore/core/topics.py, the dead-letter topic's size limit included."""
    init = resolved[KAFKA_FILE]["services"]["kafka-init"]
    for case, variables in (("dotenv", dotenv), ("no-variables", {})):
        calls = run_kafka_init(init, variables, tmp_path / case)
        assert calls.topics == expected_topics(variables), case
        assert calls.topics[topics.DEAD_LETTER_TOPIC] == (
            topics.PARTITIONS,
            {"max.message.bytes": str(DEAD_LETTER_MAX_MESSAGE_BYTES)},
        )
        assert set(calls.topics) == set(EXPECTED_TOPICS.values())


def test_kafka_init_takes_the_names_and_partitions_of_the_variables(
    resolved: dict[str, dict[str, Any]], dotenv: dict[str, str], tmp_path: Path
) -> None:
    init = resolved[KAFKA_FILE]["services"]["kafka-init"]
    variables = dotenv | {
        "TRANSACTIONS_TOPIC": "custom.in",
        "DEAD_LETTER_TOPIC": "custom.invalid",
        "TRANSACTIONS_TOPIC_PARTITIONS": "5",
    }
    calls = run_kafka_init(init, variables, tmp_path)
    assert calls.topics == expected_topics(variables)
    assert calls.topics["custom.invalid"] == (5, topics.default_topics()[3].configs)
    assert calls.topics["custom.in"] == (5, {})
    assert calls.topics[dotenv["LEGIT_TOPIC"]] == (5, {})


def test_topics_agree_between_the_files(
    resolved: dict[str, dict[str, Any]], dotenv: dict[str, str], tmp_path: Path
) -> None:
    """What kafka-init creates (.env's names, else the topic list's) is what the apps use."""
    created = run_kafka_init(resolved[KAFKA_FILE]["services"]["kafka-init"], dotenv, tmp_path)
    for service in SERVICES:
        env = environment_of(resolved[APP_FILE]["services"][service])
        for var in EXPECTED_TOPICS:
            if var in env:
                assert env[var] in created.topics, f"{service} {var}: kafka-init does not create it"
        partitions = int(as_str(env["TRANSACTIONS_TOPIC_PARTITIONS"]))
        assert {count for count, _ in created.topics.values()} == {partitions}, service


# --------------------------------------------------------------------------- app services


@pytest.mark.parametrize("service", SERVICES)
def test_app_service_builds_its_stage_of_the_dockerfile(
    service: str, resolved: dict[str, dict[str, Any]]
) -> None:
    spec = resolved[APP_FILE]["services"][service]
    build = spec.get("build")
    assert isinstance(build, dict), f"{service}: build must be a mapping"
    assert build.get("context") == ".", "the build context is the repository root"
    assert build.get("dockerfile", "Dockerfile") == "Dockerfile", "one Dockerfile for both"
    assert build.get("target") == service, f"{service}: build.target picks its stage"
    assert DOCKERFILE.is_file()
    chain(service)  # the stage exists
    assert "image" not in spec, "compose names the images <project>-<service>, as users know"


@pytest.mark.parametrize("service", SERVICES)
def test_app_service_can_scale_and_restarts(
    service: str, resolved: dict[str, dict[str, Any]]
) -> None:
    spec = resolved[APP_FILE]["services"][service]
    assert "container_name" not in spec, f"{service}: a fixed name prevents --scale"
    assert not spec.get("ports"), f"{service}: a published port prevents --scale"
    assert spec.get("restart") == "unless-stopped"
    assert "stop_grace_period" in spec
    assert "depends_on" not in spec, "the broker lives in the other compose file"


@pytest.mark.parametrize("service", SERVICES)
def test_app_service_runs_with_the_tutorial_settings(
    service: str, resolved: dict[str, dict[str, Any]]
) -> None:
    env = environment_of(resolved[APP_FILE]["services"][service])
    for var, value in EXPECTED_APP_ENV[service].items():
        assert as_str(env.get(var)) == value, f"{service}: {var}"


def _settings_env_names(packages: list[str]) -> set[str]:
    """Env names the pydantic-settings classes in these packages read.

    A class counts when it derives (directly or through other classes found here) from
    BaseSettings; each annotated class attribute is a field whose env name is its upper-cased
    name (plus any `env_prefix`), and `alias=` / `validation_alias=` strings are names too.
    """
    classes: dict[str, tuple[list[str], set[str], str]] = {}
    files = [p for pkg in packages for p in sorted((REPO / pkg).rglob("*.py"))]
    assert files, f"no Python sources in {packages}"
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.ClassDef):
                continue
            bases = [
                b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in node.bases
            ]
            fields: set[str] = set()
            prefix = ""
            for stmt in node.body:
                if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                    if "ClassVar" in ast.unparse(stmt.annotation) or stmt.target.id.startswith("_"):
                        continue
                    if stmt.target.id == "model_config":
                        prefix = _env_prefix(stmt.value) or prefix
                        continue
                    fields.add(stmt.target.id.upper())
                    fields |= _aliases(stmt.value)
                elif isinstance(stmt, ast.Assign) and any(
                    isinstance(t, ast.Name) and t.id == "model_config" for t in stmt.targets
                ):
                    prefix = _env_prefix(stmt.value) or prefix
            classes[node.name] = (bases, fields, prefix.upper())

    def is_settings(name: str, seen: frozenset[str] = frozenset()) -> bool:
        if name == "BaseSettings":
            return True
        if name in seen or name not in classes:
            return False
        return any(is_settings(base, seen | {name}) for base in classes[name][0])

    def fields_of(name: str) -> set[str]:
        bases, fields, prefix = classes[name]
        own = {prefix + f for f in fields}
        for base in bases:
            if base in classes and is_settings(base):
                own |= fields_of(base)
        return own

    names: set[str] = set()
    for name in classes:
        if is_settings(name):
            names |= fields_of(name)
    return names


def _env_prefix(value: ast.expr | None) -> str:
    if isinstance(value, ast.Call):
        for keyword in value.keywords:
            if keyword.arg == "env_prefix" and isinstance(keyword.value, ast.Constant):
                return str(keyword.value.value)
    return ""


def _aliases(value: ast.expr | None) -> set[str]:
    found = set()
    if isinstance(value, ast.Call):
        for keyword in value.keywords:
            if keyword.arg in ("alias", "validation_alias") and isinstance(
                keyword.value, ast.Constant
            ):
                found.add(str(keyword.value.value).upper())
    return found


@pytest.mark.parametrize("service", IMAGES)
def test_app_env_names_are_settings_the_code_reads(
    service: str, raw: dict[str, dict[str, Any]]
) -> None:
    readable = _settings_env_names(["fraudcore", service])
    assert readable, f"found no pydantic-settings classes in fraudcore/ or {service}/"
    env = environment_of(raw[APP_FILE]["services"][service])
    unknown = sorted(set(env) - readable)
    assert not unknown, (
        f"{APP_FILE} gives {service} variables its code never reads: {unknown} "
        f"(it reads {sorted(readable)})"
    )


# --------------------------------------------------------------------------- Dockerfiles


@pytest.fixture(params=IMAGES)
def dockerfile(request: pytest.FixtureRequest) -> tuple[str, list[tuple[str, str]]]:
    """(service, the instructions that build its image: the base stage's, then its own)."""
    service: str = request.param
    assert DOCKERFILE.is_file(), f"{DOCKERFILE} is missing"
    return service, target_instructions(service)


def test_dockerfile_base_image_is_pinned() -> None:
    stage_names = {stage.name for stage in stages() if stage.name}
    images = [stage.base for stage in stages() if stage.base not in stage_names]
    assert images, "no FROM"
    for image in images:
        assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", image), (
            f"base image {image!r}: pin python:3.11.<patch>-slim-bookworm"
        )


def test_dockerfile_runs_as_non_root(dockerfile: tuple[str, list[tuple[str, str]]]) -> None:
    _, built = dockerfile
    users = [(i, args) for i, (keyword, args) in enumerate(built) if keyword == "USER"]
    assert users, "no USER: the container would run as root"
    index, user = users[-1]
    name = user.split(":")[0]
    assert name not in ("root", "0"), f"USER {user} is root"
    assert re.fullmatch(r"[1-9]\d*", name), f"USER {user}: use the fixed numeric UID"
    later = [keyword for keyword, _ in built[index:]]
    assert "RUN" not in later, "nothing should run as root after USER"
    created = " ".join(args for keyword, args in built if keyword == "RUN")
    assert re.search(rf"useradd\b.*--uid {name}\b", created), f"no user with UID {name} created"


def test_dockerfile_cmd_is_exec_form(dockerfile: tuple[str, list[tuple[str, str]]]) -> None:
    service, built = dockerfile
    assert target_cmd(service) == ["python", "-m", service, *CMD_ARGS.get(service, [])]
    assert not [keyword for keyword, _ in built if keyword == "ENTRYPOINT"]


def test_dockerfile_installs_pinned_requirements_first(
    dockerfile: tuple[str, list[tuple[str, str]]],
) -> None:
    service, built = dockerfile
    env = " ".join(args for keyword, args in built if keyword == "ENV")
    assert re.search(r"PYTHONDONTWRITEBYTECODE=1\b", env)
    assert re.search(r"PYTHONUNBUFFERED=1\b", env)

    copies = [
        (i, copy_sources(args)) for i, (keyword, args) in enumerate(built) if keyword == "COPY"
    ]
    assert not [keyword for keyword, _ in instructions() if keyword == "ADD"], "use COPY, not ADD"
    sources = [src.rstrip("/") for _, srcs in copies for src in srcs]
    assert sorted(sources) == sorted(["requirements.txt", "fraudcore", service]), (
        f"copy only requirements.txt, fraudcore/ and {service}/, got {sources}"
    )
    installs = [
        i
        for i, (keyword, args) in enumerate(built)
        if keyword == "RUN"
        and re.search(r"pip install\b.*--no-cache-dir\b.*-r requirements\.txt", args)
    ]
    assert installs, "pip install --no-cache-dir -r requirements.txt"
    requirements_copy = next(i for i, srcs in copies if srcs == ["requirements.txt"])
    code_copies = [i for i, srcs in copies if srcs != ["requirements.txt"]]
    assert requirements_copy < installs[0] < min(code_copies), (
        "COPY requirements.txt, then pip install, then the code (layer caching)"
    )


def test_dockerfile_services_share_one_dependency_stage() -> None:
    """All images are built on one base stage that holds the pip layer, so the build makes it
    once and the images share it (the Docker tier checks the built images' layers)."""
    bases = [chain(service)[:-1] for service in IMAGES]
    assert bases[0], "the service stages must start from a base stage"
    assert all(base == bases[0] for base in bases), "all stages must start from one base"
    shared = [keyword for stage in bases[0] for keyword, _ in stage.instructions]
    own = [[args for keyword, args in chain(s)[-1].instructions] for s in IMAGES]
    assert "RUN" in shared, "the pip install belongs to the shared base stage"
    for service, args in zip(IMAGES, own, strict=True):
        assert not any("pip" in a for a in args), f"{service}'s own stage installs packages"
    for stage in stages():
        assert "ARG" not in [keyword for keyword, _ in stage.instructions], (
            "no ARG: a build argument would make the shared layers differ per service"
        )


def test_requirements_are_pinned() -> None:
    path = REPO / "requirements.txt"
    assert path.is_file(), "requirements.txt is missing (the Dockerfiles install it)"
    lines = [
        line.split("#")[0].strip()
        for line in path.read_text().splitlines()
        if line.split("#")[0].strip()
    ]
    assert lines, "requirements.txt is empty"
    for line in lines:
        requirement = line.split(";")[0].strip()
        assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*(\[[\w,.-]+\])?==[\w.+!-]+", requirement), (
            f"not pinned with ==: {line!r}"
        )


# --------------------------------------------------------------------------- .dockerignore


def _dockerignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for line in (REPO / ".dockerignore").read_text().splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip().strip("/")
        regex = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex, i = regex + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                regex, i = regex + ".*", i + 2
            elif pattern[i] == "*":
                regex, i = regex + "[^/]*", i + 1
            elif pattern[i] == "?":
                regex, i = regex + "[^/]", i + 1
            elif pattern[i] == "[":
                end = pattern.index("]", i)
                regex, i = regex + pattern[i : end + 1], end + 1
            else:
                regex, i = regex + re.escape(pattern[i]), i + 1
        rules.append((negate, re.compile(regex)))
    return rules


def _ignored(path: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    ignored = False
    for negate, regex in rules:
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            ignored = not negate
    return ignored


def test_dockerignore_sends_only_what_the_images_need() -> None:
    rules = _dockerignore_rules()
    for path in (
        ".git/HEAD",
        ".venv/bin/python",
        ".env",
        "kafka/lib/kafka-clients-4.1.1.jar",
        ".kafka-data/meta.properties",
        "tests/compose/test_compose_static.py",
        "bench/results/run.json",
        "fraudcore/__pycache__/config.cpython-311.pyc",
        "detector/__pycache__/app.cpython-311.pyc",
        ".mypy_cache/3.11/x.json",
    ):
        assert _ignored(path, rules), f"{path} would be sent to the Docker daemon"


def test_dockerignore_keeps_what_the_dockerfile_copies() -> None:
    rules = _dockerignore_rules()
    copied = 0
    for keyword, args in instructions():
        if keyword != "COPY" or "--from" in args:
            continue
        for source in copy_sources(args):
            copied += 1
            path = REPO / source
            assert path.exists(), f"the Dockerfile copies missing {source}"
            # Every file: the dashboard's page (HTML, CSS, JavaScript) is code too.
            files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
            assert [f for f in files if f.suffix == ".py" or f == path], f"{source} has no Python"
            for file in files:
                relative = file.relative_to(REPO).as_posix()
                if "__pycache__" in relative:
                    continue
                assert not _ignored(relative, rules), f".dockerignore drops {relative}"
    assert copied == 5, "requirements.txt, fraudcore/, generator/, detector/, dashboard/"

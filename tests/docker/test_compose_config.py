"""`docker compose config`, the real Compose CLI, for every combination the README documents.

Compose itself parses each file set, merges the overrides onto their base files, interpolates
the variables (.env alone) and validates the result: what it prints is what an engine would
get. The checks on merged models live here, on the CLI's own merge, instead of on a home-made
one; tests/compose keeps the checks of each file as written.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.compose.compose_files import REPO, assert_only_tls_listeners, walk_strings
from tests.docker.engine import Compose, unique

REPO_TOPICS = REPO / "kafka" / "topics.txt"

pytestmark = pytest.mark.docker

KAFKA, KAFKA_SECURE = REPO / "docker-compose.kafka.yml", REPO / "docker-compose.kafka.secure.yml"
KAFKA_CLUSTER = REPO / "docker-compose.kafka.cluster.yml"
CLUSTER_BROKERS = {"broker-1", "broker-2", "broker-3"}
APP, APP_SECURE = REPO / "docker-compose.yml", REPO / "docker-compose.secure.yml"

# README "With Docker", "Observability" and "Security": file sets, profiles, their services.
COMBINATIONS = {
    "kafka": ([KAFKA], [], {"broker", "kafka-init"}),
    "kafka --profile ui": ([KAFKA], ["ui"], {"broker", "kafka-init", "kafka-ui"}),
    "kafka + secure": ([KAFKA, KAFKA_SECURE], [], {"broker", "kafka-init"}),
    "kafka cluster": ([KAFKA_CLUSTER], [], {*CLUSTER_BROKERS, "kafka-init"}),
    "app": ([APP], [], {"generator", "detector"}),
    "app --profile monitoring": (
        [APP],
        ["monitoring"],
        {"generator", "detector", "prometheus", "grafana"},
    ),
    "app + secure": ([APP, APP_SECURE], [], {"generator", "detector"}),
    "app --profile web": ([APP], ["web"], {"generator", "detector", "dashboard"}),
}


def resolved(name: str) -> dict[str, Any]:
    files, profiles, _ = COMBINATIONS[name]
    compose = Compose(unique("fraudtest-config"), files=files, profiles=profiles)
    return compose.config()


@pytest.fixture(scope="module")
def models(docker_engine: str) -> dict[str, dict[str, Any]]:
    return {name: resolved(name) for name in COMBINATIONS}


def _service(model: dict[str, Any], name: str) -> dict[str, Any]:
    service: dict[str, Any] = model["services"][name]
    return service


def _env(service: dict[str, Any]) -> dict[str, str]:
    return {key: str(value) for key, value in (service.get("environment") or {}).items()}


# --------------------------------------------------------------------------- every combination


@pytest.mark.parametrize("name", COMBINATIONS)
def test_compose_accepts_the_combination_without_a_warning(name: str, docker_engine: str) -> None:
    files, profiles, services = COMBINATIONS[name]
    compose = Compose(unique("fraudtest-config"), files=files, profiles=profiles)
    done = compose.run("config", "--quiet")
    assert done.stderr.strip() == "", f"compose warns about {name}:\n{done.stderr}"
    listed = set(compose.run("config", "--services").stdout.split())
    assert listed == services, f"{name}: {sorted(listed)}"


def test_profiles_stay_off_unless_asked_for(models: dict[str, dict[str, Any]]) -> None:
    for name in ("kafka", "app"):
        for service in _service_names(models[name]):
            assert not models[name]["services"][service].get("profiles"), (name, service)
    assert _service(models["kafka --profile ui"], "kafka-ui")["profiles"] == ["ui"]
    for service in ("prometheus", "grafana"):
        assert _service(models["app --profile monitoring"], service)["profiles"] == ["monitoring"]
    dashboard = _service(models["app --profile web"], "dashboard")
    assert dashboard["profiles"] == ["web"]
    ports = [(p["host_ip"], str(p["published"])) for p in dashboard["ports"]]
    assert ports == [("127.0.0.1", "8088")]


def _service_names(model: dict[str, Any]) -> list[str]:
    return list(model["services"])


def test_the_app_file_joins_the_network_the_kafka_file_creates(
    models: dict[str, dict[str, Any]],
) -> None:
    created = models["kafka"]["networks"]["default"]
    joined = models["app"]["networks"]["default"]
    assert created["name"] == joined["name"] == "kafka-network"
    assert not created.get("external")
    assert joined.get("external") is True
    for name in ("kafka + secure", "app + secure", "app --profile monitoring", "kafka cluster"):
        assert models[name]["networks"]["default"]["name"] == "kafka-network", name


def test_apps_build_their_stage_with_their_own_metrics_port(
    models: dict[str, dict[str, Any]],
) -> None:
    ports = set()
    for name in ("app", "app + secure", "app --profile monitoring"):
        for service in ("generator", "detector"):
            spec = _service(models[name], service)
            assert spec["build"] == {
                "context": str(REPO),
                "dockerfile": "Dockerfile",
                "target": service,
            }, (name, spec["build"])
            assert spec["healthcheck"]["test"] == ["CMD", "python", "-m", "fraudcore.healthcheck"]
            ports.add((service, _env(spec)["METRICS_PORT"]))
    assert ports == {("generator", "8000"), ("detector", "8001")}


def test_every_broker_stops_with_a_grace_period(models: dict[str, dict[str, Any]]) -> None:
    for name in ("kafka", "kafka --profile ui", "kafka + secure"):
        assert _service(models[name], "broker").get("stop_grace_period") == "1m0s", name
    for broker in CLUSTER_BROKERS:
        assert _service(models["kafka cluster"], broker).get("stop_grace_period") == "1m0s"


def test_the_cluster_replicates_everything_three_times(models: dict[str, dict[str, Any]]) -> None:
    """Three voters, each its own node id, host port and volume; RF 3 and min ISR 2 for the
    internal topics, the broker default and the topics kafka-init creates; healthchecks."""
    model = models["kafka cluster"]
    node_ids, host_ports, volumes = set(), set(), set()
    for broker in CLUSTER_BROKERS:
        spec = _service(model, broker)
        env = _env(spec)
        node_ids.add(env["KAFKA_NODE_ID"])
        host_ports.add(spec["ports"][0]["published"])
        volumes.add(spec["volumes"][0]["source"])
        assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].count("@") == 3
        assert f"PLAINTEXT://{broker}:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
        for key in ("OFFSETS_TOPIC", "TRANSACTION_STATE_LOG", "DEFAULT"):
            assert env[f"KAFKA_{key}_REPLICATION_FACTOR"] == "3", (broker, key)
        assert env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == env["KAFKA_MIN_INSYNC_REPLICAS"] == "2"
        assert f"{broker}:9092" in spec["healthcheck"]["test"]
    assert len(node_ids) == len(host_ports) == len(volumes) == 3
    init = _service(model, "kafka-init")
    assert set(init["depends_on"]) == CLUSTER_BROKERS
    assert all(d["condition"] == "service_healthy" for d in init["depends_on"].values())
    script = "\n".join(init["command"])
    assert "--replication-factor 3 --config min.insync.replicas=2" in script


# --------------------------------------------------------------------------- secure, merged


def test_secure_broker_keeps_the_image_and_gets_a_volume_of_its_own(
    models: dict[str, dict[str, Any]],
) -> None:
    base = _service(models["kafka"], "broker")
    broker = _service(models["kafka + secure"], "broker")
    assert broker["image"] == base["image"] == "apache/kafka:4.1.1"
    assert broker["hostname"] == "broker"
    mounts = {v["target"]: v["source"] for v in broker["volumes"]}
    # Merged by target: the secure volume replaces the plaintext one, it is not added to it.
    assert mounts == {_env(broker)["KAFKA_LOG_DIRS"]: "kafka-data-secure"}, mounts
    assert "kafka-data-secure" in models["kafka + secure"]["volumes"]
    assert broker["ports"] == base["ports"], "the host listener stays published"


def test_secure_broker_has_no_plaintext_listener(models: dict[str, dict[str, Any]]) -> None:
    env = _env(_service(models["kafka + secure"], "broker"))
    assert_only_tls_listeners(env)
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] == "SASL_SSL"
    # What the base file sets and the override does not is still there (the merge is by key).
    base = _env(_service(models["kafka"], "broker"))
    for key in ("CLUSTER_ID", "KAFKA_NODE_ID", "KAFKA_PROCESS_ROLES", "KAFKA_LOG_DIRS"):
        assert env[key] == base[key], key
    plaintext = [k for k, v in env.items() if re.search(r"\bPLAINTEXT\b", v)]
    assert not plaintext, f"plaintext left in the merged broker settings: {plaintext}"


def test_secure_healthcheck_logs_in_and_keeps_the_base_timing(
    models: dict[str, dict[str, Any]],
) -> None:
    base = _service(models["kafka"], "broker")["healthcheck"]
    check = _service(models["kafka + secure"], "broker")["healthcheck"]
    assert check["test"][-2:] == ["--command-config", "/tmp/kafka-secure/admin.properties"]
    assert check["test"][:-2] == base["test"]
    for key in ("interval", "timeout", "retries", "start_period"):
        assert check[key] == base[key], key


def test_secure_commands_replace_the_base_ones(models: dict[str, dict[str, Any]]) -> None:
    broker = _service(models["kafka + secure"], "broker")
    script = broker["command"][-1]
    assert broker["command"][:2] == ["/bin/bash", "-euc"]
    assert script.rstrip().splitlines()[-1].strip().startswith("exec /opt/kafka/bin/")
    init = _service(models["kafka + secure"], "kafka-init")
    assert "kafka-acls.sh" in init["command"][-1]
    assert init["command"][-1].rstrip().endswith('echo "kafka-init: topics and ACLs ready"')
    base_init = _service(models["kafka"], "kafka-init")
    assert "kafka-acls.sh" not in base_init["command"][-1], "the secure script replaces it"
    env = _env(init)
    assert env["BOOTSTRAP_SERVER"] == "broker:9092", "from the base file"
    topic_list = [v for v in init.get("volumes", []) if v["target"] == "/etc/fraud/topics.txt"]
    assert [(Path(v["source"]), v.get("read_only")) for v in topic_list] == [(REPO_TOPICS, True)], (
        "the base file's read-only kafka/topics.txt, generated from fraudcore/core/topics.py"
    )
    app_env = _env(_service(models["app + secure"], "detector"))
    assert env["CONSUMER_GROUP"] == app_env["CONSUMER_GROUP"], "the ACL names the app's group"


@pytest.mark.parametrize("name", ["kafka + secure", "app + secure"])
def test_secure_services_read_only_the_secrets_they_mount(
    name: str, models: dict[str, dict[str, Any]]
) -> None:
    model = models[name]
    for service_name, service in model["services"].items():
        mounted = {item["source"] for item in service.get("secrets", [])}
        assert mounted <= set(model["secrets"]), f"{service_name}: undefined secret"
        for item in service.get("secrets", []):
            assert item["target"] == f"/run/secrets/{item['source']}", item
        text = " ".join(walk_strings(service))
        read = set(re.findall(r"/run/secrets/(\w+)", text))
        read |= set(re.findall(r"\bsecret (\w+)", text))
        if service_name == "broker":  # the SCRAM loop reads kafka_<user>_password for each
            read |= {f"kafka_{u}_password" for u in ("admin", "broker", "generator", "detector")}
        assert read <= mounted, f"{service_name} reads unmounted secrets: {read - mounted}"
        for key, value in _env(service).items():
            assert not re.search(r"PASSWORD$|SECRET|TOKEN", key), f"{service_name}: {key}"
            assert "password=" not in value, f"{service_name}: {key}"
    for secret in model["secrets"].values():
        assert set(secret) <= {"name", "file"}, "file secrets only"
        assert secret["file"].startswith(str(REPO / ".kafka-secrets" / "docker") + "/")


@pytest.mark.parametrize("service", ["generator", "detector"])
def test_secure_apps_log_in_as_themselves_at_the_base_address(
    service: str, models: dict[str, dict[str, Any]]
) -> None:
    spec = _service(models["app + secure"], service)
    base = _service(models["app"], service)
    env = _env(spec)
    assert env["KAFKA_BROKER_URL"] == "broker:9092", "the base file's address stays"
    assert env["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert env["KAFKA_SASL_USERNAME"] == service
    assert env["KAFKA_SASL_PASSWORD_FILE"] == f"/run/secrets/kafka_{service}_password"
    assert {s["source"] for s in spec["secrets"]} == {"kafka_ca", f"kafka_{service}_password"}
    assert "TRANSACTIONAL_ID" not in env
    for key, value in _env(base).items():
        assert env[key] == value, f"{service}: the secure override changed {key}"
    assert spec["healthcheck"] == base["healthcheck"]
    assert spec["build"] == base["build"]

"""docker-compose.kafka.yml (and its secure override) as far as it runs without its image.

The apache/kafka image cannot be pulled where no registry is reachable. The file's own commands
can still run: Compose resolves the file (the real CLI: merge, interpolation), and the
commands of its services, their healthchecks and environments run on this machine with the
same Kafka classes as the image, from the project's jars (tests/compose/compose_host.py):

- plaintext: kafka-init's script against the test session's broker, then the broker's
  healthcheck command, which passes against a broker and fails without one;
- secure: the broker's own start script (storage format with the SCRAM users, properties from
  the KAFKA_* variables), its healthcheck, kafka-init's topics and ACLs, then the services
  logging in with the settings of docker-compose.secure.yml and routing records.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from kafka.admin import ConfigResource, ConfigResourceType

from kafka import KafkaAdminClient
from tests.broker import BROKER_SCRIPT, Broker, free_port
from tests.compose.compose_files import REPO, read_dotenv
from tests.compose.compose_host import ComposeHost
from tests.docker.engine import Compose, unique
from tests.kafka_helpers import Service, Topics, consume, run_command

pytestmark = pytest.mark.docker

KAFKA, KAFKA_SECURE = REPO / "docker-compose.kafka.yml", REPO / "docker-compose.kafka.secure.yml"
APP, APP_SECURE = REPO / "docker-compose.yml", REPO / "docker-compose.secure.yml"
# The engine gives a healthcheck this long before it counts as failed (the file says 20s).
HEALTHCHECK_TIMEOUT_SECONDS = 20


def _topic_env(topics: Topics) -> dict[str, str]:
    return {
        "TRANSACTIONS_TOPIC": topics.input,
        "LEGIT_TOPIC": topics.legit,
        "FRAUD_TOPIC": topics.fraud,
        "DEAD_LETTER_TOPIC": topics.invalid,
        "CONSUMER_GROUP": topics.group,
    }


def _broker_port(broker: Broker) -> int:
    host, _, port = broker.bootstrap.rpartition(":")
    if host not in ("127.0.0.1", "localhost"):
        pytest.fail(f"the compose commands run here need a local broker, not {broker.bootstrap}")
    return int(port)


def _healthcheck(host: ComposeHost, spec: dict[str, Any]) -> bool:
    """The healthcheck command as the engine judges it: exit 0 within its timeout."""
    try:
        done = subprocess.run(
            host.healthcheck(spec),
            capture_output=True,
            timeout=HEALTHCHECK_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0


def test_kafka_init_script_and_broker_healthcheck_on_the_test_broker(
    docker_engine: str, broker: Broker, topics: Topics, tmp_path: Path
) -> None:
    model = Compose(unique("fraudtest-kafka"), files=[KAFKA], env=_topic_env(topics)).config()
    host = ComposeHost(tmp_path, ports={9092: _broker_port(broker)})
    broker_spec = model["services"]["broker"]
    assert _healthcheck(host, broker_spec), "the broker's healthcheck fails on a running broker"

    init_spec = model["services"]["kafka-init"]
    assert init_spec["depends_on"]["broker"]["condition"] == "service_healthy"
    for attempt in (1, 2):  # a second run (a restarted stack) must be harmless
        init = run_command(host.command(init_spec), host.env(init_spec), timeout=300)
        assert init.returncode == 0, f"run {attempt}:\n{init.stdout}\n{init.stderr}"
        assert "kafka-init: topics ready" in init.stdout

    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        names = [topics.input, topics.legit, topics.fraud, topics.invalid]
        described = {t["name"]: t for t in admin.describe_topics(names)}
        for name in names:
            assert described[name]["error_code"] == 0, described[name]
            assert len(described[name]["partitions"]) == 3, name
        configs = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topics.invalid)]
        )["topic"][topics.invalid]
        assert configs["max.message.bytes"]["value"] == "2097152", configs
    finally:
        admin.close()

    # The same healthcheck without a broker behind the address: unhealthy.
    (tmp_path / "dead").mkdir()
    dead = ComposeHost(tmp_path / "dead", ports={9092: free_port()})
    assert not _healthcheck(dead, broker_spec), "the healthcheck passes with no broker"


@pytest.mark.slow
def test_secure_kafka_file_commands_run_and_the_apps_log_in(
    docker_engine: str, tmp_path: Path
) -> None:
    """The broker and kafka-init commands of docker-compose.kafka.secure.yml, merged onto the
    base file by Compose, run here as the image would run them; then the services log in with
    the settings of docker-compose.secure.yml (merged the same way) and route records: the
    Docker variant's scripts, properties and ACLs, exercised for real."""
    subprocess.run(
        [str(BROKER_SCRIPT), "secrets", "--secrets-dir", str(tmp_path / "secrets"), "--docker"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    dotenv = read_dotenv()
    kafka = Compose(unique("fraudtest-kafka"), files=[KAFKA, KAFKA_SECURE]).config()
    app = Compose(unique("fraudtest-app"), files=[APP, APP_SECURE]).config()
    secrets = {
        name: tmp_path / "secrets" / "docker" / Path(spec["file"]).name
        for name, spec in {**kafka["secrets"], **app["secrets"]}.items()
    }
    (tmp_path / "host").mkdir()
    host = ComposeHost(tmp_path / "host", secrets)
    broker_spec = kafka["services"]["broker"]
    broker_log = (tmp_path / "broker.log").open("wb")
    broker = subprocess.Popen(
        host.command(broker_spec),
        env=host.env(broker_spec),
        stdout=broker_log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not _healthcheck(host, broker_spec):
            assert broker.poll() is None, (tmp_path / "broker.log").read_text()[-4000:]
            assert time.monotonic() < deadline, "the secure broker never became healthy"
            time.sleep(2)

        init_spec = kafka["services"]["kafka-init"]
        init = run_command(host.command(init_spec), host.env(init_spec), timeout=300)
        assert init.returncode == 0, init.stdout + init.stderr
        assert "kafka-init: topics and ACLs ready" in init.stdout

        count = 300
        generator_spec = app["services"]["generator"]
        env = host.env(generator_spec) | {"TRANSACTIONS_COUNT": str(count), "RANDOM_SEED": "5"}
        generator = Service.module("generator", env, tmp_path)
        assert generator.wait(timeout=120) == 0, generator.output()
        detector = Service.module("detector", host.env(app["services"]["detector"]), tmp_path)
        admin = {
            "bootstrap_servers": f"localhost:{host.ports[9092]}",
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_plain_username": "admin",
            "sasl_plain_password": (tmp_path / "secrets" / "admin.password").read_text(),
            "ssl_cafile": str(secrets["kafka_ca"]),
        }
        outputs = [dotenv["LEGIT_TOPIC"], dotenv["FRAUD_TOPIC"], dotenv["DEAD_LETTER_TOPIC"]]
        records = consume(admin["bootstrap_servers"], outputs, count, 90, 1.0, client_options=admin)
        assert detector.stop() == 0, detector.output()
        assert len(records) == count
        fraud = [json.loads(r.value, parse_float=Decimal) for r in records if r.topic == outputs[1]]
        assert fraud, "no fraud among 300 seeded transactions"
        assert all(value["amount"] > 900 for value in fraud)
    finally:
        os.killpg(broker.pid, signal.SIGTERM)
        try:
            broker.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(broker.pid, signal.SIGKILL)
            broker.wait(timeout=30)
        broker_log.close()

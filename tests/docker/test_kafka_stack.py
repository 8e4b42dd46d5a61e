"""The whole Docker stack, for real: broker + kafka-init, then the generator and the detector.

This needs what only a Docker engine with a registry gives: the apache/kafka image pulled and a
bridge network of the kafka file's own. On the podman stand-in of `make test-docker` (no
registry, no bridge networks) these tests skip with that reason; there the kafka file is run as
far as it can be without its image (test_kafka_file.py) and the app file against the test
broker (test_stack.py, test_scale.py). The stacks run under unique project names, on their own
network and host port, so they never touch a stack a developer already runs (nor each other
across runs), and they are removed with their volumes and built images afterwards.

The two compose files are brought up one after the other, as a person would: the app file
joins the kafka file's network as external, so they are not merged into one project.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cached_property
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlparse

import pytest
from testcontainers.compose import ContainerIsNotRunning, DockerCompose

from tests.docker.engine import stand_in_base

REPO = Path(__file__).resolve().parents[2]
KAFKA_FILE = "docker-compose.kafka.yml"
APP_FILE = "docker-compose.yml"
KAFKA_BIN = "/opt/kafka/bin"
BOOTSTRAP = "broker:9092"
TOPICS = {
    "TRANSACTIONS_TOPIC": "queueing.transactions",
    "LEGIT_TOPIC": "streaming.transactions.legit",
    "FRAUD_TOPIC": "streaming.transactions.fraud",
    "DEAD_LETTER_TOPIC": "streaming.transactions.invalid",
}
THRESHOLD = Decimal(900)
GROUP = "detector"

# Image pulls and the first build can take minutes; pytest-timeout counts fixture set-up too.
pytestmark = [pytest.mark.docker, pytest.mark.timeout(1200)]

T = TypeVar("T")


class ComposeCommandError(RuntimeError):
    pass


@dataclass
class ProjectCompose(DockerCompose):
    """testcontainers' DockerCompose (pinned 4.15.0) with a project name and its own env.

    `--project-name` keeps the test stacks apart from a developer's; `extra_env` feeds
    compose's variable interpolation without touching os.environ; `down` also removes the
    images it built.
    """

    project_name: str = ""
    extra_env: dict[str, str] = field(default_factory=dict)

    @cached_property
    def compose_command_property(self) -> list[str]:
        """The prefix of every compose command this object runs (start, ps, down, ...)."""
        files = self.compose_file_name or []
        cmd = ["docker", "compose", "--project-name", self.project_name]
        for file in [files] if isinstance(files, str) else files:
            cmd += ["--file", file]
        return cmd

    def run(
        self, *args: str, check: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        cmd = [*self.compose_command_property, *args]
        out = subprocess.run(
            cmd,
            cwd=self.context,
            env={**os.environ, **self.extra_env},
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            check=False,
        )
        if check and out.returncode != 0:
            raise ComposeCommandError(
                f"{' '.join(cmd)} exited {out.returncode}\n--- stdout\n{out.stdout[-4000:]}"
                f"\n--- stderr\n{out.stderr[-4000:]}"
            )
        return out

    def _run_command(
        self, cmd: str | list[str], context: str | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        argv = cmd.split() if isinstance(cmd, str) else list(cmd)
        out = subprocess.run(
            argv,
            cwd=context or self.context,
            env={**os.environ, **self.extra_env},
            capture_output=True,
            check=False,
        )
        if out.returncode != 0:
            raise ComposeCommandError(
                f"{' '.join(argv)} exited {out.returncode}\n--- stdout\n"
                f"{out.stdout.decode(errors='replace')[-4000:]}\n--- stderr\n"
                f"{out.stderr.decode(errors='replace')[-4000:]}"
            )
        return out

    def stop(self, down: bool = True) -> None:
        if not down:
            super().stop(down=False)
            return
        self.run("down", "--volumes", "--remove-orphans", "--rmi", "local", timeout=300)

    def logs(self, *services: str, tail: int = 60) -> str:
        out = self.run("logs", "--no-color", "--tail", str(tail), *services, check=False)
        return out.stdout + out.stderr

    def kafka_tool(
        self, tool: str, *args: str, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run a Kafka CLI tool inside the broker container (talks to broker:9092 there)."""
        return self.run(
            "exec",
            "-T",
            "broker",
            f"{KAFKA_BIN}/{tool}",
            "--bootstrap-server",
            BOOTSTRAP,
            *args,
            check=False,
            timeout=timeout,
        )


def _wait_for(
    what: str, probe: Callable[[], T | None], timeout: float, on_timeout: Callable[[], str]
) -> T:
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}\n{on_timeout()}")
        time.sleep(2)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _dotenv() -> dict[str, str]:
    values = {}
    for line in (REPO / ".env").read_text().splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and not key.startswith("#"):
            values[key] = value
    return values


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def docker_cli(docker_engine: str) -> None:
    """Skip on the podman stand-in: it can pull no image and make no bridge network."""
    if docker_engine != "docker" or stand_in_base():
        pytest.skip(
            "needs Docker with a registry (apache/kafka:4.1.1) and bridge networks; on the "
            "podman stand-in, test_kafka_file.py and test_stack.py cover these files"
        )


@pytest.fixture(scope="module")
def stack_env(docker_cli: None) -> dict[str, str]:
    """Interpolation values for both files: .env, then this run's unique names."""
    suffix = uuid.uuid4().hex[:8]
    return {
        **_dotenv(),  # explicit, so a developer's exported variables cannot change the test
        "KAFKA_NETWORK_NAME": f"fraudtest-net-{suffix}",
        "KAFKA_HOST_PORT": str(_free_port()),
        "DOCKER_KAFKA_BROKER_URL": BOOTSTRAP,
        "TRANSACTIONS_PER_SECOND": "200",
        "STATS_INTERVAL_SECONDS": "2",
        "SUFFIX": suffix,  # not used by the files; names the projects below
    }


def _start(compose: ProjectCompose) -> None:
    try:
        compose.start()
    except ComposeCommandError as exc:
        pytest.fail(f"{exc}\n--- logs\n{compose.logs(tail=200)}")


@pytest.fixture(scope="module")
def kafka_stack(stack_env: dict[str, str]) -> Iterator[ProjectCompose]:
    compose = ProjectCompose(
        context=REPO,
        compose_file_name=KAFKA_FILE,
        wait=False,  # `up --wait` fails on a one-shot job that exits 0; poll instead
        project_name=f"fraudtest-kafka-{stack_env['SUFFIX']}",
        extra_env=stack_env,
    )

    def init_done() -> bool | None:
        try:
            init = compose.get_container("kafka-init", include_all=True)
        except ContainerIsNotRunning:
            return None
        if init.State != "exited":
            return None
        if init.ExitCode != 0:
            pytest.fail(
                f"kafka-init exited {init.ExitCode}\n{compose.logs('kafka-init', tail=200)}"
            )
        return True

    try:
        _start(compose)  # returns once the broker is healthy and kafka-init has started
        _wait_for("kafka-init to create the topics", init_done, 180, compose.logs)
        yield compose
    finally:
        compose.stop()


@pytest.fixture(scope="module")
def app_stack(kafka_stack: ProjectCompose, stack_env: dict[str, str]) -> Iterator[ProjectCompose]:
    compose = ProjectCompose(
        context=REPO,
        compose_file_name=APP_FILE,
        build=True,
        wait=False,
        project_name=f"fraudtest-apps-{stack_env['SUFFIX']}",
        extra_env=stack_env,
    )
    try:
        _start(compose)  # builds both images first
        yield compose
    finally:
        compose.stop()


def _consume(kafka: ProjectCompose, topic: str, max_messages: int) -> list[dict[str, object]]:
    """Committed records from the start of a topic (as the detector's readers would see them)."""
    out = kafka.kafka_tool(
        "kafka-console-consumer.sh",
        "--topic",
        topic,
        "--from-beginning",
        "--max-messages",
        str(max_messages),
        "--timeout-ms",
        "10000",
        "--consumer-property",
        "isolation.level=read_committed",
        timeout=90,
    )
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    return [json.loads(line, parse_float=Decimal) for line in lines]


def _records_in(
    kafka: ProjectCompose, app: ProjectCompose, topic: str, wanted: int = 5
) -> list[dict[str, object]]:
    def probe() -> list[dict[str, object]] | None:
        records = _consume(kafka, topic, wanted)
        return records if len(records) >= wanted else None

    return _wait_for(
        f"{wanted} records in {topic}",
        probe,
        240,
        lambda: app.logs(tail=80) + kafka.logs("broker", tail=40),
    )


# --------------------------------------------------------------------------- tests


def test_broker_is_healthy(kafka_stack: ProjectCompose) -> None:
    broker = kafka_stack.get_container("broker")
    assert broker.State == "running"
    assert broker.Health == "healthy"


def test_kafka_init_created_the_topics(kafka_stack: ProjectCompose) -> None:
    listed = kafka_stack.kafka_tool("kafka-topics.sh", "--list")
    assert listed.returncode == 0, listed.stderr
    assert set(TOPICS.values()) <= set(listed.stdout.split()), listed.stdout
    for topic in TOPICS.values():
        described = kafka_stack.kafka_tool("kafka-topics.sh", "--describe", "--topic", topic)
        assert described.returncode == 0, described.stderr
        assert re.search(r"PartitionCount:\s*3\b", described.stdout), described.stdout
    dead_letter = kafka_stack.kafka_tool(
        "kafka-configs.sh",
        "--describe",
        "--entity-type",
        "topics",
        "--entity-name",
        TOPICS["DEAD_LETTER_TOPIC"],
    )
    assert "max.message.bytes=2097152" in dead_letter.stdout, dead_letter.stdout


def test_fraud_topic_gets_transactions_over_the_threshold(
    kafka_stack: ProjectCompose, app_stack: ProjectCompose
) -> None:
    records = _records_in(kafka_stack, app_stack, TOPICS["FRAUD_TOPIC"])
    for record in records:
        assert Decimal(str(record["amount"])) > THRESHOLD, record


def test_legit_topic_gets_transactions_up_to_the_threshold(
    kafka_stack: ProjectCompose, app_stack: ProjectCompose
) -> None:
    records = _records_in(kafka_stack, app_stack, TOPICS["LEGIT_TOPIC"])
    for record in records:
        assert Decimal(str(record["amount"])) <= THRESHOLD, record


@pytest.mark.parametrize("service", ["generator", "detector"])
def test_app_containers_run_as_the_fixed_non_root_uid(
    app_stack: ProjectCompose, service: str
) -> None:
    out = app_stack.run("exec", "-T", service, "id", "-u", check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "10001"


def test_host_listener_serves_programs_on_the_host(
    kafka_stack: ProjectCompose, stack_env: dict[str, str]
) -> None:
    docker_host = os.environ.get("DOCKER_HOST", "")
    host = urlparse(docker_host).hostname if docker_host.startswith(("tcp://", "ssh://")) else None
    if host not in (None, "localhost", "127.0.0.1", "::1"):
        pytest.skip(f"the engine runs on {host}: its 127.0.0.1 port is not this machine's")
    with warnings.catch_warnings():
        # kafka-python 3.0.12 calls the deprecated importlib.resources.read_text at import.
        warnings.simplefilter("ignore", DeprecationWarning)
        from kafka import KafkaAdminClient  # noqa: PLC0415 - only this test needs it

    admin = KafkaAdminClient(
        bootstrap_servers=f"localhost:{stack_env['KAFKA_HOST_PORT']}",
        client_id="compose-test",
        request_timeout_ms=30000,
    )
    try:
        topics = set(admin.list_topics())
    finally:
        admin.close()
    assert set(TOPICS.values()) <= topics


def test_detector_scales_out_in_one_consumer_group(
    kafka_stack: ProjectCompose, app_stack: ProjectCompose
) -> None:
    _records_in(kafka_stack, app_stack, TOPICS["FRAUD_TOPIC"], wanted=1)  # the stack is flowing
    app_stack.run(
        "up", "--detach", "--no-build", "--no-recreate", "--scale", "detector=3", "detector"
    )

    def members() -> int | None:
        out = kafka_stack.kafka_tool(
            "kafka-consumer-groups.sh", "--describe", "--group", GROUP, "--members"
        )
        lines = [line for line in out.stdout.splitlines() if line.startswith(GROUP + " ")]
        return len(lines) if len(lines) == 3 else None

    _wait_for(
        "3 detectors in the consumer group",
        members,
        180,
        lambda: app_stack.logs("detector", tail=80),
    )
    running = [
        c for c in app_stack.get_containers() if c.Service == "detector" and c.State == "running"
    ]
    assert len(running) == 3

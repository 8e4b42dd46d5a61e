"""Fixtures of the Docker tier: the engine, the images built once per session, app stacks.

Every stack is a compose project of its own (a unique project name, unique topics and consumer
group, free metrics ports) against the session's broker (tests/conftest.py), and is taken down
with its volumes afterwards; the images built here are removed at the end of the session.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from tests.broker import Broker, free_port
from tests.docker.engine import (
    APP_FILE,
    COMPOSE_VERSION,
    Compose,
    app_stack_files,
    docker,
    engine,
    run,
    unique,
)
from tests.kafka_helpers import Topics

SERVICES = ("generator", "detector")


@pytest.fixture(scope="session")
def docker_engine() -> str:
    """The engine `make test-docker` prepared. It must answer: this tier does not skip."""
    info = run(["docker", "info", "--format", "{{.ServerVersion}}"], timeout=60, check=False)
    if info.returncode != 0 or not info.stdout.strip():
        pytest.fail(f"no container engine answers (run `make test-docker`): {info.stderr[-2000:]}")
    version = run(["docker", "compose", "version", "--short"], timeout=60).stdout.strip()
    assert f"v{version.removeprefix('v')}" == COMPOSE_VERSION, f"docker compose is {version}"
    return engine()


@pytest.fixture(scope="session")
def images(docker_engine: str) -> Iterator[dict[str, str]]:
    """Both images, built once with `docker compose build` from the project's Dockerfile.

    One build at a time (`--parallel 1`): the classic builder (podman's, or Docker's without
    buildx) then makes the shared base stage once and the second image reuses its layers, as
    BuildKit does within one build. Parallel classic builds would each make their own copy.
    """
    compose = Compose(unique("fraudtest-build"), files=[APP_FILE])
    started = time.monotonic()
    compose.run("--parallel", "1", "build", *SERVICES, timeout=900)
    print(f"docker compose build: {time.monotonic() - started:.1f}s")
    names = {service: f"{compose.project}-{service}" for service in SERVICES}
    yield names
    docker("rmi", *names.values(), check=False)


def broker_url_for_containers(broker: Broker) -> str:
    """The test broker as the host-network containers reach it: by the name `broker`, which
    the override maps to 127.0.0.1, as compose's own network would resolve it."""
    host, _, port = broker.bootstrap.rpartition(":")
    return f"broker:{port}" if host in ("127.0.0.1", "localhost") else broker.bootstrap


StackFactory = Callable[..., Compose]


@pytest.fixture
def app_stack(images: dict[str, str], broker: Broker) -> Iterator[StackFactory]:
    """make(topics, **variables): docker-compose.yml as a new project against the test broker
    (not started: the test runs `up` as it needs). Logs are printed at teardown (pytest shows
    them when the test failed), then the project is taken down."""
    made: list[Compose] = []

    def make(topics: Topics, **variables: str) -> Compose:
        compose = Compose(
            unique("fraudtest-app"),
            files=app_stack_files(),
            env={
                "DOCKER_KAFKA_BROKER_URL": broker_url_for_containers(broker),
                "FRAUD_TEST_GENERATOR_IMAGE": images["generator"],
                "FRAUD_TEST_DETECTOR_IMAGE": images["detector"],
                "GENERATOR_METRICS_PORT": str(free_port()),
                "DETECTOR_METRICS_PORT": str(free_port()),
                "TRANSACTIONS_TOPIC": topics.input,
                "LEGIT_TOPIC": topics.legit,
                "FRAUD_TOPIC": topics.fraud,
                "DEAD_LETTER_TOPIC": topics.invalid,
                "CONSUMER_GROUP": topics.group,
                "STATS_INTERVAL_SECONDS": "2",
                **variables,
            },
        )
        made.append(compose)
        return compose

    yield make
    for compose in made:
        print(f"--- logs of {compose.project}\n{compose.logs(tail=60)}")
        compose.down()

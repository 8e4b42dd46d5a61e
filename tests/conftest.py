"""Session fixtures: one real broker for all integration tests; unique topics per test.

Tests marked `docker` (the Docker tier) run only under `make test-docker`, which prepares the
engine, the Compose CLI and the base image first (scripts/docker-tier.sh) and says so with
FRAUD_DOCKER_TIER=1; tests marked `cluster` only under `make test-cluster` (FRAUD_CLUSTER_TIER=1).
Elsewhere they are skipped with that reason, so that `make test` stays fast.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from kafka import KafkaAdminClient
from tests.broker import Broker, start_broker
from tests.kafka_helpers import Topics

DOCKER_TIER_SKIP = "the Docker tier (images built, containers started) runs with `make test-docker`"
CLUSTER_TIER_SKIP = "the cluster tier (three brokers, killed) runs with `make test-cluster`"
# Marker: the variable its make target sets, and why its tests are skipped elsewhere.
TIERS = {
    "docker": ("FRAUD_DOCKER_TIER", DOCKER_TIER_SKIP),
    "cluster": ("FRAUD_CLUSTER_TIER", CLUSTER_TIER_SKIP),
}


def pytest_report_header() -> str:
    """Which Kafka client the services under test use: CI runs the suite once per client."""
    return f"KAFKA_CLIENT={os.environ.get('KAFKA_CLIENT', 'kafka-python')} (the services' client)"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for marker, (variable, reason) in TIERS.items():
        if os.environ.get(variable) == "1":
            continue
        for item in items:
            if item.get_closest_marker(marker) is not None:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    running = start_broker(tmp_path_factory.mktemp("broker"))
    yield running
    running.close()


@pytest.fixture
def bootstrap(broker: Broker) -> str:
    return broker.bootstrap


@pytest.fixture
def topics() -> Topics:
    return Topics.fresh()


@pytest.fixture
def admin(bootstrap: str) -> Iterator[KafkaAdminClient]:
    """An admin client of the session's broker, closed after the test."""
    client = KafkaAdminClient(bootstrap_servers=bootstrap)
    yield client
    client.close()

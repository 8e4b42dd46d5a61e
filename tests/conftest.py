"""Session fixtures: one real broker for all integration tests; unique topics per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.broker import Broker, start_broker
from tests.kafka_helpers import Topics


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

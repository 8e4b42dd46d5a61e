"""testcontainers runs the built detector image against the test broker; one record is routed.

The design names testcontainers for container tests: this is the detector image started the
way another project's tests would start it, through testcontainers' Docker client (docker-py,
DOCKER_HOST), not through compose. Ryuk, testcontainers' reaper, needs an image from a registry:
it is off (TESTCONTAINERS_RYUK_DISABLED=true, set by make test-docker) and the test removes its
container itself.
"""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from testcontainers.core.container import DockerContainer
from testcontainers.core.wait_strategies import LogMessageWaitStrategy

from tests.broker import Broker
from tests.kafka_helpers import Topics, consume, create_topic, produce
from tests.samples import tutorial_record

pytestmark = pytest.mark.docker


AMOUNT = 950.0  # over the default threshold of 900: the fraud topic


def test_the_detector_image_routes_a_record(
    images: dict[str, str], broker: Broker, topics: Topics
) -> None:
    create_topic(broker.bootstrap, topics.input)
    container = (
        DockerContainer(images["detector"])
        .with_kwargs(network_mode="host")  # the test broker listens on the host's 127.0.0.1
        .with_env("METRICS_PORT", "0")
        .with_env("STATS_INTERVAL_SECONDS", "1")
        # Started means: in its consumer group, with the input's partitions.
        .waiting_for(LogMessageWaitStrategy("assigned partitions").with_startup_timeout(90))
    )
    for key, value in topics.env(broker.bootstrap).items():
        container = container.with_env(key, value)
    with container:
        produce(broker.bootstrap, topics.input, [(b"one", tutorial_record(AMOUNT))])
        records = consume(broker.bootstrap, [topics.fraud, topics.legit], 1, timeout=60, settle=1)
        out, err = container.get_logs()
        logs = (out + err).decode(errors="replace")
    assert len(records) == 1, logs[-4000:]
    (record,) = records
    assert record.topic == topics.fraud, "950 is over the 900 threshold"
    assert record.key == b"one"
    assert json.loads(record.value, parse_float=Decimal)["amount"] == Decimal("950.0")
    assert "detector starting" in logs

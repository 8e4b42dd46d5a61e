"""/health follows the broker: 503 while it is down, 200 again once it is back.

The outage is real: a broker of this test's own (kafka/broker.sh on free ports and a data dir of
its own) is stopped and started again. The session's shared broker is never touched.
"""

from __future__ import annotations

import shutil
import urllib.error
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka.errors import KafkaError, TopicAlreadyExistsError

from tests.broker import BROKER_SCRIPT, Broker, free_port, start_jar_broker
from tests.http_probe import health, sample, scrape
from tests.kafka_helpers import Service, Topics, create_topic, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[Broker]:
    """A second jar broker, for this test alone: stopping it disturbs no other test."""
    if shutil.which("java") is None:
        pytest.skip("needs Java for a broker of its own (kafka/broker.sh)")
    if not list((BROKER_SCRIPT.parent / "lib").glob("kafka_2.13-*.jar")):
        pytest.skip("the Kafka jars are not fetched (make jars)")
    broker = start_jar_broker(tmp_path / "own-kafka")
    try:
        yield broker
    finally:
        broker.close()  # down, then wipe its data dir


def create_topics_when_ready(bootstrap: str, topics: Topics) -> None:
    """A broker fresh from `up` may still be fenced for a moment: retry until topics exist."""
    missing = [topics.input, topics.legit, topics.fraud, topics.invalid]

    def create_missing() -> bool:
        for name in list(missing):
            try:
                create_topic(bootstrap, name)
            except TopicAlreadyExistsError:
                pass
            except KafkaError:
                return False
            missing.remove(name)
        return True

    wait_until(create_missing, 60, f"topics on the new broker {bootstrap}", interval=0.5)


def working(port: int, name: str) -> bool:
    """The service got past start-up: records flowed through it."""
    samples = scrape(port)
    if name == "generator":
        return sample(samples, "fraud_generator_transactions_total") > 0
    return sample(samples, "fraud_detector_transactions_total", verdict="legit") > 0


def test_health_flips_when_the_broker_goes_away_and_comes_back(
    own_broker: Broker, topics: Topics, tmp_path: Path
) -> None:
    create_topics_when_ready(own_broker.bootstrap, topics)
    env = {**topics.env(own_broker.bootstrap), "BROKER_WAIT_SECONDS": "120"}
    ports = {"generator": free_port(), "detector": free_port()}
    services = {
        name: Service.module(
            name,
            {**env, "METRICS_PORT": str(port), "TRANSACTIONS_PER_SECOND": "50"},
            tmp_path,
        )
        for name, port in ports.items()
    }

    def statuses() -> dict[str, int]:
        return {name: health(port)[0] for name, port in ports.items()}

    def logs() -> str:
        return "\n".join(f"--- {n}:\n{s.output()[-3000:]}" for n, s in services.items())

    try:
        wait_until(lambda: statuses() == {"generator": 200, "detector": 200}, 90, "healthy")
        # Take the broker away only once both are past start-up, in their steady loops.
        wait_until(lambda: all(working(p, n) for n, p in ports.items()), 60, "records to flow")
        for name, port in ports.items():
            assert sample(scrape(port), f"fraud_{name}_broker_reachable") == 1

        own_broker.stop()
        wait_until(
            lambda: statuses() == {"generator": 503, "detector": 503},
            45,
            "both to report the broker unreachable",
        )
        for name, port in ports.items():
            status, body = health(port)
            assert status == 503
            assert body["status"] == "unavailable"
            assert body["service"] == name
            broker = body["broker"]
            assert isinstance(broker, dict)
            assert broker["reachable"] is False
            assert broker["error"]
            assert sample(scrape(port), f"fraud_{name}_broker_reachable") == 0
        assert all(s.running() for s in services.values()), logs()

        own_broker.start()
        wait_until(
            lambda: statuses() == {"generator": 200, "detector": 200},
            90,
            f"both healthy again\n{logs()}",
        )
        assert all(s.running() for s in services.values()), logs()
    except (AssertionError, urllib.error.URLError) as exc:
        raise AssertionError(f"{exc}\n{logs()}") from exc
    finally:
        for service in services.values():
            service.stop(timeout=30)

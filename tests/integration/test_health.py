"""/health follows the broker and the loop: 503 while the broker is down or the loop is stuck.

The outage is real: a broker of this test's own (kafka/broker.sh on free ports and a data dir of
its own) is stopped and started again. The session's shared broker is never touched.
"""

from __future__ import annotations

import threading
import time
import urllib.error
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from kafka.errors import KafkaError, TopicAlreadyExistsError

from detector.app import Detector
from detector.clients import make_consumer, make_producer
from detector.config import DetectorSettings
from devtools.broker import java_available
from fraudcore.health import Liveness
from fraudcore.metrics import DetectorMetrics
from fraudcore.metrics_server import serve_metrics
from fraudcore.runtime import StopFlag
from tests.broker import BROKER_SCRIPT, Broker, free_port, start_jar_broker
from tests.http_probe import health, sample, scrape
from tests.kafka_helpers import Service, Topics, create_topic, produce, wait_until
from tests.samples import tutorial_record

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[Broker]:
    """A second jar broker, for this test alone: stopping it disturbs no other test."""
    if not java_available():
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


class Hang:
    """Makes a client call hang, as a kafka-python call that never returns would, until
    released: the loop stops while the process, its health server and the broker are fine."""

    def __init__(self) -> None:
        self.armed = threading.Event()
        self.release = threading.Event()

    def here(self) -> None:
        if self.armed.is_set():
            self.release.wait(120)


def hang_in(client: object, method: str) -> Hang:
    """Make the real client's `method` (of whichever adapter KAFKA_CLIENT picked) able to
    hang: it waits while the returned Hang is armed, then does what it always does."""
    original = getattr(client, method)
    hang = Hang()

    def hanging(*args: Any, **kwargs: Any) -> Any:
        hang.here()
        return original(*args, **kwargs)

    setattr(client, method, hanging)
    return hang


@pytest.mark.parametrize("stuck_in", ["poll", "commit"])
def test_health_fails_when_the_loop_is_stuck_while_the_broker_answers(
    bootstrap: str, topics: Topics, stuck_in: str
) -> None:
    """The detector's loop hangs inside a client call: /health turns 503 ("stuck") within
    LIVENESS_TIMEOUT_SECONDS although the broker answers, and 200 again once the loop moves."""
    for name in (topics.input, topics.legit, topics.fraud, topics.invalid):
        create_topic(bootstrap, name)
    port = free_port()
    settings = DetectorSettings(
        kafka_broker_url=bootstrap,
        transactions_topic=topics.input,
        legit_topic=topics.legit,
        fraud_topic=topics.fraud,
        dead_letter_topic=topics.invalid,
        consumer_group=topics.group,
        metrics_port=port,
        liveness_timeout_seconds=2,
        transaction_timeout_ms=60_000,  # the commit's own deadline is far: liveness must tell
    )
    metrics, liveness, stop = DetectorMetrics(), Liveness(2), StopFlag()
    telemetry = serve_metrics(settings, metrics, liveness)
    assert telemetry is not None
    consumer, producer = make_consumer(settings), make_producer(settings)
    hang = (
        hang_in(consumer, "poll") if stuck_in == "poll" else hang_in(producer, "commit_transaction")
    )
    detector = Detector(settings, consumer, producer, stop, metrics=metrics, liveness=liveness)
    with ThreadPoolExecutor(max_workers=1) as pool:
        running = pool.submit(detector.run)
        try:
            produce(bootstrap, topics.input, [(b"k", tutorial_record(5.0))])
            wait_until(lambda: health(port)[0] == 200, 30, "healthy")
            wait_until(lambda: metrics_sample(port) >= 1, 30, "the first record committed")
            hang.armed.set()
            produce(bootstrap, topics.input, [(b"k", tutorial_record(6.0))])  # a batch to hold
            started = time.monotonic()
            wait_until(lambda: health(port)[0] == 503, 30, "/health to report the stuck loop")
            waited = time.monotonic() - started
            status, body = health(port)
            assert status == 503
            assert body["status"] == "stuck"
            assert body["broker"]["reachable"] is True  # type: ignore[index]
            loop = body["loop"]
            assert isinstance(loop, dict)
            assert loop["alive"] is False
            expected = "no poll returned" if stuck_in == "poll" else "open without a commit"
            assert expected in loop["error"], loop
            print(f"stuck in {stuck_in}: /health 503 after {waited:.1f}s (bound 2 s)")
            assert running.running()
            hang.armed.clear()
            hang.release.set()
            wait_until(lambda: health(port)[0] == 200, 30, "healthy again once the loop moves")
        finally:
            hang.release.set()
            stop.set()
            assert running.result(timeout=60) == 0
            producer.close(10)
            consumer.close()
            telemetry.close()


def metrics_sample(port: int) -> float:
    return sample(scrape(port), "fraud_detector_transactions_total", verdict="legit")

"""fraudcore/health.py without a broker: the probe's outcome, staleness, the loop's liveness, the
background thread, and the filter that keeps the probe's kafka-python logs quiet."""

from __future__ import annotations

import logging
from typing import Any

from fraudcore.health import BrokerHealth, Liveness, QuietProbeLogs
from fraudcore.metrics import DetectorMetrics
from tests.fakes import FakeClock, FlakyProbe


def value(metrics: Any, name: str, **labels: str) -> float | None:
    found = metrics.registry.get_sample_value(name, labels or None)
    return None if found is None else float(found)


def test_health_is_unavailable_until_the_first_probe_and_flips_both_ways() -> None:
    clock = FakeClock()
    probe = FlakyProbe()
    metrics = DetectorMetrics()
    health = BrokerHealth(
        "detector", probe, stale_after=30, clock=clock, gauge=metrics.broker_reachable
    )
    status = health.status()
    assert not status.healthy
    assert status.body["status"] == "unavailable"

    assert health.check_once()
    status = health.status()
    assert status.healthy
    assert status.body == {
        "status": "ok",
        "service": "detector",
        "broker": {
            "reachable": True,
            "checked_seconds_ago": 0.0,
            "last_ok_seconds_ago": 0.0,
            "error": None,
        },
    }
    assert value(metrics, "fraud_detector_broker_reachable") == 1

    probe.up = False
    clock.now += 5
    assert not health.check_once()
    status = health.status()
    assert not status.healthy
    assert "ConnectionError: connection refused" in status.body["broker"]["error"]
    assert status.body["broker"]["last_ok_seconds_ago"] == 5.0
    assert value(metrics, "fraud_detector_broker_reachable") == 0

    probe.up = True
    assert health.check_once()
    assert health.status().healthy


def test_health_goes_stale_when_probes_stop_succeeding_in_time() -> None:
    clock = FakeClock()
    health = BrokerHealth("generator", FlakyProbe(), stale_after=30, clock=clock)
    health.check_once()
    clock.now += 31  # the probe thread is stuck: no result for longer than stale_after
    status = health.status()
    assert not status.healthy
    assert "no successful probe" in status.body["broker"]["error"]


def test_health_fails_on_a_stuck_loop_while_the_broker_answers() -> None:
    clock = FakeClock()
    liveness = Liveness(60, clock)
    health = BrokerHealth("detector", FlakyProbe(), stale_after=30, clock=clock, liveness=liveness)
    liveness.start()
    health.check_once()
    assert health.status().healthy
    assert health.status().body["loop"]["alive"] is True
    clock.now += 61
    health.check_once()  # the probe thread still runs: the broker answers
    status = health.status()
    assert not status.healthy
    assert status.body["status"] == "stuck"
    assert status.body["broker"]["reachable"] is True
    assert status.body["loop"]["error"] == "no poll returned for 61.0s (bound 60s)"
    liveness.beat()
    assert health.status().healthy


def test_health_thread_probes_in_the_background() -> None:
    probe = FlakyProbe()
    health = BrokerHealth("detector", probe, interval=0.01)
    health.start()
    try:
        for _ in range(200):
            if probe.calls >= 3 and health.status().healthy:
                break
            health._stop.wait(0.01)
    finally:
        health.stop()
    assert probe.calls >= 3
    assert health.status().healthy


def test_the_probes_own_kafka_logs_are_dropped_and_nothing_else() -> None:
    quiet = QuietProbeLogs("kafka-io-detector-health", ("kafka",))

    def rec(logger: str, thread: str) -> logging.LogRecord:
        record = logging.LogRecord(
            logger, logging.ERROR, __file__, 1, "Connection failed", (), None
        )
        record.threadName = thread
        return record

    assert not quiet.filter(rec("kafka.net.manager", "kafka-io-detector-health"))
    assert not quiet.filter(rec("kafka.admin.client", "health-probe"))
    assert quiet.filter(rec("kafka.net.manager", "kafka-io-detector"))  # the detector's own
    assert quiet.filter(rec("fraudcore.health", "health-probe"))  # the probe's own report

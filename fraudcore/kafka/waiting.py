"""Waiting for the broker at start-up, whichever client library: bounded by
BROKER_WAIT_SECONDS and logged once per attempt, so that a missing broker shows up as a clear
message and an exit instead of a crash loop. A refusal (wrong credentials, untrusted
certificate, protocol mismatch) raises KafkaSecurityError at once, never retried.

With TLS or SASL every client first logs in once on a plain socket (the pre-flight login,
fraudcore/kafka/kafka_python/login.py, which speaks the protocol itself), so that a refusal is
told apart from a broker that is not up yet, in the same words on every client library.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from fraudcore.config import CommonSettings
from fraudcore.errors import BrokerUnavailableError, ClientError
from fraudcore.kafka.kafka_python.login import check_login, fail_if_broker_expects_tls
from fraudcore.runtime import StopFlag

log = logging.getLogger(__name__)

# Longest single connection attempt while waiting for the broker (bounded by what is left).
ATTEMPT_SECONDS = 10.0

AdminT = TypeVar("AdminT")


def wait_for_broker(
    settings: CommonSettings,
    stop: StopFlag,
    client_id: str,
    connect: Callable[[float], AdminT],
) -> AdminT | None:
    """`connect(seconds)`: an admin client that has had the broker answer within `seconds`,
    or ClientError / OSError. Returns it once the broker answers; None if stopped meanwhile."""
    deadline = time.monotonic() + settings.broker_wait_seconds
    secured = settings.kafka_security_protocol != "PLAINTEXT"
    attempt = 0
    while not stop.is_set():
        attempt += 1
        budget = max(1.0, min(ATTEMPT_SECONDS, deadline - time.monotonic()))
        try:
            if secured:
                check_login(settings, client_id, timeout=budget)
            admin = connect(budget)
        except (ClientError, OSError) as error:
            exc = error.cause if isinstance(error, ClientError) and error.cause else error
            if not secured:
                fail_if_broker_expects_tls(settings, budget)
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrokerUnavailableError(
                    f"no Kafka broker answered at {settings.kafka_broker_url} within "
                    f"{settings.broker_wait_seconds:g}s (last error: {exc!r}); "
                    "check KAFKA_BROKER_URL and that the broker is up"
                ) from None
            log.warning(
                "waiting for Kafka broker at %s (attempt %d, %.0fs left): %s",
                settings.kafka_broker_url,
                attempt,
                left,
                type(exc).__name__,
            )
            stop.wait(min(2.0, left))
        else:
            log.info("connected to Kafka broker at %s", settings.kafka_broker_url)
            return admin
    return None

"""What both services do before their loop: settings, logging, signals, /metrics, the broker.

`start()` either returns what the loop needs or raises ServiceExit with the exit code: 2 for a
bad setting (one line on stderr), 1 when the metrics port or the broker is unusable, 0 when a
stop signal came while waiting for the broker.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Generic, NamedTuple, TypeVar

from fraudcore import kafka
from fraudcore.config import CommonSettings, SettingsError, load_settings
from fraudcore.errors import BrokerUnavailableError
from fraudcore.health import Liveness
from fraudcore.kafka.ports import Admin
from fraudcore.metrics import ServiceMetrics
from fraudcore.metrics_server import MetricsPortError, serve_metrics
from fraudcore.runtime import StopFlag, configure_logging
from fraudcore.security import redact_secrets_in_logs

log = logging.getLogger(__name__)

SettingsT = TypeVar("SettingsT", bound=CommonSettings)
MetricsT = TypeVar("MetricsT", bound=ServiceMetrics)


class ServiceExit(Exception):  # noqa: N818  # not an error: the way out of start() with a code
    """The service ends before its loop, with this exit code (the reason is already reported)."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class Started(NamedTuple, Generic[SettingsT, MetricsT]):
    settings: SettingsT
    stop: StopFlag
    metrics: MetricsT
    admin: Admin  # connected; the caller closes it once its topics are checked
    liveness: Liveness  # the loop arms and feeds it; /health reports it


def start(
    name: str,
    settings_type: type[SettingsT],
    make_metrics: Callable[[SettingsT], MetricsT],
) -> Started[SettingsT, MetricsT]:
    """Read and validate the settings, set up logging and signals, serve /metrics and /health,
    and wait for the broker (logging in once first when TLS or SASL is on)."""
    try:
        settings = load_settings(settings_type)
    except SettingsError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        raise ServiceExit(2) from None
    configure_logging(
        settings.log_level,
        settings.log_format,
        settings.kafka_client_log_level,
        settings.kafka_client_log_every_seconds,
    )
    redact_secrets_in_logs(settings)  # a password never reaches a log line
    log.info("%s starting: %s", name, settings.describe())
    stop = StopFlag.install()
    metrics = make_metrics(settings)
    liveness = Liveness(settings.liveness_timeout_seconds)
    try:
        # METRICS_PORT: /metrics and /health, closed at exit
        serve_metrics(settings, metrics, liveness)
    except MetricsPortError as exc:
        log.error("%s", exc)
        raise ServiceExit(1) from None
    try:
        admin = kafka.driver(settings).wait_for_broker(settings, stop, name)
    except BrokerUnavailableError as exc:
        log.error("%s", exc)
        raise ServiceExit(1) from None
    if admin is None:  # stopped while waiting
        raise ServiceExit(0)
    return Started(settings, stop, metrics, admin, liveness)

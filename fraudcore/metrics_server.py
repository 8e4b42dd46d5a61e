"""The HTTP server on METRICS_PORT: one threading WSGI server (prometheus_client's) per process,
started with the broker probe by serve_metrics().

GET /metrics  the registry in the Prometheus text format (OpenMetrics on request), by
              prometheus_client's own WSGI app
GET /health   fraudcore/health.py: 200 while the broker answers and the loop moves, else 503
GET /         the two paths; any other path is 404, any other method 501
"""

from __future__ import annotations

import atexit
import logging
import threading
from collections.abc import Iterable
from http import HTTPStatus
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from fraudcore import kafka
from fraudcore.config import CommonSettings
from fraudcore.health import (
    HEALTH_PROBE_TIMEOUT_MS,
    BrokerHealth,
    Liveness,
    QuietProbeLogs,
    health_app,
    reply,
)
from fraudcore.kafka.ports import Probe
from fraudcore.metrics import ServiceMetrics

log = logging.getLogger(__name__)


def _routes(
    registry: CollectorRegistry, health: BrokerHealth | None, service: str
) -> WSGIApplication:
    """The WSGI application of METRICS_PORT: /metrics, /health, / and 404 for the rest."""
    metrics_app = make_wsgi_app(registry)
    health_route = health_app(health, service)

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ["REQUEST_METHOD"] != "GET":
            body = b"unsupported method\n"
            return reply(start_response, HTTPStatus.NOT_IMPLEMENTED, _TEXT, body)
        path = environ.get("PATH_INFO", "/").rstrip("/") or "/"
        if path == "/metrics":
            metrics: Iterable[bytes] = metrics_app(environ, start_response)
            return metrics
        if path == "/health":
            return health_route(environ, start_response)
        if path == "/":
            return reply(start_response, HTTPStatus.OK, _TEXT, b"/metrics /health\n")
        return reply(start_response, HTTPStatus.NOT_FOUND, _TEXT, b"not found\n")

    return app


_TEXT = "text/plain; charset=utf-8"


class _LogToDebug(WSGIRequestHandler):
    """Requests go to the debug log, not to stderr (wsgiref's default)."""

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


class MetricsServer:
    """/metrics and /health on one port, served from a daemon thread. Listens from the start
    (so a busy port fails here); serves once started."""

    def __init__(
        self,
        port: int,
        registry: CollectorRegistry,
        health: BrokerHealth | None = None,
        service: str = "",
        host: str = "",
    ) -> None:
        # host "" listens on every interface: Prometheus and Docker's healthcheck reach it.
        self._server = make_server(
            host,
            port,
            _routes(registry, health, service),
            server_class=ThreadingWSGIServer,
            handler_class=_LogToDebug,
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="metrics-http", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> MetricsServer:
        self._thread.start()
        return self

    def close(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()  # waits for serve_forever, so only once it runs
        self._server.server_close()


class MetricsPortError(RuntimeError):
    """METRICS_PORT cannot be listened on (usually: another process uses it)."""


class Telemetry:
    """A service's running metrics server and health probe."""

    def __init__(self, server: MetricsServer, health: BrokerHealth, probe: Probe) -> None:
        self.server = server
        self.health = health
        self._probe = probe

    def close(self) -> None:
        self.server.close()
        self.health.stop(timeout=1.0)  # a probe still waiting on the broker is a daemon thread
        self._probe.close()


def serve_metrics(
    settings: CommonSettings, metrics: ServiceMetrics, liveness: Liveness | None = None
) -> Telemetry | None:
    """Start /metrics and /health on METRICS_PORT; None when METRICS_PORT is unset.

    Closed at interpreter exit (atexit), so a service's main() needs no cleanup of its own;
    the threads are daemons, so they never hold the process up either.
    """
    if settings.metrics_port is None:
        return None
    client_id = f"{metrics.service}-health"
    driver = kafka.driver(settings)
    probe = driver.probe(settings, client_id, HEALTH_PROBE_TIMEOUT_MS)
    health = BrokerHealth(metrics.service, probe, gauge=metrics.broker_reachable, liveness=liveness)
    try:
        server = MetricsServer(settings.metrics_port, metrics.registry, health, metrics.service)
    except OSError as exc:
        raise MetricsPortError(
            f"cannot serve metrics on METRICS_PORT={settings.metrics_port}: {exc.strerror or exc}"
        ) from None
    quiet = QuietProbeLogs(driver.io_thread_name(client_id), driver.loggers)
    for handler in logging.getLogger().handlers:
        handler.addFilter(quiet)
    server.start()
    health.start()
    log.info("metrics on :%d/metrics, health on :%d/health", server.port, server.port)
    telemetry = Telemetry(server, health, probe)
    atexit.register(telemetry.close)
    return telemetry

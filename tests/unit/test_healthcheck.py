"""`python -m fraudcore.healthcheck`, the containers' healthcheck, against real HTTP servers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from fraudcore import healthcheck
from tests.broker import free_port
from tests.kafka_helpers import REPO_ROOT


class _Health(BaseHTTPRequestHandler):
    status = 200
    delay = 0.0

    def do_GET(self) -> None:
        time.sleep(self.delay)
        code = self.status if self.path == "/health" else 404
        self.send_response(code)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[ThreadingHTTPServer]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), type("Handler", (_Health,), {}))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _port(httpd: ThreadingHTTPServer) -> str:
    return str(httpd.server_address[1])


def test_200_is_healthy(server: ThreadingHTTPServer) -> None:
    code, line = healthcheck.check(_port(server))
    assert (code, line) == (0, f"healthy: http://127.0.0.1:{_port(server)}/health answered 200")


def test_503_is_unhealthy(server: ThreadingHTTPServer) -> None:
    server.RequestHandlerClass.status = 503  # type: ignore[attr-defined]
    code, line = healthcheck.check(_port(server))
    assert code == 1
    assert "answered 503" in line


def test_no_server_is_unhealthy() -> None:
    code, line = healthcheck.check(str(free_port()))
    assert code == 1
    assert "did not answer" in line


def test_a_server_that_does_not_answer_in_time_is_unhealthy(server: ThreadingHTTPServer) -> None:
    server.RequestHandlerClass.delay = 3.0  # type: ignore[attr-defined]
    started = time.monotonic()
    code, line = healthcheck.check(_port(server), timeout=0.5)
    assert code == 1
    assert "did not answer" in line
    assert time.monotonic() - started < 2.5, "the timeout bounds the probe"


def test_a_socket_that_never_answers_is_bounded_by_the_default_timeout() -> None:
    with socket.socket() as listener:  # accepts connections (backlog) but never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        started = time.monotonic()
        code, _ = healthcheck.check(str(listener.getsockname()[1]))
        elapsed = time.monotonic() - started
    assert code == 1
    assert healthcheck.TIMEOUT_SECONDS - 0.5 < elapsed < healthcheck.TIMEOUT_SECONDS + 3


@pytest.mark.parametrize("setting", [None, "", "0", "http", "70000", "-1"])
def test_no_usable_metrics_port_is_unhealthy(setting: str | None) -> None:
    code, line = healthcheck.check(setting)
    assert code == 1
    assert "METRICS_PORT" in line


def test_module_exit_status_and_line(server: ThreadingHTTPServer) -> None:
    """As the engine runs it: `python -m fraudcore.healthcheck` with METRICS_PORT set."""

    def run(port: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "METRICS_PORT": port}
        return subprocess.run(
            [sys.executable, "-m", "fraudcore.healthcheck"],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    ok = run(_port(server))
    assert ok.returncode == 0, ok.stderr
    assert "answered 200" in ok.stdout
    server.RequestHandlerClass.status = 503  # type: ignore[attr-defined]
    down = run(_port(server))
    assert down.returncode == 1
    assert "answered 503" in down.stderr

"""`python -m dashboard --web`: the terminal view's numbers as a live page in the browser.

Starlette serves the page (dashboard/static/: plain HTML, CSS and JavaScript, nothing fetched
from elsewhere) and pushes frames to it with Server-Sent Events on /events. One Feed
(dashboard/feed.py) reads Kafka for every open page; each page gets the latest frame as soon as
it is made (once a second), and a tick every second in between, so that it can tell a silent
reader from a lost server. The browser's EventSource reconnects by itself when the server
restarts; the page also opens a new one if the browser gives up.

Read-only: GET only, nothing written to Kafka, and bound to 127.0.0.1 unless DASHBOARD_HOST
says otherwise. The page never inserts data as HTML (textContent only), and the
Content-Security-Policy allows scripts from the app alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import FrameType

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dashboard.config import DashboardSettings
from dashboard.feed import Feed
from fraudcore.runtime import StopFlag, configure_logging

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
TICK_SECONDS = 1.0
RECONNECT_MS = 1000  # EventSource's retry delay after a lost connection
SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'self'; object-src 'none'; base-uri 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]


class Hub:
    """The latest frame and the pages waiting for the next one. Lives on the event loop."""

    def __init__(self) -> None:
        self.latest: str | None = None
        self.clients = 0
        self.closing = False  # the server is stopping: the streams end, so that it can
        self._next = asyncio.Event()

    def publish(self, frame: str) -> None:
        self.latest = frame
        self._next.set()
        self._next = asyncio.Event()

    async def wait(self, timeout: float) -> bool:
        """True when a new frame came within `timeout` seconds."""
        try:
            await asyncio.wait_for(self._next.wait(), timeout)
        except TimeoutError:
            return False
        return True


class SecurityHeaders:
    """Adds SECURITY_HEADERS to every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(settings: DashboardSettings, hub: Hub | None = None) -> Starlette:
    hub = hub or Hub()
    feeds: list[Feed] = []

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()

        def publish(frame: str) -> None:  # called on the feed's thread
            with contextlib.suppress(RuntimeError):  # the loop closed while shutting down
                loop.call_soon_threadsafe(hub.publish, frame)

        feed = Feed(settings, publish)
        feeds.append(feed)
        feed.start()
        yield
        await asyncio.to_thread(feed.stop)

    async def index(_request: Request) -> FileResponse:
        return FileResponse(STATIC / "index.html")

    async def health(_request: Request) -> JSONResponse:
        """200 while the server runs; the broker's state and the reader count in the body."""
        frame = json.loads(hub.latest) if hub.latest else {}
        return JSONResponse(
            {
                "broker_up": frame.get("broker_up", False),
                "status": frame.get("status", "starting"),
                "clients": hub.clients,
                "readers_open": feeds[0].readers_open if feeds else 0,
                "readers_opened": feeds[0].readers_opened if feeds else 0,
            }
        )

    async def events(_request: Request) -> StreamingResponse:
        async def stream() -> AsyncIterator[str]:
            hub.clients += 1
            try:
                yield f"retry: {RECONNECT_MS}\n\n"
                if hub.latest is not None:
                    yield f"event: frame\ndata: {hub.latest}\n\n"
                while not hub.closing:
                    if await hub.wait(TICK_SECONDS) and hub.latest is not None:
                        yield f"event: frame\ndata: {hub.latest}\n\n"
                    else:
                        yield f"event: tick\ndata: {time.time():.3f}\n\n"
            finally:
                hub.clients -= 1

        return StreamingResponse(
            stream(), media_type="text/event-stream", headers={"X-Accel-Buffering": "no"}
        )

    return Starlette(
        routes=[
            Route("/", index),
            Route("/health", health),
            Route("/events", events),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ],
        middleware=[Middleware(SecurityHeaders)],
        lifespan=lifespan,
    )


class PageServer(uvicorn.Server):
    """uvicorn's server, which also tells the hub to end the open streams when asked to stop:
    uvicorn waits for every response to end before it shuts down."""

    def __init__(self, config: uvicorn.Config, hub: Hub) -> None:
        super().__init__(config)
        self.hub = hub

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.hub.closing = True
        super().handle_exit(sig, frame)


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on host:port; OSError when the address cannot be had."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    return socket.create_server((host, port), family=family)


def serve(settings: DashboardSettings) -> int:
    """Serve the page until SIGINT or SIGTERM; 2 when the address cannot be listened on."""
    configure_logging(settings.log_level)
    # kafka-python logs each retry while the broker is away; the feed says it once.
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    host, port = settings.dashboard_host, settings.dashboard_port
    try:
        sock = listen(host, port)
    except OSError as exc:
        print(
            f"dashboard: cannot listen on {host}:{port} (DASHBOARD_HOST, DASHBOARD_PORT): {exc}",
            file=sys.stderr,
        )
        return 2
    shown = f"[{host}]" if ":" in host else host
    log.info("dashboard page on http://%s:%d, broker %s", shown, port, settings.kafka_broker_url)
    hub = Hub()
    config = uvicorn.Config(
        create_app(settings, hub),
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=3,  # the streams end within a tick (TICK_SECONDS)
    )
    # uvicorn raises the stop signal again once it has shut down, to the handlers it found:
    # these only set a flag, so SIGTERM and Ctrl-C end the process with 0, as the services do.
    StopFlag.install()
    PageServer(config, hub).run(sockets=[sock])
    log.info("dashboard page stopped")
    return 0

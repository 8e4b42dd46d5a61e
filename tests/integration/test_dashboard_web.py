"""The dashboard page in a real browser: Debian's Chromium, headless, driven by Playwright.

The page's server runs as a user runs it (`python -m dashboard --web`) against a real broker:
the session's for the numbers, the markup case and the 20 clients; a broker of its own for the
outage, which stops and starts it. Each test reads topics of its own.

The first test leaves a screenshot of the page in test-artifacts/ (not committed).
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import psutil
import pytest
from playwright.sync_api import Browser, Dialog, Locator, Page, expect, sync_playwright

from dashboard.quality import ALL_RULES, HEADER_LABEL, RULES_WIDTH
from devtools.broker import JarBroker, free_port
from fraudcore.core.codec import encode, encode_key
from fraudcore.core.model import Transaction, TransactionFactory, utc_now_iso
from fraudcore.core.rule import HEADER_REASON, HEADER_RULES
from tests.http_probe import health
from tests.kafka_helpers import REPO_ROOT, Service, Topics, create_topic, produce, wait_until

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")  # Debian's: Playwright's own download is not reachable
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = REPO_ROOT / "test-artifacts"
MARKUP = "<img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        yield launched
        launched.close()


class WebServer:
    """`python -m dashboard --web` on a port of its own (or the one given), until stop()."""

    def __init__(self, env: dict[str, str], tmp_path: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.env = {**env, "DASHBOARD_PORT": str(self.port)}
        log = tmp_path / f"web-{uuid.uuid4().hex[:6]}.log"
        self.service = Service([sys.executable, "-m", "dashboard", "--web"], self.env, log)
        wait_until(self.answers, 30, f"the page's server on {self.port}")

    def answers(self) -> bool:
        assert self.service.running(), self.service.output()
        return health(self.port)[0] == 200

    def health(self) -> dict[str, object]:
        return health(self.port)[1]

    def stop(self) -> None:
        assert self.service.stop(30) == 0, self.service.output()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[list[WebServer]]:
    """Servers a test starts (append them); each is stopped after the test."""
    servers: list[WebServer] = []
    yield servers
    for server in servers:
        if server.service.running():
            server.stop()


def create_topics(bootstrap: str, topics: Topics, partitions: int) -> None:
    for name in (topics.input, topics.legit, topics.fraud, topics.invalid):
        create_topic(bootstrap, name, partitions=partitions)


def open_page(browser: Browser, url: str, dialogs: list[str] | None = None) -> Page:
    """A page in a context of its own (its own connections), live and reading its topics."""
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    if dialogs is not None:

        def record(dialog: Dialog) -> None:
            dialogs.append(dialog.message)
            dialog.dismiss()

        page.on("dialog", record)
    page.goto(url)
    expect(page.locator("#connection")).to_have_attribute("data-state", "live", timeout=15_000)
    expect(page.locator("#broker-state")).to_have_attribute("data-state", "up", timeout=30_000)
    return page


def wait_for_partitions(page: Page, count: int) -> None:
    """The reader has its partitions and the group's offsets: one lag row per input partition."""
    expect(page.locator("#lag tbody tr")).to_have_count(count, timeout=30_000)
    expect(page.locator("#lag tbody td.none")).to_have_count(0)


OpenPage = Callable[..., tuple[WebServer, Page]]


@pytest.fixture
def serve_and_open(browser: Browser, tmp_path: Path, serve: list[WebServer]) -> OpenPage:
    """open(bootstrap, topics, partitions=1, dialogs=None): the test's topics, a server reading
    them, and a page on it that has its partitions."""

    def open_on(
        bootstrap: str, topics: Topics, partitions: int = 1, dialogs: list[str] | None = None
    ) -> tuple[WebServer, Page]:
        create_topics(bootstrap, topics, partitions)
        serve.append(server := WebServer(topics.env(bootstrap), tmp_path))
        page = open_page(browser, server.url, dialogs)
        wait_for_partitions(page, partitions)
        return server, page

    return open_on


def total(page: Page, role: str) -> str:
    return f'.card[data-role="{role}"] .total span'


def row(page: Page, table: str, first_cell: str) -> Locator:
    return page.locator(f"#{table} tbody tr").filter(
        has=page.get_by_role("cell", name=first_cell, exact=True)
    )


def fraud(tx: Transaction, rules: str) -> tuple[list[tuple[bytes, bytes]], list[tuple[str, bytes]]]:
    return [(encode_key(tx), encode(tx))], [(HEADER_RULES, rules.encode())]


def test_the_page_shows_known_transactions_within_3_seconds(
    bootstrap: str, topics: Topics, serve_and_open: OpenPage
) -> None:
    _, page = serve_and_open(bootstrap, topics, partitions=2)

    factory = TransactionFactory(seed=22)
    txs = [factory.next() for _ in range(40)]
    chosen = Transaction(
        source="ACC-CHOSEN",
        target="ACC-PAYEE",
        amount=Decimal("1234.56"),
        id=f"chosen-{uuid.uuid4()}",
        timestamp=utc_now_iso(),
    )
    produce(bootstrap, topics.input, [(encode_key(t), encode(t)) for t in txs])
    produce(bootstrap, topics.legit, [(encode_key(t), encode(t)) for t in txs[:30]])
    produce(bootstrap, topics.fraud, [(encode_key(t), encode(t)) for t in txs[30:36]],
            headers=[(HEADER_RULES, b"amount")])  # fmt: skip
    produce(bootstrap, topics.fraud, [(encode_key(t), encode(t)) for t in txs[36:39]],
            headers=[(HEADER_RULES, b"amount,velocity")])  # fmt: skip
    produce(bootstrap, topics.invalid, [(None, b"{")] * 3,
            headers=[(HEADER_REASON, b"not_json: Expecting value")])  # fmt: skip
    produce(bootstrap, topics.invalid, [(None, b"[[[")] * 2,
            headers=[(HEADER_REASON, b"too_deep: nested")])  # fmt: skip
    produce(bootstrap, topics.fraud, *fraud(chosen, "amount,velocity"))
    produced_at = time.monotonic()
    deadline = produced_at + 3.0

    def within_3_s() -> float:
        return max(1.0, (deadline - time.monotonic()) * 1000)

    for role, count in (("input", "40"), ("legit", "30"), ("fraud", "10"), ("dead-letter", "5")):
        expect(page.locator(total(page, role))).to_have_text(count, timeout=within_3_s())
    expect(page.locator("#share-total")).to_have_text("25.0%", timeout=within_3_s())
    for rules, count in (("amount", "6"), ("velocity", "0"), ("amount,velocity", "4")):
        cells = row(page, "rules", rules).locator("td")
        expect(cells.nth(2)).to_have_text(count, timeout=within_3_s())
    for reason, count in (("not_json", "3"), ("too_deep", "2")):
        cells = row(page, "dead-letters", reason).locator("td")
        expect(cells.nth(1)).to_have_text(count, timeout=within_3_s())
    chosen_row = page.locator("#latest-fraud tbody tr").filter(has_text=str(chosen.id))
    expect(chosen_row.locator("td")).to_have_text(
        [
            (chosen.timestamp or "").partition("T")[2].removesuffix("Z")[:12],
            "ACC-CHOSEN",
            "ACC-PAYEE",
            "1,234.56 EUR",
            "amount,velocity",
            str(chosen.id),
        ],
        timeout=within_3_s(),
    )
    elapsed = time.monotonic() - produced_at
    assert elapsed <= 3.0, f"the page took {elapsed:.1f} s"
    expect(page.locator("#lag-total")).to_have_text("40")  # nothing committed: all 40 lag
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-page.png"), full_page=True)
    print(f"page shown {elapsed:.2f} s after the records were written; screenshot in {ARTIFACTS}")


def test_markup_in_a_transaction_shows_as_text(
    bootstrap: str, topics: Topics, serve_and_open: OpenPage
) -> None:
    dialogs: list[str] = []
    _, page = serve_and_open(bootstrap, topics, dialogs=dialogs)

    tx = Transaction(source=MARKUP, target="<script>alert(2)</script>", amount=Decimal("999"))
    produce(bootstrap, topics.fraud, *fraud(tx, "<b>bold</b>"))

    expect(page.get_by_role("cell", name=MARKUP, exact=True)).to_be_visible(timeout=10_000)
    expect(page.get_by_role("cell", name="<script>alert(2)</script>", exact=True)).to_be_visible()
    expect(page.get_by_role("cell", name="<b>bold</b>", exact=True).first).to_be_visible()
    expect(page.locator("main img")).to_have_count(0)
    expect(page.locator("main script, main b")).to_have_count(0)
    page.wait_for_timeout(1500)  # time for an onerror handler, had one been created
    assert dialogs == []


def test_the_page_shows_precision_and_recall_by_rule_as_text(
    bootstrap: str, topics: Topics, serve_and_open: OpenPage
) -> None:
    dialogs: list[str] = []
    _, page = serve_and_open(bootstrap, topics, dialogs=dialogs)
    expect(page.locator("#quality")).to_be_hidden()  # no label read yet

    factory = TransactionFactory(seed=23)
    records = [(encode_key(t), encode(t)) for t in (factory.next() for _ in range(8))]
    for role, few, rules, label in (
        (topics.fraud, records[:3], b"amount", b"card_testing"),
        (topics.fraud, records[3:4], MARKUP.encode(), b"big_ticket"),
        (topics.fraud, records[4:5], b"amount", None),
        (topics.legit, records[5:6], None, b"card_testing"),
        (topics.legit, records[6:8], None, None),
    ):
        headers = [(HEADER_RULES, rules)] if rules else []
        produce(bootstrap, role, few, headers=headers + ([(HEADER_LABEL, label)] if label else []))

    # amount: 4 alerts, 3 labelled, of 5 labelled; the markup rule: 1 of 1, of 5; the set: 4 of 5
    markup = MARKUP[: RULES_WIDTH - 1] + "…"  # a name from a record is cut, as text
    for rule, cells in (
        ("amount", ["amount", "4", "75.0%", "60.0%"]),
        (markup, [markup, "1", "100.0%", "20.0%"]),
        (ALL_RULES, [ALL_RULES, "5", "80.0%", "80.0%"]),
    ):
        expect(row(page, "quality-rules", rule).locator("td")).to_have_text(cells, timeout=10_000)
    for scenario, cells in (
        ("big_ticket", ["big_ticket", "1", "1", "0"]),
        ("card_testing", ["card_testing", "4", "3", "1"]),
    ):
        expect(row(page, "quality-scenarios", scenario).locator("td")).to_have_text(cells)
    expect(page.locator("#quality")).to_be_visible()
    expect(page.locator("main img")).to_have_count(0)
    page.wait_for_timeout(1500)  # time for an onerror handler, had one been created
    assert dialogs == []


def test_the_page_shows_the_broker_away_and_comes_back_with_it(
    topics: Topics, tmp_path: Path, serve: list[WebServer], serve_and_open: OpenPage
) -> None:
    broker = JarBroker(tmp_path / "kafka", log=tmp_path / "broker.log")  # the session's stays up
    broker.start()
    try:
        server, page = serve_and_open(broker.bootstrap, topics)

        broker.stop()
        expect(page.locator("#broker-state")).to_have_attribute(
            "data-state", "down", timeout=30_000
        )
        expect(page.locator("#banner")).to_contain_text("not answering")
        assert server.health()["broker_up"] is False

        broker.start()
        expect(page.locator("#broker-state")).to_have_attribute("data-state", "up", timeout=60_000)
        expect(page.locator("#banner")).to_be_hidden()
        produce(broker.bootstrap, topics.input, [(None, b"after the outage")] * 5)
        expect(page.locator(total(page, "input"))).to_have_text("5", timeout=30_000)
        assert server.health()["readers_opened"] == 1  # the same reader, reconnected
    finally:
        for running in serve:
            running.stop()
        broker.close()


def test_the_page_reconnects_to_a_restarted_server(
    bootstrap: str, topics: Topics, tmp_path: Path, serve: list[WebServer], serve_and_open: OpenPage
) -> None:
    first, page = serve_and_open(bootstrap, topics)

    first.stop()
    expect(page.locator("#connection")).to_have_attribute("data-state", "lost", timeout=15_000)
    expect(page.locator("#banner")).to_contain_text("server is not answering")

    serve.append(WebServer(topics.env(bootstrap), tmp_path, port=first.port))
    expect(page.locator("#connection")).to_have_attribute("data-state", "live", timeout=15_000)
    expect(page.locator("#banner")).to_be_hidden(timeout=15_000)
    wait_for_partitions(page, 1)
    produce(bootstrap, topics.input, [(None, b"after the restart")] * 3)
    expect(page.locator(total(page, "input"))).to_have_text("3", timeout=10_000)


def broker_connections(pid: int, bootstrap: str) -> int:
    """The TCP connections process `pid` holds to the broker."""
    port = int(bootstrap.rpartition(":")[2])
    connections = psutil.Process(pid).net_connections(kind="tcp")
    return sum(1 for c in connections if c.raddr and c.raddr.port == port)


def test_twenty_pages_share_one_kafka_reader(
    bootstrap: str, topics: Topics, browser: Browser, serve_and_open: OpenPage
) -> None:
    server, first = serve_and_open(bootstrap, topics)
    alone = broker_connections(server.service.pid, bootstrap)
    assert alone > 0

    pages = [first, *(open_page(browser, server.url) for _ in range(19))]
    wait_until(lambda: server.health()["clients"] == 20, 15, "20 clients on /events")
    state = server.health()
    assert (state["readers_open"], state["readers_opened"]) == (1, 1), state
    assert broker_connections(server.service.pid, bootstrap) <= alone

    produce(bootstrap, topics.input, [(None, b"seen by all")] * 7)
    for page in pages:
        expect(page.locator(total(page, "input"))).to_have_text("7", timeout=10_000)
    assert server.health()["readers_opened"] == 1

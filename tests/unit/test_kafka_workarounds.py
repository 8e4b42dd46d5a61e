"""The kafka-python internals that its adapter (fraudcore/kafka/kafka_python/) relies on are there.

Each test drives a real kafka-python 3.0.12 producer (no broker: the bootstrap address is
closed) through the internal the workaround uses. If an upgrade renames or changes it, these
fail here, loudly, rather than the workaround doing nothing in production.
"""

from __future__ import annotations

import inspect
import logging
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kafka.coordinator.base import BaseCoordinator
from kafka.coordinator.consumer import ConsumerCoordinator
from kafka.errors import KafkaError, KafkaTimeoutError, ProducerFencedError
from kafka.future import Future
from kafka.net.transport import KafkaSSLTransport, KafkaTCPTransport
from kafka.producer.sender import Sender

from fraudcore.kafka.kafka_python.sender_guard import keep_transactional_requests
from fraudcore.kafka.kafka_python.workarounds import (
    READ_ERROR_MESSAGE,
    TRANSPORT_LOGGER,
    client_io_thread_name,
    discard_producer,
    quiet_reads_after_abort,
    resume_unfinished_join,
    underlying_error,
)
from kafka import KafkaConsumer, KafkaProducer


@pytest.fixture
def producer() -> Iterator[KafkaProducer]:
    made = KafkaProducer(
        bootstrap_servers="127.0.0.1:1",  # nothing listens there
        transactional_id="workaround-test",
        api_version=(4, 0),
        max_block_ms=200,
    )
    yield made
    discard_producer(made)


def test_the_error_behind_a_refused_transactional_call_is_found(producer: KafkaProducer) -> None:
    """kafka-python names the fencing only in the text of the error it raises."""
    producer._transaction_manager.transition_to_fatal_error(ProducerFencedError())
    with pytest.raises(KafkaError) as refused:
        producer.begin_transaction()
    assert type(refused.value) is KafkaError
    assert isinstance(underlying_error(producer, refused.value), ProducerFencedError)


def test_an_error_of_a_healthy_producer_is_its_own(producer: KafkaProducer) -> None:
    timeout = KafkaTimeoutError("no broker")
    assert underlying_error(producer, timeout) is timeout


def test_a_producer_whose_close_fails_is_still_stopped(
    producer: KafkaProducer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """close(timeout=0) flushes first and raises while records are pending, before it stops
    the I/O thread; the forced close through the sender stops it all the same."""

    def pending_records(timeout: float | None = None) -> None:
        raise KafkaTimeoutError("Timeout waiting for future")

    monkeypatch.setattr(producer, "close", pending_records)
    discard_producer(producer)
    producer._sender.join(5)
    assert not producer._sender.is_alive()


def test_a_clients_network_thread_and_its_logs_carry_the_expected_name(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The health probe's kafka-python log lines are known by the thread they come from.

    A consumer, not the probe's admin client: both run on kafka-python's one I/O layer
    (kafka.net.selector), but an admin client that cannot bootstrap raises from its constructor
    and leaves its thread running. The "broker" accepts connections and never answers: a
    refused connection would leave kafka-python's socket unclosed (a ResourceWarning).
    """
    caplog.set_level(logging.DEBUG, logger="kafka")
    client_id = "workaround-io-thread"
    expected = client_io_thread_name(client_id)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        consumer = KafkaConsumer(bootstrap_servers=address, client_id=client_id, api_version=(4, 0))
        try:
            names = sorted(thread.name for thread in threading.enumerate())
            assert expected in names, (
                f"kafka-python's I/O thread is no longer {expected!r}: {names}"
            )
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not any(
                r.threadName == expected and r.name.startswith("kafka") for r in caplog.records
            ):
                time.sleep(0.05)
        finally:
            consumer.close()
    threads = {r.threadName for r in caplog.records if r.name.startswith("kafka")}
    assert expected in threads, f"no kafka log line came from {expected!r}, only from {threads}"


def _aborted_transport(cls: type[Any]) -> Any:
    """A real transport in the state an abort leaves it: closed, its socket gone."""
    transport = object.__new__(cls)
    transport._closed = True
    transport._sock = None
    return transport


@pytest.mark.parametrize("cls", [KafkaTCPTransport, KafkaSSLTransport])
def test_a_read_after_an_abort_is_not_logged_as_a_broken_connection(
    cls: type[Any], caplog: pytest.LogCaptureFixture
) -> None:
    """kafka-python reads a socket it was waiting on without checking that the transport was
    aborted meanwhile; the read fails on None and logs a traceback (seen after a refused
    transactional id). The filter drops that record for a closed transport only."""
    # The internals relied on: the message, and no check of _closed between wait and read.
    assert READ_ERROR_MESSAGE in cls._sock_recv.__code__.co_consts
    source = inspect.getsource(KafkaTCPTransport._read_from_sock)
    waited = source.index("await self._net.wait_read(self._sock)")
    assert "_closed" not in source[waited : source.index("self._sock_recv()")], (
        "kafka-python now checks for an abort before reading: drop quiet_reads_after_abort"
    )
    logger = logging.getLogger(TRANSPORT_LOGGER)
    saved = list(logger.filters)
    try:
        logger.filters.clear()
        with caplog.at_level(logging.ERROR, logger=TRANSPORT_LOGGER):
            _data, error = _aborted_transport(cls)._sock_recv()
        assert error is not None
        assert [r.exc_info is not None for r in caplog.records] == [True]  # the noise, unfiltered
        caplog.clear()
        quiet_reads_after_abort()
        quiet_reads_after_abort()  # once is enough
        assert len(logger.filters) == 1
        with caplog.at_level(logging.ERROR, logger=TRANSPORT_LOGGER):
            _data, error = _aborted_transport(cls)._sock_recv()
            live = _aborted_transport(cls)
            live._closed = False  # a live connection's read error is still logged
            live._sock_recv()
        assert error is not None
        assert len(caplog.records) == 1
    finally:
        logger.filters[:] = saved


def test_the_sender_still_drops_a_transactional_request_when_await_ready_raises() -> None:
    """What the sender guard (kafka_python/sender_guard.py) guards against: in
    _maybe_send_pending_request an
    exception from await_ready leads to a coordinator lookup and a break, and the request is
    queued again only while target_node is None (it is the coordinator by then)."""
    source = inspect.getsource(Sender._maybe_send_pending_request)
    assert "self._client.await_ready(target_node" in source
    assert "lookup_coordinator_for_request(next_request_handler)" in source
    assert "if target_node is None:\n            self._transaction_manager.retry" in source


def test_the_guard_makes_the_senders_await_ready_answer_false(producer: KafkaProducer) -> None:
    keep_transactional_requests(producer)
    keep_transactional_requests(producer)  # once is enough; twice changes nothing
    client = producer._sender._client
    assert type(client).__name__ == "_ReadyOrNot"
    assert type(client._wrapped).__name__ != "_ReadyOrNot"
    # Nothing listens on the bootstrap address: kafka-python itself would raise here.
    assert client.await_ready("no-such-node", timeout_ms=100) is False
    assert client.in_flight_request_count() == 0, "everything else goes to the real client"


@pytest.fixture
def member() -> Iterator[KafkaConsumer]:
    """A real group consumer, subscribed; its "broker" accepts connections and never answers."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        consumer = KafkaConsumer(
            bootstrap_servers=f"127.0.0.1:{silent.getsockname()[1]}",
            group_id="workaround-group",
            enable_auto_commit=False,
            api_version=(4, 0),
        )
        consumer.subscribe(["workaround-topic"])
        try:
            yield consumer
        finally:
            consumer._coordinator._join_task = None
            consumer.close(autocommit=False)


def _left_mid_rejoin(consumer: KafkaConsumer) -> Any:
    """The coordinator as a rejoin for changed metadata leaves it when poll() stopped waiting
    for the join task and the leader's assignment, inside the task, has run."""
    coordinator = consumer._coordinator
    coordinator.rejoin_needed = False  # the generation before completed
    coordinator._joined_subscription = set(consumer.subscription())
    coordinator._assignment_snapshot = coordinator._metadata_snapshot
    coordinator._join_task = Future()  # in flight, or done and never read
    return coordinator


def test_a_join_that_outlasted_poll_is_still_not_a_reason_to_rejoin(member: KafkaConsumer) -> None:
    """What resume_unfinished_join works around: the next poll() awaits a join task left in
    flight only while need_rejoin() holds, and a metadata-driven need ends in the task itself."""
    assert "while self.need_rejoin():" in inspect.getsource(BaseCoordinator.join_group_async)
    assert "self._assignment_snapshot = self._metadata_snapshot" in inspect.getsource(
        ConsumerCoordinator._perform_assignment
    )
    coordinator = _left_mid_rejoin(member)
    assert coordinator.need_rejoin() is False, (
        "kafka-python now counts a pending join as a reason to rejoin: drop resume_unfinished_join"
    )


def test_an_unfinished_join_is_rejoined_by_the_next_poll(member: KafkaConsumer) -> None:
    coordinator = member._coordinator
    coordinator.rejoin_needed = False
    resume_unfinished_join(member)  # no join in flight: nothing to finish
    assert coordinator.rejoin_needed is False
    _left_mid_rejoin(member)
    resume_unfinished_join(member)
    assert coordinator.need_rejoin() is True

"""How the detector gets over a failed transaction, without a broker (fake clients).

The same paths run for real in tests/integration/test_faults.py; here each decision is pinned:
stuck calls time out, a broken producer is replaced, the input is read again from the committed
offsets of every assigned partition, and fencing by a live twin or a wrong setup is fatal.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from kafka.errors import (
    CommitFailedError,
    IllegalStateError,
    InvalidProducerEpochError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    ProducerFencedError,
    TopicAuthorizationFailedError,
)
from kafka.structs import OffsetAndMetadata, TopicPartition

from detector.app import (
    MAX_PRODUCER_RESETS_IN_A_ROW,
    Detector,
    FatalDetectorError,
)
from detector.config import DetectorSettings
from fraudcore.errors import ClientError, TransactionStalledError
from fraudcore.kafka_port import Consumer, Producer
from fraudcore.kafka_workarounds import call_with_deadline
from fraudcore.runtime import StopFlag
from tests.fakes import FakeClock
from tests.samples import tutorial_record

HANG = "hang"
REBALANCE = "rebalance"  # in FakeConsumer.batches: poll() revokes the partitions first
INPUT = "in"
TPS = [TopicPartition(INPUT, p) for p in range(3)]
COMMITTED = {TPS[0]: 10, TPS[1]: None, TPS[2]: 7}


@dataclass
class Rec:
    offset: int
    partition: int = 0
    topic: str = INPUT
    key: bytes = b"k"
    value: bytes = field(default_factory=lambda: tutorial_record(5.0))
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    timestamp: int = 0


class FakeFuture:
    def __init__(self) -> None:
        self.errbacks: list[Callable[[BaseException], None]] = []

    def add_errback(self, callback: Callable[[BaseException], None]) -> FakeFuture:
        self.errbacks.append(callback)
        return self


class FakeTransactionManager:
    """What fraudcore.kafka_workarounds.underlying_error reads of kafka-python's."""

    def __init__(self) -> None:
        self.last_error: BaseException | None = None

    def has_error(self) -> bool:
        return self.last_error is not None


class FakeProducer:
    """Fails or hangs in the methods named in `fail`; records every call.

    `fail_sends`: the outputs sent so far fail with it when they complete, at the next flush
    (as kafka-python fails a batch's futures); `error_state`: the transaction manager's error.
    """

    def __init__(
        self,
        fail_sends: BaseException | None = None,
        error_state: BaseException | None = None,
        **fail: object,
    ) -> None:
        self.fail = fail
        self.fail_sends = fail_sends
        self.calls: list[str] = []
        self.closed = False
        self.release = threading.Event()  # lets a hung call return at the end of the test
        self.unfinished: list[FakeFuture] = []
        self._transaction_manager = FakeTransactionManager()
        self._transaction_manager.last_error = error_state

    def _call(self, name: str) -> None:
        self.calls.append(name)
        failure = self.fail.get(name)
        if failure == HANG:
            self.release.wait(10)
        elif isinstance(failure, BaseException):
            raise failure

    def begin_transaction(self) -> None:
        self._call("begin_transaction")

    def send(self, topic: str, **_record: Any) -> FakeFuture:
        self._call("send")
        future = FakeFuture()
        self.unfinished.append(future)
        return future

    def send_offsets_to_transaction(self, offsets: object, group: object) -> None:
        self._call("send_offsets_to_transaction")

    def commit_transaction(self) -> None:
        self._call("commit_transaction")

    def abort_transaction(self) -> None:
        self._call("abort_transaction")

    def flush(self, timeout: float | None = None) -> None:
        self._call("flush")
        done, self.unfinished = self.unfinished, []
        if self.fail_sends is not None:
            for future in done:
                for errback in future.errbacks:
                    errback(self.fail_sends)

    def close(self, timeout: float | None = None) -> None:
        self.closed = True


class FakeConsumer:
    def __init__(self) -> None:
        self.batches: list[Any] = []  # what poll() returns, or raises
        self.positions: dict[TopicPartition, int] = {}

    def subscribe(self, topics: list[str], listener: Any) -> None:
        self.listener = listener

    def poll(self, timeout_ms: int) -> dict[TopicPartition, list[Rec]]:
        if self.batches and self.batches[0] == REBALANCE:
            # kafka-python runs the listener inside poll() and wraps what it raises
            self.batches.pop(0)
            try:
                self.listener.on_partitions_revoked(set(TPS))
            except Exception as exc:
                raise KafkaError("User rebalance callback throws an error") from exc
        if self.batches and isinstance(self.batches[0], BaseException):
            raise self.batches.pop(0)
        return self.batches.pop(0) if self.batches else {}

    def assignment(self) -> set[TopicPartition]:
        return set(TPS)

    def committed(self, tp: TopicPartition, metadata: bool = False) -> Any:
        offset = COMMITTED[tp]
        if not metadata or offset is None:
            return offset
        return OffsetAndMetadata(offset, "", -1)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.positions[tp] = offset

    def seek_to_beginning(self, tp: TopicPartition) -> None:
        self.positions[tp] = 0

    def group_metadata(self) -> str:
        return "group"

    def highwater(self, tp: TopicPartition) -> None:
        return None


@pytest.fixture
def producers() -> Iterator[list[FakeProducer]]:
    made: list[FakeProducer] = []
    yield made
    for producer in made:
        producer.release.set()


def detector(
    first: FakeProducer,
    replacements: list[FakeProducer],
    guarantee: str = "exactly_once",
    clock: Callable[[], float] = time.monotonic,
    transactional_id: str | None = None,
) -> tuple[Detector, FakeConsumer]:
    settings = DetectorSettings(
        transactional_id=transactional_id,
        transactions_topic=INPUT,
        processing_guarantee=guarantee,
        transaction_timeout_ms=300,
        # commits only when the test says so: never due, and every poll of feed() is full
        commit_interval_ms=60_000,
        max_poll_records=FEED_RECORDS,
    )
    queue = list(replacements)
    consumer = FakeConsumer()
    # The fakes stand for kafka-python's clients, behind the real port (fraudcore/kafka_port.py).
    made = Detector(
        settings,
        Consumer(consumer),
        Producer(first),
        StopFlag(),
        clock,
        new_producer=lambda: Producer(queue.pop(0)),
    )
    made.subscribe()
    return made, consumer


FEED_RECORDS = 3


def feed(consumer: FakeConsumer, made: Detector) -> None:
    consumer.batches.append({TPS[0]: [Rec(10), Rec(11)], TPS[2]: [Rec(7, partition=2)]})
    made.poll_once()


REWOUND = {TPS[0]: 10, TPS[1]: 0, TPS[2]: 7}


def test_call_with_deadline() -> None:
    call_with_deadline(lambda: None, 1, "nothing")
    with pytest.raises(InvalidProducerEpochError):
        call_with_deadline(_raise(InvalidProducerEpochError()), 1, "failing")
    release = threading.Event()
    started = time.monotonic()
    with pytest.raises(TransactionStalledError, match=r"stuck did not complete within 0\.2s"):
        call_with_deadline(lambda: _wait(release), 0.2, "stuck")
    assert time.monotonic() - started < 2
    release.set()


def _wait(event: threading.Event) -> None:
    event.wait(10)


def _raise(exc: BaseException) -> Callable[[], None]:
    def fail() -> None:
        raise exc

    return fail


def test_a_commit_that_fails_is_aborted_and_the_input_rewound(
    producers: list[FakeProducer],
) -> None:
    producers.append(FakeProducer(commit_transaction=KafkaTimeoutError()))
    made, consumer = detector(producers[0], [])
    feed(consumer, made)
    made.commit()
    assert producers[0].calls[-2:] == ["commit_transaction", "abort_transaction"]
    assert made.producer.client is producers[0]
    assert consumer.positions == REWOUND


def test_a_stuck_commit_and_abort_get_the_producer_replaced(producers: list[FakeProducer]) -> None:
    producers += [FakeProducer(commit_transaction=HANG, abort_transaction=HANG), FakeProducer()]
    made, consumer = detector(producers[0], [producers[1]])
    feed(consumer, made)
    started = time.monotonic()
    made.commit()
    assert time.monotonic() - started < 3  # two deadlines of 0.3 s, not forever
    assert made.producer.client is producers[1]
    assert producers[0].closed
    assert consumer.positions == REWOUND
    feed(consumer, made)  # the new producer takes the next batch
    made.commit()
    assert producers[1].calls[-3:] == ["send_offsets_to_transaction", "flush", "commit_transaction"]


def test_fencing_of_a_young_transaction_is_fatal(producers: list[FakeProducer]) -> None:
    """Younger than TRANSACTION_TIMEOUT_MS the broker did not abort it: a twin took over."""
    producers.append(FakeProducer(commit_transaction=ProducerFencedError()))
    made, consumer = detector(producers[0], [FakeProducer()], clock=FakeClock())
    feed(consumer, made)
    with pytest.raises(FatalDetectorError, match="fenced"):
        made.commit()


def test_fencing_of_a_timed_out_transaction_replaces_the_producer(
    producers: list[FakeProducer],
) -> None:
    """Older than its timeout (a broker outage, say), the broker aborted it: start afresh."""
    clock = FakeClock()
    producers += [FakeProducer(commit_transaction=ProducerFencedError()), FakeProducer()]
    made, consumer = detector(producers[0], [producers[1]], clock=clock)
    feed(consumer, made)
    clock.now += 1  # > 0.3 s
    made.commit()
    assert made.producer.client is producers[1]
    assert "abort_transaction" not in producers[0].calls  # a fenced producer cannot abort
    assert consumer.positions == REWOUND


def test_a_record_the_producer_refuses_undoes_the_whole_batch(
    producers: list[FakeProducer],
) -> None:
    """The failure comes before any partition of the batch is recorded: all are rewound."""
    producers += [FakeProducer(send=IllegalStateError("Cannot call send in state READY"))]
    made, consumer = detector(producers[0], [])
    feed(consumer, made)
    assert producers[0].calls == ["begin_transaction", "send", "abort_transaction"]
    assert consumer.positions == REWOUND
    made.commit()  # nothing left to commit
    assert "commit_transaction" not in producers[0].calls


def test_at_least_once_send_failure_rewinds_after_a_flush(producers: list[FakeProducer]) -> None:
    producers += [FakeProducer(send=KafkaTimeoutError())]
    made, consumer = detector(producers[0], [], guarantee="at_least_once")
    feed(consumer, made)
    assert producers[0].calls == ["send", "flush"]
    assert consumer.positions == REWOUND


def test_a_missing_permission_is_fatal(producers: list[FakeProducer]) -> None:
    producers.append(FakeProducer(commit_transaction=TopicAuthorizationFailedError()))
    made, consumer = detector(producers[0], [FakeProducer()])
    feed(consumer, made)
    with pytest.raises(FatalDetectorError):
        made.commit()


def test_a_producer_failing_again_and_again_is_given_up(producers: list[FakeProducer]) -> None:
    producers += [
        FakeProducer(commit_transaction=InvalidProducerEpochError())
        for _ in range(MAX_PRODUCER_RESETS_IN_A_ROW + 1)
    ]
    clock = FakeClock()
    made, consumer = detector(producers[0], producers[1:], clock=clock)
    for _ in range(MAX_PRODUCER_RESETS_IN_A_ROW):
        feed(consumer, made)
        clock.now += 1  # older than its timeout: the broker aborted it, so not a twin's fencing
        made.commit()
    feed(consumer, made)
    clock.now += 1
    with pytest.raises(FatalDetectorError, match="in a row"):
        made.commit()


def test_poll_failing_while_the_broker_is_away_is_retried(producers: list[FakeProducer]) -> None:
    """kafka-python's poll() raises connection errors during an outage: not a reason to stop."""
    producers.append(FakeProducer())
    made, consumer = detector(producers[0], [])
    consumer.batches.append(KafkaConnectionError("111 ECONNREFUSED"))
    made.poll_once()
    feed(consumer, made)
    assert producers[0].calls == ["begin_transaction", "send", "send", "send"]
    consumer.batches.append(CommitFailedError("not retriable"))
    with pytest.raises(ClientError) as failed:
        made.poll_once()
    assert isinstance(failed.value.cause, CommitFailedError)


@pytest.mark.parametrize("guarantee", ["exactly_once", "at_least_once"])
def test_only_exactly_once_commits_as_soon_as_a_poll_is_not_full(
    producers: list[FakeProducer], guarantee: str
) -> None:
    """exactly_once outputs are invisible until the commit; at_least_once ones are not."""
    producers.append(FakeProducer())
    made, consumer = detector(producers[0], [], guarantee)
    feed(consumer, made)  # a full poll: the batch stays open
    assert "commit_transaction" not in producers[0].calls
    assert "flush" not in producers[0].calls
    consumer.batches.append({TPS[1]: [Rec(0, partition=1)]})  # less than a full poll
    made.poll_once()
    if guarantee == "exactly_once":
        assert producers[0].calls[-3:] == [
            "send_offsets_to_transaction",
            "flush",
            "commit_transaction",
        ]
    else:
        assert "flush" not in producers[0].calls  # waits for COMMIT_INTERVAL_MS


# --- exactly_once never commits a transaction with an output that was not written (issue 10)


def test_a_failed_output_aborts_the_transaction_instead_of_committing(
    producers: list[FakeProducer],
) -> None:
    """kafka-python may still commit such a transaction; the detector must not ask it to."""
    producers.append(FakeProducer(fail_sends=KafkaTimeoutError("delivery timed out")))
    made, consumer = detector(producers[0], [])
    feed(consumer, made)
    made.commit()
    assert producers[0].calls[-3:] == ["send_offsets_to_transaction", "flush", "abort_transaction"]
    assert "commit_transaction" not in producers[0].calls
    assert consumer.positions == REWOUND
    assert made.producer.client is producers[0]  # an abort was all it took


def test_an_epoch_bump_in_the_middle_of_a_transaction_is_fatal_when_young(
    producers: list[FakeProducer],
) -> None:
    """INVALID_PRODUCER_EPOCH for a batch of a young transaction: a twin fenced this producer
    (kafka-python then bumps the epoch and would report the commit as done)."""
    producers.append(FakeProducer(fail_sends=InvalidProducerEpochError()))
    made, consumer = detector(
        producers[0], [FakeProducer()], clock=FakeClock(), transactional_id="t"
    )
    feed(consumer, made)
    with pytest.raises(FatalDetectorError, match="TRANSACTIONAL_ID='t'"):
        made.commit()
    assert "commit_transaction" not in producers[0].calls
    assert "abort_transaction" not in producers[0].calls  # fencing is never a path to commit


def test_an_epoch_bump_of_a_timed_out_transaction_replaces_the_producer(
    producers: list[FakeProducer],
) -> None:
    clock = FakeClock()
    producers += [FakeProducer(fail_sends=InvalidProducerEpochError()), FakeProducer()]
    made, consumer = detector(producers[0], [producers[1]], clock=clock)
    feed(consumer, made)
    clock.now += 1  # > TRANSACTION_TIMEOUT_MS: the broker aborted it
    made.commit()
    assert "commit_transaction" not in producers[0].calls
    assert made.producer.client is producers[1]
    assert producers[0].closed
    assert consumer.positions == REWOUND


def test_a_fatal_error_in_the_middle_of_a_batch_stops_without_a_commit(
    producers: list[FakeProducer],
) -> None:
    """Fenced mid-batch, kafka-python refuses the next send with a plain KafkaError."""
    refused = KafkaError("Cannot perform send because at least one previous transactional or")
    producers.append(FakeProducer(error_state=ProducerFencedError(), send=refused))
    made, consumer = detector(
        producers[0], [FakeProducer()], clock=FakeClock(), transactional_id="t"
    )
    with pytest.raises(FatalDetectorError, match="another detector uses the same TRANSACTIONAL_ID"):
        feed(consumer, made)
    assert producers[0].calls == ["begin_transaction", "send"]


def test_a_failed_commit_at_revocation_rewinds_before_anything_more_is_processed(
    producers: list[FakeProducer],
) -> None:
    """The listener runs inside poll(), whose records may lie past the committed offsets:
    kafka-python keeps the position of a partition that stays assigned."""
    producers.append(FakeProducer(commit_transaction=KafkaTimeoutError()))
    made, consumer = detector(producers[0], [])
    feed(consumer, made)
    consumer.batches += [REBALANCE, {TPS[0]: [Rec(12)]}]
    made.poll_once()
    assert producers[0].calls[-2:] == ["commit_transaction", "abort_transaction"]
    assert producers[0].calls.count("send") == 3  # offset 12 was dropped, not sent
    assert consumer.positions == REWOUND
    assert made._checkpoint is None  # nothing of that batch is left to commit


def test_fencing_at_revocation_stops_the_detector(producers: list[FakeProducer]) -> None:
    """kafka-python wraps what the listener raises: the detector's own error comes out."""
    producers.append(FakeProducer(commit_transaction=ProducerFencedError()))
    made, consumer = detector(producers[0], [FakeProducer()], clock=FakeClock())
    feed(consumer, made)
    consumer.batches.append(REBALANCE)
    with pytest.raises(FatalDetectorError, match="fenced"):
        made.poll_once()


def test_at_least_once_an_epoch_error_of_an_output_only_rewinds(
    producers: list[FakeProducer],
) -> None:
    """No transactional id, no fencing: kafka-python bumps an idempotent producer's epoch."""
    producers.append(FakeProducer(fail_sends=InvalidProducerEpochError()))
    made, consumer = detector(producers[0], [], guarantee="at_least_once", clock=FakeClock())
    feed(consumer, made)
    made.commit()
    assert consumer.positions == REWOUND
    assert made.producer.client is producers[0]


def test_a_send_refused_after_kafka_python_left_a_fenced_transaction_stops(
    producers: list[FakeProducer],
) -> None:
    """A batch of the open transaction failed with INVALID_PRODUCER_EPOCH (its errback ran on
    the I/O thread); kafka-python bumped the epoch and left the transaction, so the next send
    is refused with a plain IllegalStateError. That is the fencing, and it stops the detector."""
    producers.append(FakeProducer())
    made, consumer = detector(
        producers[0], [FakeProducer()], clock=FakeClock(), transactional_id="t"
    )
    feed(consumer, made)  # a full poll: the transaction stays open
    for future in producers[0].unfinished:
        for errback in future.errbacks:
            errback(InvalidProducerEpochError())
    producers[0].fail["send"] = IllegalStateError("Cannot call send in state READY")
    with pytest.raises(FatalDetectorError, match="another detector uses the same TRANSACTIONAL_ID"):
        feed(consumer, made)
    assert "commit_transaction" not in producers[0].calls
    assert "abort_transaction" not in producers[0].calls

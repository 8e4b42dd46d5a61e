"""How the detector gets over a failed batch, on the fake Kafka port (tests/fakes.py).

The same paths run for real in tests/integration/test_faults.py; here each plan is pinned:
stuck calls time out, a broken producer is replaced, the input is read again from the committed
offsets of every assigned partition, and fencing by a live twin or a wrong setup is fatal. How
kafka-python's own errors reach the port is tests/unit/test_kafka_python_adapter.py's.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from detector.app import Detector, FatalDetectorError, PartitionState
from detector.config import DetectorSettings
from fraudcore.error_policy import MAX_PRODUCER_RESETS_IN_A_ROW
from fraudcore.errors import (
    ClientError,
    FencedError,
    NotAllowedError,
    RetriableClientError,
)
from fraudcore.kafka.types import Committed, Record, TopicPartition
from fraudcore.runtime import StopFlag
from tests.fakes import HANG, REBALANCE, Assign, FakeClock, FakeConsumer, FakeProducer, Revoke
from tests.samples import tutorial_record

INPUT = "in"
TPS = [TopicPartition(INPUT, p) for p in range(3)]
COMMITTED = {TPS[0]: Committed(10), TPS[1]: None, TPS[2]: Committed(7)}


def rec(offset: int, partition: int = 0) -> Record:
    return Record(INPUT, partition, offset, 0, b"k", tutorial_record(5.0), [])


@pytest.fixture
def producers() -> list[FakeProducer]:
    return []


def detector(
    first: FakeProducer,
    replacements: list[FakeProducer],
    guarantee: str = "exactly_once",
    clock: Callable[[], float] = time.monotonic,
    transactional_id: str | None = None,
) -> tuple[Detector, FakeConsumer]:
    """A detector on the fake port that has joined the group: every partition assigned and
    restored; the positions that restore set are forgotten, so that a rewind shows."""
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
    consumer = FakeConsumer(TPS, COMMITTED, FEED_RECORDS)
    made = Detector(settings, consumer, first, StopFlag(), clock, new_producer=lambda: queue.pop(0))
    made.subscribe()
    made.poll_once()  # joins: all partitions assigned, restored at their commits
    consumer.positions.clear()
    return made, consumer


FEED_RECORDS = 3


def feed(consumer: FakeConsumer, made: Detector) -> None:
    consumer.polls.append({TPS[0]: [rec(10), rec(11)], TPS[2]: [rec(7, partition=2)]})
    made.poll_once()


REWOUND = {TPS[0]: 10, TPS[1]: 0, TPS[2]: 7}


def test_a_commit_that_fails_is_aborted_and_the_input_rewound(
    producers: list[FakeProducer],
) -> None:
    producers.append(FakeProducer(commit_transaction=RetriableClientError("timeout")))
    made, consumer = detector(producers[0], [])
    feed(consumer, made)
    made.commit()
    assert producers[0].calls[-2:] == ["commit_transaction", "abort_transaction"]
    assert made.producer is producers[0]
    assert consumer.positions == REWOUND


def test_a_stuck_commit_and_abort_get_the_producer_replaced(producers: list[FakeProducer]) -> None:
    producers += [FakeProducer(commit_transaction=HANG, abort_transaction=HANG), FakeProducer()]
    made, consumer = detector(producers[0], [producers[1]])
    feed(consumer, made)
    started = time.monotonic()
    made.commit()
    assert time.monotonic() - started < 3  # two deadlines of 0.3 s, not forever
    assert made.producer is producers[1]
    assert producers[0].discarded
    assert consumer.positions == REWOUND
    feed(consumer, made)  # the new producer takes the next batch
    made.commit()
    assert producers[1].calls[-3:] == ["send_offsets_to_transaction", "flush", "commit_transaction"]


def test_fencing_of_a_young_transaction_is_fatal(producers: list[FakeProducer]) -> None:
    """Younger than TRANSACTION_TIMEOUT_MS the broker did not abort it: a twin took over."""
    producers.append(FakeProducer(commit_transaction=FencedError("fenced")))
    made, consumer = detector(producers[0], [FakeProducer()], clock=FakeClock())
    feed(consumer, made)
    with pytest.raises(FatalDetectorError, match="fenced"):
        made.commit()


def test_fencing_of_a_timed_out_transaction_replaces_the_producer(
    producers: list[FakeProducer],
) -> None:
    """Older than its timeout (a broker outage, say), the broker aborted it: start afresh."""
    clock = FakeClock()
    producers += [FakeProducer(commit_transaction=FencedError("fenced")), FakeProducer()]
    made, consumer = detector(producers[0], [producers[1]], clock=clock)
    feed(consumer, made)
    clock.now += 1  # > 0.3 s
    made.commit()
    assert made.producer is producers[1]
    assert "abort_transaction" not in producers[0].calls  # a fenced producer cannot abort
    assert consumer.positions == REWOUND


def test_a_record_the_producer_refuses_undoes_the_whole_batch(
    producers: list[FakeProducer],
) -> None:
    """The failure comes before any partition of the batch is recorded: all are rewound."""
    producers += [
        FakeProducer(send=ClientError("IllegalStateError: Cannot call send in state READY"))
    ]
    made, consumer = detector(producers[0], [])
    feed(consumer, made)
    assert producers[0].calls == ["begin_transaction", "send", "abort_transaction"]
    assert consumer.positions == REWOUND
    made.commit()  # nothing left to commit
    assert "commit_transaction" not in producers[0].calls


def test_at_least_once_send_failure_rewinds_after_a_flush(producers: list[FakeProducer]) -> None:
    producers += [FakeProducer(send=RetriableClientError("KafkaTimeoutError"))]
    made, consumer = detector(producers[0], [], guarantee="at_least_once")
    feed(consumer, made)
    assert producers[0].calls == ["send", "flush"]
    assert consumer.positions == REWOUND


def test_a_missing_permission_is_fatal(producers: list[FakeProducer]) -> None:
    producers.append(
        FakeProducer(commit_transaction=NotAllowedError("TopicAuthorizationFailedError"))
    )
    made, consumer = detector(producers[0], [FakeProducer()])
    feed(consumer, made)
    with pytest.raises(FatalDetectorError):
        made.commit()


def test_a_producer_failing_again_and_again_is_given_up(producers: list[FakeProducer]) -> None:
    producers += [
        FakeProducer(commit_transaction=FencedError("InvalidProducerEpochError"))
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
    consumer.polls.append(RetriableClientError("KafkaConnectionError: 111 ECONNREFUSED"))
    made.poll_once()
    feed(consumer, made)
    assert producers[0].calls == ["begin_transaction", "send", "send", "send"]
    cause = RuntimeError("CommitFailedError: not retriable")
    consumer.polls.append(ClientError("commit failed", cause))
    with pytest.raises(ClientError) as failed:
        made.poll_once()
    assert failed.value.cause is cause


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
    consumer.polls.append({TPS[1]: [rec(0, partition=1)]})  # less than a full poll
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
    producers.append(FakeProducer(fail_sends=RetriableClientError("delivery timed out")))
    made, consumer = detector(producers[0], [])
    feed(consumer, made)
    made.commit()
    assert producers[0].calls[-3:] == ["send_offsets_to_transaction", "flush", "abort_transaction"]
    assert "commit_transaction" not in producers[0].calls
    assert consumer.positions == REWOUND
    assert made.producer is producers[0]  # an abort was all it took


def test_an_epoch_bump_in_the_middle_of_a_transaction_is_fatal_when_young(
    producers: list[FakeProducer],
) -> None:
    """INVALID_PRODUCER_EPOCH for a batch of a young transaction: a twin fenced this producer
    (kafka-python then bumps the epoch and would report the commit as done)."""
    producers.append(FakeProducer(fail_sends=FencedError("InvalidProducerEpochError")))
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
    producers += [FakeProducer(fail_sends=FencedError("InvalidProducerEpochError")), FakeProducer()]
    made, consumer = detector(producers[0], [producers[1]], clock=clock)
    feed(consumer, made)
    clock.now += 1  # > TRANSACTION_TIMEOUT_MS: the broker aborted it
    made.commit()
    assert "commit_transaction" not in producers[0].calls
    assert made.producer is producers[1]
    assert producers[0].discarded
    assert consumer.positions == REWOUND


def test_a_fatal_error_in_the_middle_of_a_batch_stops_without_a_commit(
    producers: list[FakeProducer],
) -> None:
    """Fenced mid-batch, kafka-python refuses the next send with a plain KafkaError."""
    refused = FencedError("ProducerFencedError (refused: the producer is in its error state)")
    producers.append(FakeProducer(send=refused))
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
    producers.append(FakeProducer(commit_transaction=RetriableClientError("timeout")))
    made, consumer = detector(producers[0], [])
    feed(consumer, made)
    consumer.polls += [REBALANCE, {TPS[0]: [rec(12)]}]
    made.poll_once()
    assert producers[0].calls[-2:] == ["commit_transaction", "abort_transaction"]
    assert producers[0].calls.count("send") == 3  # offset 12 was dropped, not sent
    assert consumer.positions == REWOUND
    assert made._checkpoint is None  # nothing of that batch is left to commit


def test_fencing_at_revocation_stops_the_detector(producers: list[FakeProducer]) -> None:
    """kafka-python wraps what the listener raises: the detector's own error comes out."""
    producers.append(FakeProducer(commit_transaction=FencedError("fenced")))
    made, consumer = detector(producers[0], [FakeProducer()], clock=FakeClock())
    feed(consumer, made)
    consumer.polls.append(REBALANCE)
    with pytest.raises(FatalDetectorError, match="fenced"):
        made.poll_once()


def test_at_least_once_an_epoch_error_of_an_output_only_rewinds(
    producers: list[FakeProducer],
) -> None:
    """No transactional id, no fencing: kafka-python bumps an idempotent producer's epoch."""
    producers.append(FakeProducer(fail_sends=FencedError("InvalidProducerEpochError")))
    made, consumer = detector(producers[0], [], guarantee="at_least_once", clock=FakeClock())
    feed(consumer, made)
    made.commit()
    assert consumer.positions == REWOUND
    assert made.producer is producers[0]


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
    producers[0].fail_unanswered(FencedError("InvalidProducerEpochError"))
    producers[0].fail["send"] = ClientError("IllegalStateError: Cannot call send in state READY")
    with pytest.raises(FatalDetectorError, match="another detector uses the same TRANSACTIONAL_ID"):
        feed(consumer, made)
    assert "commit_transaction" not in producers[0].calls
    assert "abort_transaction" not in producers[0].calls


# --- one owner per batch, and partitions restored one by one


def committed_totals(made: Detector) -> dict[str, float]:
    registry = made.metrics.registry
    return {
        verdict: registry.get_sample_value(
            "fraud_detector_transactions_total", {"verdict": verdict}
        )
        or 0.0
        for verdict in ("legit", "fraud", "invalid")
    }


@pytest.mark.parametrize("guarantee", ["exactly_once", "at_least_once"])
def test_the_stats_line_counts_what_committed_as_the_metrics_do(
    producers: list[FakeProducer], guarantee: str
) -> None:
    """A batch that aborts is read and counted again: counted at routing time, the stats line
    would count it twice."""
    producers += [FakeProducer(fail_sends=RetriableClientError("delivery timed out"))]
    made, consumer = detector(producers[0], [], guarantee)
    feed(consumer, made)
    made.commit()  # fails: aborted (exactly_once) or rewound (at_least_once)
    assert dict(made.stats.totals) == {}
    assert committed_totals(made) == {"legit": 0, "fraud": 0, "invalid": 0}
    producers[0].fail_sends = None
    feed(consumer, made)
    made.commit()
    assert made.stats.totals["legit"] == 3
    stats = {name: float(made.stats.totals[name]) for name in ("legit", "fraud", "invalid")}
    assert stats == committed_totals(made) == {"legit": 3, "fraud": 0, "invalid": 0}


def test_a_new_partition_is_restored_while_the_others_records_are_processed(
    producers: list[FakeProducer],
) -> None:
    """Assigned mid-stream, a partition is paused and sought to its commit; the same poll's
    records of partitions already active are processed, and the new one's read from its
    commit."""
    producers.append(FakeProducer())
    made, consumer = detector(producers[0], [])
    new = TopicPartition(INPUT, 3)
    consumer.commits[new] = Committed(4)
    consumer.polls += [Assign(new), {TPS[0]: [rec(10)], new: [rec(9, partition=3)]}]
    made.poll_once()
    assert consumer.positions == {new: 4}  # restored at its commit; TPS[0] left as it was
    assert producers[0].calls.count("send") == 1  # offset 10 of TPS[0]; new's 9 is read again
    assert consumer.paused == set()  # resumed once restored
    assert made.partitions[new] is PartitionState.ACTIVE
    consumer.polls.append({new: [rec(4, partition=3)]})
    made.poll_once()
    assert producers[0].calls.count("send") == 2


def test_a_partition_is_paused_while_it_is_restored(producers: list[FakeProducer]) -> None:
    producers.append(FakeProducer())
    made, consumer = detector(producers[0], [])
    paused_during: list[set[TopicPartition]] = []
    committed = consumer.committed

    def looking(tp: TopicPartition) -> Committed | None:
        paused_during.append(set(consumer.paused))
        return committed(tp)

    consumer.committed = looking  # type: ignore[method-assign]
    new = TopicPartition(INPUT, 3)
    consumer.polls.append(Assign(new))
    made.poll_once()
    assert paused_during == [{new}]


def test_a_failed_commit_when_one_partition_goes_rewinds_those_that_stay(
    producers: list[FakeProducer],
) -> None:
    """Incremental revocation: the partitions that stay keep their positions in the client, past
    the committed offsets of the batch that failed; they are rewound before the poll's records
    for them are processed."""
    producers.append(FakeProducer(commit_transaction=RetriableClientError("timeout")))
    made, consumer = detector(producers[0], [])
    feed(consumer, made)
    consumer.polls += [Revoke(TPS[2]), {TPS[0]: [rec(12)]}]
    made.poll_once()
    assert producers[0].calls[-2:] == ["commit_transaction", "abort_transaction"]
    assert producers[0].calls.count("send") == 3  # offset 12 was dropped, not sent
    assert consumer.positions == {TPS[0]: 10, TPS[1]: 0}
    assert set(made.partitions) == {TPS[0], TPS[1]}
    assert made._checkpoint is None

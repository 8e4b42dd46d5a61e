"""The batch's one owner (fraudcore/checkpoint.py): its states and their legal transitions, and
what its observers hear: a committed batch's tally once, an aborted or abandoned one's never."""

from __future__ import annotations

import pytest

from fraudcore.checkpoint import (
    ENDED,
    TRANSITIONS,
    BatchState,
    BatchTally,
    Checkpoint,
    IllegalTransitionError,
)
from fraudcore.core.rule import Verdict
from fraudcore.errors import ClientError, FencedError, OutputNotWrittenError, RetriableClientError
from fraudcore.kafka.types import TopicPartition
from tests.fakes import FakeConsumer, FakeProducer

TP = TopicPartition("in", 0)

LEGAL = {
    (BatchState.OPEN, BatchState.COMMITTING),
    (BatchState.OPEN, BatchState.FAILED),
    (BatchState.COMMITTING, BatchState.COMMITTED),
    (BatchState.COMMITTING, BatchState.FAILED),
    (BatchState.FAILED, BatchState.ABORTING),
    (BatchState.FAILED, BatchState.ABANDONED),
    (BatchState.ABORTING, BatchState.ABORTED),
    (BatchState.ABORTING, BatchState.ABANDONED),
}


def test_the_table_lists_exactly_the_legal_transitions() -> None:
    listed = {(start, end) for start, onward in TRANSITIONS.items() for end in onward}
    assert listed == LEGAL
    assert {BatchState.COMMITTED, BatchState.ABORTED, BatchState.ABANDONED} == ENDED


class Heard:
    """A BatchObserver that keeps what it heard."""

    def __init__(self) -> None:
        self.events: list[tuple[str, BatchState | None, int]] = []

    def batch_opened(self) -> None:
        self.events.append(("opened", None, 0))

    def batch_ended(self, state: BatchState, tally: BatchTally, transaction: bool) -> None:
        self.events.append(("ended", state, sum(map(len, tally.timestamps.values()))))


def state_of(checkpoint: Checkpoint) -> BatchState:
    return checkpoint.state


def batch(producer: FakeProducer, transactional: bool = True) -> tuple[Checkpoint, Heard]:
    heard = Heard()
    checkpoint = Checkpoint(
        producer,
        FakeConsumer([TP], {}, 10),
        transactional=transactional,
        timeout=1.0,
        observers=[heard],
    )
    checkpoint.begin()
    checkpoint.tally.routed(Verdict.LEGIT, 5)
    checkpoint.send([("legit", b"k", b"v", None)])
    checkpoint.processed(TP, 1)
    return checkpoint, heard


def test_a_committed_batch_is_heard_once_with_its_tally() -> None:
    producer = FakeProducer()
    checkpoint, heard = batch(producer)
    checkpoint.commit()
    assert checkpoint.state is BatchState.COMMITTED
    assert heard.events == [("opened", None, 0), ("ended", BatchState.COMMITTED, 1)]
    assert producer.calls[-3:] == ["send_offsets_to_transaction", "flush", "commit_transaction"]
    with pytest.raises(IllegalTransitionError, match="COMMITTED to COMMITTING"):
        checkpoint.commit()


def test_a_failed_output_fails_the_commit_and_the_abort_ends_it() -> None:
    producer = FakeProducer(fail_sends=RetriableClientError("delivery timed out"))
    checkpoint, heard = batch(producer)
    with pytest.raises(OutputNotWrittenError, match="1 output"):
        checkpoint.commit()
    assert checkpoint.state is BatchState.FAILED
    assert "commit_transaction" not in producer.calls
    checkpoint.abort()
    assert state_of(checkpoint) is BatchState.ABORTED
    assert heard.events[-1] == ("ended", BatchState.ABORTED, 1)


def test_a_failed_abort_leaves_the_batch_abandoned() -> None:
    producer = FakeProducer(commit_transaction=RetriableClientError("timeout"))
    producer.fail["abort_transaction"] = ClientError("epoch bumped")
    checkpoint, heard = batch(producer)
    with pytest.raises(RetriableClientError):
        checkpoint.commit()
    with pytest.raises(ClientError, match="epoch bumped"):
        checkpoint.abort()
    assert checkpoint.state is BatchState.ABANDONED
    assert [event[1] for event in heard.events] == [None, BatchState.ABANDONED]


def test_an_open_batch_cannot_be_aborted_without_failing_first() -> None:
    checkpoint, _ = batch(FakeProducer())
    with pytest.raises(IllegalTransitionError):
        checkpoint.abort()


def test_fencing_that_failed_an_output_is_the_cause_not_the_later_refusal() -> None:
    producer = FakeProducer()
    checkpoint, _ = batch(producer)
    producer.fail_unanswered(FencedError("InvalidProducerEpochError"))
    later = ClientError("IllegalStateError: Cannot call send in state READY")
    assert isinstance(checkpoint.cause(later), FencedError)
    at_least_once, _ = batch(FakeProducer(), transactional=False)
    assert at_least_once.cause(later) is later


def test_what_an_earlier_batch_left_unanswered_is_not_the_next_ones() -> None:
    producer = FakeProducer(send_offsets_to_transaction=RetriableClientError("coordinator moved"))
    first, _ = batch(producer)
    with pytest.raises(RetriableClientError):
        first.commit()
    first.abort()
    producer.fail_unanswered(RetriableClientError("aborted"))  # its record fails only now
    del producer.fail["send_offsets_to_transaction"]
    second, _ = batch(producer)
    second.commit()
    assert second.state is BatchState.COMMITTED

"""Small stand-ins that unit tests share: a clock moved by hand, a probe that can fail, and a
fake Kafka port (consumer and producer) for the detector."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from fraudcore.errors import ClientError, TransactionStalledError
from fraudcore.kafka.ports import PartitionsCallback
from fraudcore.kafka.types import (
    Committed,
    Deliveries,
    Fetched,
    Output,
    PartitionedOutput,
    Record,
    TopicPartition,
)


class FakeClock:
    """For code that takes `clock=` (time.monotonic's shape)."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FlakyProbe:
    """A broker probe for BrokerHealth: succeeds while `up`, counts its calls."""

    def __init__(self) -> None:
        self.up = True
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1
        if not self.up:
            raise ConnectionError("connection refused")


# --------------------------------------------------------------------------- a fake Kafka port
# The Consumer and Producer ports of fraudcore/kafka/ports.py, scripted by the test, for the
# detector's unit tests: each behaves as the port's contract says (the contract tests hold the
# real adapters to the same on a broker), and records what it was asked.

HANG = "hang"  # in FakeProducer's `fail`: the call does not return within its deadline
REBALANCE = "rebalance"  # in FakeConsumer.polls: every partition revoked, then assigned again


class Revoke:
    """In FakeConsumer.polls: these partitions are taken away (incrementally, the others stay
    assigned with their positions), then the poll goes on."""

    def __init__(self, *partitions: TopicPartition) -> None:
        self.partitions = set(partitions)


class Assign:
    """In FakeConsumer.polls: these partitions are added to the assignment (incrementally, as a
    cooperative rebalance does), then the poll goes on."""

    def __init__(self, *partitions: TopicPartition) -> None:
        self.partitions = set(partitions)


class FakeConsumer:
    """A group member over scripted polls. `polls`: what each poll() returns (records by
    partition), raises (an exception), or REBALANCE. The first poll joins the group: every
    partition is assigned. `committed`: the group's committed positions."""

    def __init__(
        self,
        partitions: list[TopicPartition],
        committed: dict[TopicPartition, Committed | None],
        max_poll_records: int,
    ) -> None:
        self.partitions = list(partitions)
        self.commits = dict(committed)
        self.max_poll_records = max_poll_records
        self.polls: list[object] = []
        self.positions: dict[TopicPartition, int] = {}
        self.paused: set[TopicPartition] = set()
        self._joined = False

    def subscribe(
        self, topic: str, on_revoked: PartitionsCallback, on_assigned: PartitionsCallback
    ) -> None:
        self._on_revoked, self._on_assigned = on_revoked, on_assigned

    def poll(self, timeout_ms: int) -> Fetched:
        if not self._joined:
            self._joined = True
            self._on_assigned(set(self.partitions))
        if self.polls and isinstance(self.polls[0], Revoke):
            revoke = self.polls.pop(0)
            assert isinstance(revoke, Revoke)
            self._on_revoked(revoke.partitions)
            self.partitions = [tp for tp in self.partitions if tp not in revoke.partitions]
        if self.polls and isinstance(self.polls[0], Assign):
            assign = self.polls.pop(0)
            assert isinstance(assign, Assign)
            added = assign.partitions
            self.partitions += sorted(added - set(self.partitions))
            self._on_assigned(added)
        if self.polls and self.polls[0] == REBALANCE:
            self.polls.pop(0)
            self._on_revoked(set(self.partitions))
            self._on_assigned(set(self.partitions))
        step = self.polls.pop(0) if self.polls else {}
        if isinstance(step, BaseException):
            raise step
        records: dict[TopicPartition, list[Record]] = step  # type: ignore[assignment]
        fetched = {tp: batch for tp, batch in records.items() if tp not in self.paused}
        count = sum(len(batch) for batch in fetched.values())
        return Fetched(fetched, full=count >= self.max_poll_records)

    def assignment(self) -> set[TopicPartition]:
        return set(self.partitions) if self._joined else set()

    def committed(self, tp: TopicPartition) -> Committed | None:
        return self.commits.get(tp)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.positions[tp] = offset

    def seek_to_beginning(self, tp: TopicPartition) -> None:
        self.positions[tp] = 0

    def pause(self, partitions: Iterable[TopicPartition]) -> None:
        self.paused |= set(partitions)

    def resume(self, partitions: Iterable[TopicPartition]) -> None:
        self.paused -= set(partitions)

    def group_metadata(self) -> object:
        return "group"

    def commit(self, offsets: Mapping[TopicPartition, Committed]) -> None:
        self.commits.update(offsets)

    def lag(self, tp: TopicPartition) -> int | None:
        return None

    def close(self) -> None:
        pass


class FakeProducer:
    """A producer that fails or hangs in the calls named in `fail`, and records every call
    ("send" once per record). `fail_sends`: every record sent fails with it when a flush
    completes it. A HANG call waits out its deadline, then raises TransactionStalledError, as
    the port's transactional calls do."""

    def __init__(self, fail_sends: ClientError | None = None, **fail: object) -> None:
        self.fail = fail
        self.fail_sends = fail_sends
        self.calls: list[str] = []
        self.discarded = False
        self.written: list[Output] = []  # what a flush completed without failing
        self._unanswered: list[Output] = []
        self.written_to_partitions: list[PartitionedOutput] = []
        self._unanswered_partitioned: list[PartitionedOutput] = []
        self._answered = Deliveries()

    def _call(self, name: str, seconds: float | None = None) -> None:
        self.calls.append(name)
        failure = self.fail.get(name)
        if failure == HANG:
            time.sleep(seconds or 0)
            raise TransactionStalledError(f"{name} did not complete within {seconds:g}s")
        if isinstance(failure, BaseException):
            raise failure

    def send(self, outputs: Iterable[Output]) -> int:
        return self._queue(outputs, self._unanswered)

    def send_to_partitions(self, outputs: Iterable[PartitionedOutput]) -> int:
        """As send(); a flush completes these into `written_to_partitions`."""
        return self._queue(outputs, self._unanswered_partitioned)

    def _queue(self, outputs: Iterable[Any], unanswered: list[Any]) -> int:
        count = 0
        for output in outputs:
            self._call("send")
            unanswered.append(output)
            count += 1
        return count

    def fail_unanswered(self, error: ClientError) -> None:
        """The records sent so far fail now, as on the client's I/O thread."""
        failed, self._unanswered = self._unanswered, []
        failed_too, self._unanswered_partitioned = self._unanswered_partitioned, []
        self._record(Deliveries(0, len(failed) + len(failed_too), error))

    def _record(self, more: Deliveries) -> None:
        now = self._answered
        self._answered = Deliveries(
            now.acknowledged + more.acknowledged,
            now.failed + more.failed,
            now.first_failure or more.first_failure,
        )

    def deliveries(self) -> Deliveries:
        answered, self._answered = self._answered, Deliveries()
        return answered

    def prepare(self, topic: str) -> None:
        self._call("prepare")

    def begin_transaction(self) -> None:
        self._call("begin_transaction")

    def send_offsets_to_transaction(
        self, offsets: Mapping[TopicPartition, Committed], group: object, seconds: float
    ) -> None:
        self._call("send_offsets_to_transaction", seconds)

    def commit_transaction(self, seconds: float) -> None:
        self._call("commit_transaction", seconds)

    def abort_transaction(self, seconds: float) -> None:
        self._call("abort_transaction", seconds)

    def flush(self, seconds: float | None = None) -> None:
        self._call("flush", seconds)
        done, self._unanswered = self._unanswered, []
        done_too, self._unanswered_partitioned = self._unanswered_partitioned, []
        if self.fail_sends is not None:
            self._record(Deliveries(0, len(done) + len(done_too), self.fail_sends))
        else:
            self.written += done
            self.written_to_partitions += done_too
            self._record(Deliveries(len(done) + len(done_too), 0, None))

    def close(self, seconds: float) -> None:
        self.discarded = True

    def discard(self) -> None:
        self.discarded = True

"""One batch of the detector, from its first send to its commit or abort: the one owner of it.

Modelled on quix-streams' Checkpoint and aiokafka's transaction manager: a Checkpoint is made
when a batch opens (and begins its Kafka transaction in exactly_once), is told of every output
and every input offset, and ends once, committed or not, through explicit states whose legal
transitions are listed in TRANSITIONS. What the batch routed is tallied here; the observers
(metrics, the stats line, liveness) hear of the outcome and count only what committed. Every
send is tracked: a batch commits only when each of its outputs was acknowledged, whatever the
client library reports about the transaction.
"""

from __future__ import annotations

import enum
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from fraudcore.core.rule import RULES, Verdict, reason_code
from fraudcore.errors import ClientError, FencedError, OutputNotWrittenError
from fraudcore.kafka.ports import Consumer, Producer
from fraudcore.kafka.types import Committed, Output, PartitionedOutput, TopicPartition
from fraudcore.runtime import StatsLine

log = logging.getLogger(__name__)


class BatchTally:
    """What a batch routed: each record's input timestamp by verdict, dead letters by reason
    code, fraud by fraud.rules value. Told once per record, so it only appends."""

    def __init__(self) -> None:
        self.timestamps: dict[Verdict, list[int | None]] = {verdict: [] for verdict in Verdict}
        self.reasons: Counter[str] = Counter()
        self._rules: Counter[bytes] = Counter()

    def routed(
        self, verdict: Verdict, timestamp_ms: int | None, reason: str = "", rules: bytes = b""
    ) -> None:
        self.timestamps[verdict].append(timestamp_ms)
        if reason:
            self.reasons[reason_code(reason)] += 1
        elif rules:
            self._rules[rules] += 1

    def rule_hits(self) -> Counter[str]:
        """Fraud by rule: a record several rules fired on counts once for each."""
        hits: Counter[str] = Counter({rule: 0 for rule in RULES})
        for rules, count in self._rules.items():
            for rule in rules.decode().split(","):
                hits[rule] += count
        return hits

    def counts(self) -> Counter[str]:
        """Records by verdict name, and fraud by rule as "rule.<name>"."""
        counts = Counter(
            {verdict.value: len(stamps) for verdict, stamps in self.timestamps.items()}
        )
        for rule, hits in self.rule_hits().items():
            counts[f"rule.{rule}"] = hits
        return counts


class BatchObserver(Protocol):
    """Hears when a batch opens and how it ends; counts only what committed."""

    def batch_opened(self) -> None: ...

    def batch_ended(self, state: BatchState, tally: BatchTally, transaction: bool) -> None:
        """The batch is over, in `state` (COMMITTED, ABORTED or ABANDONED). `transaction`:
        it was a Kafka transaction (exactly_once)."""


class CommittedStats:
    """Feeds a stats line what committed, by verdict and rule (a BatchObserver)."""

    def __init__(self, stats: StatsLine) -> None:
        self._stats = stats

    def batch_opened(self) -> None:
        pass

    def batch_ended(self, state: BatchState, tally: BatchTally, transaction: bool) -> None:
        if state is BatchState.COMMITTED:
            for name, count in tally.counts().items():
                self._stats.add(name, count)


class BatchState(enum.Enum):
    OPEN = "open: outputs and offsets go in"
    COMMITTING = "committing"
    COMMITTED = "committed: outputs and offsets are durable together"
    FAILED = "failed: a send or the commit failed; the error plan decides"
    ABORTING = "aborting"
    ABORTED = "aborted: nothing of it is visible, its input is read again"
    ABANDONED = "abandoned: left to the broker (fenced, or its producer is replaced)"


TRANSITIONS: dict[BatchState, frozenset[BatchState]] = {
    BatchState.OPEN: frozenset({BatchState.COMMITTING, BatchState.FAILED}),
    BatchState.COMMITTING: frozenset({BatchState.COMMITTED, BatchState.FAILED}),
    BatchState.FAILED: frozenset({BatchState.ABORTING, BatchState.ABANDONED}),
    BatchState.ABORTING: frozenset({BatchState.ABORTED, BatchState.ABANDONED}),
    BatchState.COMMITTED: frozenset(),
    BatchState.ABORTED: frozenset(),
    BatchState.ABANDONED: frozenset(),
}
ENDED = frozenset(state for state, onward in TRANSITIONS.items() if not onward)


class IllegalTransitionError(RuntimeError):
    """A bug: a batch was asked to go where its state does not lead."""


class Checkpoint:
    """A batch in progress. `transactional`: exactly_once (a Kafka transaction holds outputs and
    offsets); otherwise at_least_once (offsets committed once every output is acknowledged).
    `timeout` (seconds) bounds the whole commit, all its calls together."""

    def __init__(
        self,
        producer: Producer,
        consumer: Consumer,
        *,
        transactional: bool,
        timeout: float,
        observers: Sequence[BatchObserver] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._producer, self._consumer = producer, consumer
        self._transactional, self._timeout, self._clock = transactional, timeout, clock
        self._observers = observers
        self.started = clock()
        self.state = BatchState.OPEN
        self.tally = BatchTally()
        self.offsets: dict[TopicPartition, Committed] = {}
        self._failed = 0
        self._first_failure: ClientError | None = None

    def begin(self) -> None:
        """Open the batch (and its Kafka transaction in exactly_once)."""
        self._producer.deliveries()  # what an earlier batch left unanswered is not this batch's
        for observer in self._observers:
            observer.batch_opened()
        if self._transactional:
            try:
                self._producer.begin_transaction()
            except ClientError:
                self._move(BatchState.FAILED)
                raise

    def _move(self, state: BatchState) -> None:
        if state not in TRANSITIONS[self.state]:
            raise IllegalTransitionError(
                f"a batch cannot go from {self.state.name} to {state.name}"
            )
        self.state = state
        if state in ENDED:
            for observer in self._observers:
                observer.batch_ended(state, self.tally, self._transactional)

    def age(self) -> float:
        return self._clock() - self.started

    def send(self, outputs: Iterable[Output]) -> None:
        self._sending(lambda: self._producer.send(outputs))

    def send_to_partitions(self, outputs: Iterable[PartitionedOutput]) -> None:
        """Send records to the partitions they name (the changelogs'), in this batch."""
        self._sending(lambda: self._producer.send_to_partitions(outputs))

    def _sending(self, send: Callable[[], int]) -> None:
        try:
            send()
        except ClientError:
            self._move(BatchState.FAILED)
            raise

    def processed(self, tp: TopicPartition, next_offset: int, metadata: str = "") -> None:
        """The input of `tp` is processed up to `next_offset` (exclusive). `metadata` is
        committed with the offset (the rules' checkpoint)."""
        self.offsets[tp] = Committed(next_offset, metadata)

    def commit(self) -> None:
        """Make outputs and offsets durable together, or raise ClientError (FAILED).

        exactly_once: the offsets go to the transaction, then every output must be acknowledged
        (flush) before the commit. That flush is the guard against kafka-python 3.0.12, whose
        commit_transaction() can report success for a transaction the broker aborted: on
        INVALID_PRODUCER_EPOCH for a batch it bumps the producer epoch in the middle of the
        transaction (its KIP-360 path for idempotent producers), which aborts the transaction on
        the broker and fails the batch, then completes a pending EndTxn without sending it. A
        failed batch fails its records first, so no failed output reaches the commit.

        at_least_once: every output acknowledged, then the offsets; a failed offset commit only
        means the batch will be read again, so it is not an error here.
        """
        self._move(BatchState.COMMITTING)
        deadline = self._clock() + self._timeout
        try:
            if self._transactional:
                if self.offsets:
                    self._producer.send_offsets_to_transaction(
                        self.offsets, self._consumer.group_metadata(), self._left(deadline)
                    )
                self._producer.flush(self._left(deadline))
                self._raise_if_a_send_failed()
                self._producer.commit_transaction(self._left(deadline))
            else:
                self._producer.flush()
                self._raise_if_a_send_failed()
                self._commit_offsets()
        except ClientError:
            self._move(BatchState.FAILED)
            raise
        self._move(BatchState.COMMITTED)

    def _commit_offsets(self) -> None:
        try:
            self._consumer.commit(self.offsets)
        except ClientError as exc:
            # Outputs are out but offsets are not: the batch will be seen again (at least once).
            log.warning("offset commit failed; the batch may be processed again: %r", exc)

    def abort(self) -> None:
        """Give the failed batch up. exactly_once: abort its transaction (raises ClientError
        when the producer cannot: the batch is then ABANDONED); at_least_once: let what was
        sent land, so that its failures come now."""
        self._move(BatchState.ABORTING)
        try:
            if self._transactional:
                self._producer.abort_transaction(self._timeout)
            else:
                self._producer.flush()
        except ClientError:
            self._move(BatchState.ABANDONED)
            raise
        self._move(BatchState.ABORTED)

    def abandon(self) -> None:
        """Leave the failed batch to the broker: its producer is fenced or is being replaced."""
        self._move(BatchState.ABANDONED)

    def cause(self, exc: ClientError) -> ClientError:
        """The error to act on when `exc` ended the batch: a fencing that failed one of its
        outputs first, if any. After INVALID_PRODUCER_EPOCH for a batch, kafka-python 3.0.12
        leaves the transaction on its own (it bumps the epoch), so the next send fails with a
        plain IllegalStateError ("Cannot call send in state READY") that hides the fencing."""
        self._collect_failures()
        first = self._first_failure
        if self._transactional and isinstance(first, FencedError):
            return first
        return exc

    def _collect_failures(self) -> None:
        delivered = self._producer.deliveries()
        self._failed += delivered.failed
        if self._first_failure is None:
            self._first_failure = delivered.first_failure

    def _raise_if_a_send_failed(self) -> None:
        self._collect_failures()
        first = self._first_failure
        if first is None:
            return
        if self._transactional and isinstance(first, FencedError):
            raise first  # fencing, not a lost output: the error plan must see it as such
        # (An idempotent producer's epoch error is no fencing: kafka-python bumps its epoch.)
        raise OutputNotWrittenError(
            f"{self._failed} output(s) of the batch were not written: {first}", first
        )

    def _left(self, deadline: float) -> float:
        return max(0.001, deadline - self._clock())

"""One batch of the detector: its outputs, its input offsets, and how they become durable together.

Modelled on quix-streams' Checkpoint and aiokafka's TransactionContext: a Checkpoint is made
when a batch opens (and begins its Kafka transaction in exactly_once), is told of every send and
every input offset, and then either commits or aborts, once; a new batch gets a new Checkpoint,
so no flag outlives its batch. Every send is tracked: a batch commits only when each of its
outputs was acknowledged, whatever the client library reports about the transaction.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

from fraudcore.errors import ClientError, FencedError, OutputNotWrittenError
from fraudcore.kafka_port import Consumer, OffsetAndMetadata, Output, Producer, TopicPartition

log = logging.getLogger(__name__)


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
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._producer, self._consumer = producer, consumer
        self._transactional, self._timeout, self._clock = transactional, timeout, clock
        self.started = clock()
        self.offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        self._lock = threading.Lock()  # the producer's I/O thread reports failed sends
        self._failed = 0
        self._first_failure: BaseException | None = None
        self._over = False
        if transactional:
            producer.begin_transaction()

    def age(self) -> float:
        return self._clock() - self.started

    def send(self, outputs: Iterable[Output]) -> None:
        self._producer.send_batch(outputs, self._on_send_error)

    def record(self, tp: TopicPartition, next_offset: int, metadata: str = "") -> None:
        """The input of `tp` is processed up to `next_offset` (exclusive). `metadata` is
        committed with the offset (the velocity window's checkpoint)."""
        self.offsets[tp] = OffsetAndMetadata(next_offset, metadata, -1)

    def _on_send_error(self, exc: BaseException) -> None:
        with self._lock:
            if self._over:
                return  # the batch was already given up: its input is read again anyway
            self._failed += 1
            if self._first_failure is None:
                self._first_failure = exc

    def commit(self) -> None:
        """Make outputs and offsets durable together, or raise ClientError and commit nothing.

        exactly_once: the offsets go to the transaction, then every output must be acknowledged
        (flush) before the commit. That flush is the guard against kafka-python 3.0.12, whose
        commit_transaction() can report success for a transaction the broker aborted: on
        INVALID_PRODUCER_EPOCH for a batch it bumps the producer epoch in the middle of the
        transaction (its KIP-360 path for idempotent producers), which aborts the transaction on
        the broker and fails the batch, then completes a pending EndTxn without sending it. A
        failed batch fails its records' futures first, so no failed output reaches the commit.

        at_least_once: every output acknowledged, then the offsets; a failed offset commit only
        means the batch will be read again, so it is not an error here.
        """
        deadline = self._clock() + self._timeout
        try:
            if not self._transactional:
                self._producer.flush()
                self._raise_if_a_send_failed()
                self._commit_offsets()
                return
            if self.offsets:
                self._producer.send_offsets_to_transaction(
                    self.offsets, self._consumer.group_metadata(), self._left(deadline)
                )
            self._producer.flush(self._left(deadline))
            self._raise_if_a_send_failed()
            self._producer.commit_transaction(self._left(deadline))
        finally:
            self._end()

    def _commit_offsets(self) -> None:
        try:
            self._consumer.commit(self.offsets)
        except ClientError as exc:
            # Outputs are out but offsets are not: the batch will be seen again (at least once).
            log.warning("offset commit failed; the batch may be processed again: %r", exc)

    def abort(self) -> None:
        """Give the batch up. exactly_once: abort its transaction (raises ClientError when the
        producer cannot); at_least_once: let what was sent land, so its failures come now."""
        try:
            if self._transactional:
                self._producer.abort_transaction(self._timeout)
            else:
                self._producer.flush()
        finally:
            self._end()

    def cause(self, exc: ClientError) -> ClientError:
        """The error to act on when `exc` ended the batch: a fencing that failed one of its
        outputs first, if any. After INVALID_PRODUCER_EPOCH for a batch, kafka-python 3.0.12
        leaves the transaction on its own (it bumps the epoch), so the next send fails with a
        plain IllegalStateError ("Cannot call send in state READY") that hides the fencing."""
        with self._lock:
            first = self._first_failure
        if self._transactional and first is not None:
            error = self._producer.error(first)
            if isinstance(error, FencedError):
                return error
        return exc

    def _raise_if_a_send_failed(self) -> None:
        with self._lock:
            failed, first = self._failed, self._first_failure
        if first is None:
            return
        error = self._producer.error(first)
        if self._transactional and isinstance(error, FencedError):
            raise error  # fencing, not a lost output: the error policy must see it as such
        # (An idempotent producer's epoch error is no fencing: kafka-python bumps its epoch.)
        raise OutputNotWrittenError(
            f"{failed} output(s) of the batch were not written: {error}", first
        )

    def _left(self, deadline: float) -> float:
        return max(0.001, deadline - self._clock())

    def _end(self) -> None:
        with self._lock:
            self._over = True

"""Consume transactions, classify each, republish it byte for byte to legit, fraud or dead-letter.

The loop reads as poll -> classify -> send -> checkpoint. Offsets move only together with the
outputs (fraudcore/checkpoint.py): in exactly_once mode inside one Kafka transaction, in
at_least_once mode by committing after every output has been acknowledged. What to do when a
batch fails is fraudcore/error_policy.py's table; this module carries it out.

With the velocity rule on, each assigned partition has a window (fraudcore/core/velocity.py)
whose checkpoint goes with the partition's committed offset; whenever the detector goes back to
the committed offsets (a new assignment, a failed batch) the window is rebuilt from the input.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping

from detector.clients import make_consumer, make_producer, required_topics
from detector.config import DetectorSettings
from detector.routing import Router
from detector.windows import VelocityWindows
from fraudcore import kafka_admin, service
from fraudcore.checkpoint import Checkpoint
from fraudcore.core.rule import RULES
from fraudcore.error_policy import Action, decide
from fraudcore.errors import ClientError, FencedError, KafkaSecurityError, NotAllowedError
from fraudcore.health import Liveness
from fraudcore.kafka_port import ConsumedRecord, Consumer, Producer, TopicPartition
from fraudcore.kafka_reader import PartitionReader
from fraudcore.metrics import DetectorMetrics
from fraudcore.runtime import StatsLine, StopFlag, freeze_startup_heap

log = logging.getLogger(__name__)

POLL_TIMEOUT_MS = 100
POLL_RETRY_SECONDS = 0.5

# A producer that failed this many times in a row, each time replaced, is not worth another try.
MAX_PRODUCER_RESETS_IN_A_ROW = 5


class FatalDetectorError(RuntimeError):
    """The detector cannot go on safely; its committed state is consistent, so a restart resumes."""


class Detector:
    """The consume-classify-produce loop. Offsets move only with the outputs they account for."""

    def __init__(
        self,
        settings: DetectorSettings,
        consumer: Consumer,
        producer: Producer,
        stop: StopFlag,
        clock: Callable[[], float] = time.monotonic,
        *,
        metrics: DetectorMetrics | None = None,
        new_producer: Callable[[], Producer] | None = None,
        liveness: Liveness | None = None,
        new_reader: Callable[[], PartitionReader] | None = None,
    ) -> None:
        self.settings = settings
        self.consumer = consumer
        self.producer = producer
        self.stop = stop
        # Makes a replacement for a transactional producer that cannot go on (see _reset_producer).
        self._new_producer = new_producer
        self._resets_in_a_row = 0
        # A transaction older than this may have been aborted by the broker; the calls of one
        # commit share this much time.
        self._transaction_timeout = settings.transaction_timeout_ms / 1000
        # Counts a batch's records once its outputs are durable (fraudcore/metrics.py).
        self.metrics = metrics if metrics is not None else DetectorMetrics()
        self.liveness = liveness if liveness is not None else Liveness(float("inf"), clock)
        self._clock = clock
        self._exactly_once = settings.processing_guarantee == "exactly_once"
        self._router = Router(settings, self.metrics.routed)
        self._commit_interval = settings.commit_interval_ms / 1000
        self._checkpoint: Checkpoint | None = None  # the open batch
        # The rebalance listener runs inside poll(): what it cannot do there waits for poll's end.
        self._revoking = False
        self._rewind_after_poll = False
        self._fatal: FatalDetectorError | None = None
        # The velocity rule's state, None when it is off; new_reader reads the input back.
        rule = settings.velocity_rule
        self.windows: VelocityWindows | None = None
        if rule is not None:
            if new_reader is None:
                raise ValueError("the velocity rule needs new_reader to rebuild its windows")
            self.windows = VelocityWindows(rule, new_reader, settings.max_transaction_bytes)
        self.stats = StatsLine(log, settings.stats_interval_seconds, self._render)

    @staticmethod
    def _render(window: Counter[str], seconds: float) -> str:
        total = window["legit"] + window["fraud"] + window["invalid"]
        share = 100 * window["fraud"] / (window["legit"] + window["fraud"] or 1)
        by_rule = ", ".join(f"{rule} {window['rule.' + rule]}" for rule in RULES)
        return (
            f"detector: {total / seconds:.1f} tx/s legit={window['legit']} fraud={window['fraud']} "
            f"({by_rule}) invalid={window['invalid']} fraud share {share:.1f}%"
        )

    def subscribe(self) -> None:
        self.consumer.subscribe(
            self.settings.transactions_topic, self._on_revoked, self._on_assigned
        )

    def run(self) -> int:
        """Process until stopped, then commit what was processed. 0 on a clean stop."""
        self.subscribe()
        freeze_startup_heap()
        self.liveness.start()
        try:
            while not self.stop.is_set():
                self.poll_once()
            self.commit()
        except FatalDetectorError as exc:
            log.error("stopping: %s", exc)
            return 1
        finally:
            self.stats.maybe_log(force=True)
            if self.windows is not None:
                self.windows.close()
        return 0

    def poll_once(self) -> None:
        try:
            batch = self.consumer.poll(timeout_ms=POLL_TIMEOUT_MS)
        except ClientError as exc:
            if self._fatal is not None:  # raised in the rebalance listener; kafka-python wraps it
                raise self._fatal from exc
            if not exc.retriable:
                raise
            # poll() fails e.g. with a connection error while the broker is away (looking up the
            # group coordinator); nothing was consumed, so just try again.
            log.warning("poll failed, retrying: %s", exc)
            self.stop.wait(POLL_RETRY_SECONDS)
            return
        self.liveness.beat()
        if self._rewind_after_poll:
            # The batch committed at revocation failed. kafka-python keeps the position of a
            # partition that stays assigned, so this poll may hold records past the committed
            # offsets: drop them and read again from the commit.
            self._rewind_after_poll = False
            self._rewind()
            return
        if self.windows is not None and self.windows.unrestored:
            # Newly assigned partitions: rebuild their windows at the committed offsets and go
            # back there, so that state and position agree whatever the poll fetched.
            restored = set(self.windows.unrestored)
            self._reset(restored)
            batch = {tp: records for tp, records in batch.items() if tp not in restored}
        if batch:
            self._process(batch)
        checkpoint = self._checkpoint
        if checkpoint is not None and (
            checkpoint.age() >= self._commit_interval
            or (self._exactly_once and self._caught_up(batch))
        ):
            self.commit()
        self.stats.maybe_log()
        self.metrics.maybe_update_lag(self.consumer)

    def _process(self, batch: Mapping[TopicPartition, list[ConsumedRecord]]) -> None:
        """Classify and send each record, into the open batch (a new one if none is open)."""
        checkpoint = self._checkpoint
        try:
            if checkpoint is None:
                checkpoint = self._checkpoint = Checkpoint(
                    self.producer,
                    self.consumer,
                    transactional=self._exactly_once,
                    timeout=self._transaction_timeout,
                    clock=self._clock,
                )
                self.liveness.batch_opened()
            for tp, records in batch.items():
                windows = self.windows
                window = None if windows is None else windows.window(tp)
                checkpoint.send(self._router.outputs(records, window))
                next_offset = records[-1].offset + 1
                metadata = "" if windows is None else windows.metadata(tp, next_offset)
                checkpoint.record(tp, next_offset, metadata)
        except ClientError as exc:  # the producer refused a record: the whole batch is redone
            self._checkpoint = None
            self._give_up(checkpoint, exc)

    def _caught_up(self, batch: Mapping[TopicPartition, list[ConsumedRecord]]) -> bool:
        """The poll returned less than it could: nothing more is waiting in the fetch buffer.

        exactly_once commits then rather than waiting out COMMIT_INTERVAL_MS, because its outputs
        are invisible until the commit. Under load every poll is full, so batches grow to the
        interval; at a low rate a commit per poll keeps latency to the commit round trip (group
        commit: records arriving during a commit make up the next batch).
        """
        return sum(len(records) for records in batch.values()) < self.settings.max_poll_records

    def _on_revoked(self, revoked: set[TopicPartition]) -> None:
        """Commit before the partitions go. Runs inside poll(), which wraps what it raises."""
        if not revoked:
            return
        self._revoking = True
        try:
            self.commit()
        except FatalDetectorError as exc:
            self._fatal = exc
            raise
        finally:
            self._revoking = False
            if self.windows is not None:
                self.windows.revoked(revoked)

    def _on_assigned(self, assigned: set[TopicPartition]) -> None:
        log.info("assigned partitions: %s", sorted(f"{tp.topic}-{tp.partition}" for tp in assigned))
        if self.windows is not None:
            self.windows.assigned(assigned)  # rebuilt once poll() returns (poll_once)

    def commit(self) -> None:
        """Make the open batch durable: outputs and input offsets together."""
        checkpoint, self._checkpoint = self._checkpoint, None
        if checkpoint is None:
            return
        for verdict, count in self.metrics.pending_counts().items():
            self.stats.add(verdict, count)
        try:
            checkpoint.commit()
        except ClientError as exc:
            self._give_up(checkpoint, exc)
        else:
            self.metrics.batch_committed(transaction=self._exactly_once)
            self._resets_in_a_row = 0
        finally:
            self.metrics.discard_batch()  # whatever was not counted as committed by now
            self.liveness.batch_closed()

    def _give_up(self, checkpoint: Checkpoint | None, exc: ClientError) -> None:
        """Carry out the error policy for a failed batch, then read its input again.

        Fencing is never a path to commit: a fenced producer's transaction is left to the
        broker, which has aborted it already, and the producer is not used again.
        """
        try:
            young = checkpoint is None or checkpoint.age() < self._transaction_timeout
            if checkpoint is not None:
                exc = checkpoint.cause(exc)
            action = decide(exc, young=young)
            if action is Action.STOP:
                raise FatalDetectorError(self._describe_stop(exc))
            log.warning("batch failed (%s), reprocessing its input: %s", action.name.lower(), exc)
            if action is Action.ABORT and (checkpoint is None or not self._abort(checkpoint)):
                action = Action.REPLACE  # no transaction to abort (begin failed), or no abort
            if self._exactly_once:
                self.metrics.batch_aborted()
                if action is Action.REPLACE:
                    self._reset_producer()
            self._rewind_or_defer()
        finally:
            self.metrics.discard_batch()
            self.liveness.batch_closed()

    def _abort(self, checkpoint: Checkpoint) -> bool:
        """Abort the batch; False when its producer could not, and must be replaced."""
        try:
            checkpoint.abort()
        except NotAllowedError as abort_exc:
            raise FatalDetectorError(f"abort failed: {abort_exc}") from abort_exc
        except ClientError as abort_exc:
            log.warning("abort failed too: %s", abort_exc)
            return False
        return True

    def _describe_stop(self, exc: ClientError) -> str:
        if not isinstance(exc, FencedError):
            return f"transaction cannot complete: {exc}"
        transactional_id = self.settings.effective_transactional_id
        if self.settings.transactional_id is not None:
            return (
                f"fenced by a newer producer with TRANSACTIONAL_ID={transactional_id!r}: another "
                "detector uses the same TRANSACTIONAL_ID; give each detector its own, or leave "
                f"it unset for a unique default. Nothing of the open batch was committed ({exc})"
            )
        return (
            f"fenced by a newer producer with transactional id {transactional_id!r}. Nothing of "
            f"the open batch was committed ({exc})"
        )

    def _reset_producer(self) -> None:
        """Replace the transactional producer; the new one aborts what the old one left open.

        This is how a transaction that the broker aborted on timeout (e.g. during an outage
        longer than TRANSACTION_TIMEOUT_MS), or a stuck producer, is recovered from. Its input
        is read again from the committed offsets, so nothing is lost or doubled.
        """
        if self._new_producer is None:
            raise FatalDetectorError("the producer cannot go on and cannot be replaced")
        self._resets_in_a_row += 1
        if self._resets_in_a_row > MAX_PRODUCER_RESETS_IN_A_ROW:
            raise FatalDetectorError(
                f"the producer failed {MAX_PRODUCER_RESETS_IN_A_ROW} times in a row, each time "
                "replaced; giving up"
            )
        self.producer.discard()
        while True:
            try:
                self.producer = self._new_producer()
            except (NotAllowedError, FencedError) as exc:
                raise FatalDetectorError(self._describe_stop(exc)) from exc
            except ClientError as exc:
                log.warning("cannot make a new producer yet, the broker may be down: %s", exc)
                if self.stop.wait(1.0):
                    return
            else:
                log.info("the transactional producer was replaced; reprocessing from the commit")
                return

    def _rewind_or_defer(self) -> None:
        """Rewind now, or, inside the rebalance listener, as soon as poll() returns."""
        if self._revoking:
            self._rewind_after_poll = True
        else:
            self._rewind()

    def _rewind(self) -> None:
        """Go back to the committed offsets, so that nothing of the failed batch is skipped.

        All assigned partitions, not only those of the failed batch: a batch can fail before its
        partitions were recorded, and beyond the committed offsets nothing is durable anyway.
        """
        self._reset(self.consumer.assignment())

    def _reset(self, partitions: set[TopicPartition]) -> None:
        """Seek each partition to its committed offset and rebuild its window there."""
        for tp in partitions:
            while True:
                try:
                    committed = self.consumer.committed(tp)
                    if self.windows is not None:
                        self.windows.restore(tp, committed)
                        self.liveness.beat()  # a restore is progress, not a stuck loop
                    break
                except NotAllowedError as exc:
                    raise FatalDetectorError(f"cannot read the committed input: {exc}") from exc
                except ClientError as exc:
                    log.warning("cannot read the committed input of %s yet: %s", tp, exc)
                    if self.stop.wait(1.0):
                        return  # nothing past the committed offsets gets committed any more
            if committed is None:
                self.consumer.seek_to_beginning(tp)
            else:
                self.consumer.seek(tp, committed.offset)


def main() -> int:
    try:
        settings, stop, metrics, admin, liveness = service.start(
            "detector", DetectorSettings, lambda _settings: DetectorMetrics()
        )
    except service.ServiceExit as exit_:
        return exit_.code
    try:
        with admin:
            kafka_admin.ensure_topics(admin, required_topics(settings))
        consumer = make_consumer(settings)
        try:
            producer = make_producer(settings)
        except ClientError:
            consumer.close()
            raise
        detector = Detector(
            settings,
            consumer,
            producer,
            stop,
            metrics=metrics,
            new_producer=lambda: make_producer(settings),
            liveness=liveness,
            new_reader=lambda: PartitionReader(settings, "detector-restore"),
        )
        code = 1
        try:
            code = detector.run()
        finally:
            # The producer may have been replaced. After a fatal stop nothing it holds may go
            # out: its transaction is aborted, so it is stopped at once.
            if code == 0:
                detector.producer.close(10)
            else:
                detector.producer.discard()
            consumer.close()
        return code
    except (KafkaSecurityError, NotAllowedError) as exc:  # a missing ACL: no retry
        log.error("%s", kafka_admin.describe_refusal(exc, settings))
        return 1

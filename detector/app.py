"""Consume transactions, classify each, republish it byte for byte to legit, fraud or dead-letter.

The loop reads as poll -> restore -> classify -> send -> checkpoint. A batch belongs to one
Checkpoint (fraudcore/checkpoint.py) from its first send to its commit or abort: in exactly_once
mode one Kafka transaction holds its outputs and input offsets, in at_least_once mode the offsets
are committed once every output is acknowledged. When anything fails, fraudcore/error_policy.py
gives the whole plan and this loop carries it out.

Each assigned partition is RESTORING until its position and its rules' state
(detector/rule_state.py) are rebuilt at its committed offset, then ACTIVE; a failed batch sends
every partition back to RESTORING, so that nothing past the committed offsets is skipped or
counted twice.
"""

from __future__ import annotations

import enum
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence

from detector.clients import make_consumer, make_producer, prepare_cluster
from detector.config import DetectorSettings
from detector.routing import Router
from detector.rule_state import RuleStates
from detector.stats import render_stats
from fraudcore import kafka, service
from fraudcore.checkpoint import BatchState, Checkpoint, CommittedStats
from fraudcore.core.topics import changelog_topics
from fraudcore.error_policy import Plan, Step, plan
from fraudcore.errors import ClientError, FencedError, KafkaSecurityError, NotAllowedError
from fraudcore.health import Liveness
from fraudcore.kafka.ports import Consumer, Producer
from fraudcore.kafka.reading import PartitionReader
from fraudcore.kafka.types import ConsumedRecord, TopicPartition, label
from fraudcore.metrics import DetectorMetrics
from fraudcore.runtime import StatsLine, StopFlag, freeze_startup_heap

log = logging.getLogger(__name__)

POLL_TIMEOUT_MS = 100


class FatalDetectorError(RuntimeError):
    """The detector cannot go on safely; its committed state is consistent, so a restart resumes."""


class PartitionState(enum.Enum):
    RESTORING = "paused until its position and rule state are rebuilt at the committed offset"
    ACTIVE = "its records are processed"
    REVOKING = "its last batch is being committed before it goes"


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
        # Makes a replacement for a transactional producer that cannot go on.
        self._new_producer = new_producer
        self._replaced_in_a_row = 0
        # A transaction older than this may have been aborted by the broker; the calls of one
        # commit share this much time.
        self._transaction_timeout = settings.transaction_timeout_ms / 1000
        self.metrics = metrics if metrics is not None else DetectorMetrics()
        self.liveness = liveness if liveness is not None else Liveness(float("inf"), clock)
        self.stats = StatsLine(log, settings.stats_interval_seconds, self._render)
        self._observers = (self.metrics, self.liveness, CommittedStats(self.stats))
        self._clock = clock
        self._exactly_once = settings.processing_guarantee == "exactly_once"
        self._router = Router(settings)
        self._commit_interval = settings.commit_interval_ms / 1000
        self._checkpoint: Checkpoint | None = None  # the open batch
        self.partitions: dict[TopicPartition, PartitionState] = {}
        # The rules' state of each partition; new_reader reads the input and changelogs back.
        rule_set = settings.rule_set
        self.rules = RuleStates(
            rule_set,
            new_reader,
            settings.max_transaction_bytes,
            changelog_topics(settings.consumer_group, settings.changelog_rule_names),
        )

    def _render(self, window: Counter[str], seconds: float) -> str:
        return render_stats(window, seconds, self.rules.rule_set.names)

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
            self.rules.close()
        return 0

    def poll_once(self) -> None:
        self._restore()  # partitions a failed batch sent back, before anything is fetched
        try:
            fetched = self.consumer.poll(timeout_ms=POLL_TIMEOUT_MS)
        except ClientError as exc:
            todo = plan(exc, Step.POLL)
            if todo.stop:
                raise
            log.warning("poll failed, retrying: %s", exc)
            self.stop.wait(todo.retry_after or 0)
            return
        self.liveness.beat()
        # Records fetched for a partition that is restoring lie at its old position, not at the
        # committed offset it goes back to: they are dropped, and read again from there.
        restored = self._restore()
        batches = {
            tp: records
            for tp, records in fetched.records.items()
            if records and tp not in restored and self.partitions.get(tp) is PartitionState.ACTIVE
        }
        if batches:
            self._process(batches)
        checkpoint = self._checkpoint
        if checkpoint is not None and (
            checkpoint.age() >= self._commit_interval
            # exactly_once outputs are invisible until the commit: a poll that was not full has
            # drained what was fetched, so commit now rather than wait out the interval (group
            # commit: records arriving during a commit make up the next batch).
            or (self._exactly_once and not fetched.full)
        ):
            self.commit()
        self.stats.maybe_log()
        self.metrics.maybe_update_lag(self.consumer)

    def _process(self, batches: Mapping[TopicPartition, Sequence[ConsumedRecord]]) -> None:
        """Classify and send each record, into the open batch (a new one if none is open)."""
        checkpoint = self._checkpoint
        opening = checkpoint is None
        if checkpoint is None:
            checkpoint = self._checkpoint = Checkpoint(
                self.producer,
                self.consumer,
                transactional=self._exactly_once,
                timeout=self._transaction_timeout,
                observers=self._observers,
                clock=self._clock,
            )
        try:
            if opening:
                checkpoint.begin()
            states = self.rules
            for tp, records in batches.items():
                rules = states.partition(tp)
                checkpoint.send(self._router.outputs(records, checkpoint.tally, rules))
                next_offset = records[-1].offset + 1
                changes = states.changelog(tp, next_offset)
                if changes:  # the changelog goes in the same batch (transaction) as the outputs
                    checkpoint.send_to_partitions(changes)
                checkpoint.processed(tp, next_offset, states.metadata(tp, next_offset))
        except ClientError as exc:  # the producer refused a record: the whole batch is redone
            self._checkpoint = None
            self._apply_plan(checkpoint, exc)

    def _on_revoked(self, revoked: set[TopicPartition]) -> None:
        """Commit before the partitions go. Runs inside poll(): a rewind it needs is done once
        poll() returns (poll_once), when the positions can be trusted again."""
        if not revoked:
            return
        for tp in revoked & self.partitions.keys():
            self.partitions[tp] = PartitionState.REVOKING
        try:
            self.commit(inside_poll=True)
        finally:
            for tp in revoked:
                self.partitions.pop(tp, None)
            self.rules.forget(revoked)
            self._log_assignment("revoked", revoked)

    def _on_assigned(self, assigned: set[TopicPartition]) -> None:
        for tp in assigned:
            self.partitions[tp] = PartitionState.RESTORING  # restored once poll() returns
        self._log_assignment("new", assigned)

    def _log_assignment(self, change: str, partitions: set[TopicPartition]) -> None:
        """The whole assignment after a change: an incremental (cooperative) rebalance moves
        only some partitions, so the change alone would not say what this detector owns."""
        log.info(
            "assigned partitions: %s (%s: %s)",
            sorted(label(tp) for tp in self.partitions),
            change,
            sorted(label(tp) for tp in partitions),
        )

    def commit(self, *, inside_poll: bool = False) -> None:
        """Make the open batch durable: outputs and input offsets together."""
        checkpoint, self._checkpoint = self._checkpoint, None
        if checkpoint is None:
            return
        try:
            checkpoint.commit()
        except ClientError as exc:
            self._apply_plan(checkpoint, exc, inside_poll=inside_poll)
        else:
            self._replaced_in_a_row = 0

    def _apply_plan(
        self, checkpoint: Checkpoint, exc: ClientError, *, inside_poll: bool = False
    ) -> None:
        """Carry out the error plan for a failed batch; its input is then read again.

        Fencing is never a path to commit: a fenced producer's transaction is left to the
        broker, which has aborted it already, and the producer is not used again.
        """
        young = checkpoint.age() < self._transaction_timeout
        exc = checkpoint.cause(exc)
        todo = self._plan(exc, Step.BATCH, young=young)
        if todo.stop:
            self._abandon(checkpoint)
            raise FatalDetectorError(self._describe_stop(exc, todo))
        what = "abort" if todo.abort else "replace"
        log.warning("batch failed (%s), reprocessing its input: %s", what, exc)
        if todo.abort:
            try:
                checkpoint.abort()
            except ClientError as abort_exc:
                todo = self._plan(abort_exc, Step.ABORT)
                if todo.stop:
                    raise FatalDetectorError(f"abort failed: {abort_exc}") from abort_exc
                log.warning("abort failed too: %s", abort_exc)
        else:
            self._abandon(checkpoint)
        if todo.replace_producer:
            self._replace_producer()
        if todo.rewind:
            for tp, state in self.partitions.items():
                if state is PartitionState.ACTIVE:
                    self.partitions[tp] = PartitionState.RESTORING
            if not inside_poll:
                self._restore()

    def _plan(self, exc: ClientError, step: Step, *, young: bool = True) -> Plan:
        return plan(
            exc,
            step,
            young=young,
            transactional=self._exactly_once,
            replaced_in_a_row=self._replaced_in_a_row,
        )

    @staticmethod
    def _abandon(checkpoint: Checkpoint) -> None:
        if checkpoint.state is BatchState.FAILED:
            checkpoint.abandon()

    def _describe_stop(self, exc: ClientError, todo: Plan | None = None) -> str:
        if todo is not None and todo.reason:
            return f"{todo.reason} ({exc})"
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

    def _replace_producer(self) -> None:
        """Replace the transactional producer; the new one aborts what the old one left open.

        This is how a transaction that the broker aborted on timeout (e.g. during an outage
        longer than TRANSACTION_TIMEOUT_MS), or a stuck producer, is recovered from. Its input
        is read again from the committed offsets, so nothing is lost or doubled.
        """
        if self._new_producer is None:
            raise FatalDetectorError("the producer cannot go on and cannot be replaced")
        self._replaced_in_a_row += 1
        self.producer.discard()
        while True:
            try:
                self.producer = self._new_producer()
            except ClientError as exc:
                todo = self._plan(exc, Step.NEW_PRODUCER)
                if todo.stop:
                    raise FatalDetectorError(self._describe_stop(exc)) from exc
                log.warning("cannot make a new producer yet, the broker may be down: %s", exc)
                if self.stop.wait(todo.retry_after or 0):
                    return
            else:
                log.info("the transactional producer was replaced; reprocessing from the commit")
                return

    def _restore(self) -> set[TopicPartition]:
        """Rebuild every RESTORING partition at its committed offset: seek there and rebuild its
        rules' state, paused meanwhile, then make it ACTIVE. The partitions it restored."""
        restoring = [tp for tp, s in self.partitions.items() if s is PartitionState.RESTORING]
        if not restoring:
            return set()
        self.consumer.pause(restoring)
        for tp in restoring:
            if not self._restore_partition(tp):
                return set(restoring)  # stopping: nothing past the commit gets committed
            self.partitions[tp] = PartitionState.ACTIVE
        self.consumer.resume(restoring)
        return set(restoring)

    def _restore_partition(self, tp: TopicPartition) -> bool:
        """Seek `tp` to its committed offset and rebuild its rules' state there; False if
        stopped while the broker could not tell."""
        while True:
            try:
                committed = self.consumer.committed(tp)
                self.rules.restore(tp, committed)
                self.liveness.beat()  # a restore is progress, not a stuck loop
                break
            except ClientError as exc:
                todo = self._plan(exc, Step.RESTORE)
                if todo.stop:
                    raise FatalDetectorError(f"cannot read the committed input: {exc}") from exc
                log.warning("cannot read the committed input of %s yet: %s", label(tp), exc)
                if self.stop.wait(todo.retry_after or 0):
                    return False
        if committed is None:
            self.consumer.seek_to_beginning(tp)
        else:
            self.consumer.seek(tp, committed.offset)
        return True


def main() -> int:
    try:
        settings, stop, metrics, admin, liveness = service.start(
            "detector", DetectorSettings, lambda _settings: DetectorMetrics()
        )
    except service.ServiceExit as exit_:
        return exit_.code
    driver = kafka.driver(settings)
    try:
        with admin:
            settings = prepare_cluster(settings, admin)
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
            new_reader=lambda: PartitionReader(driver.reader(settings, "detector-restore")),
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
        log.error("%s", driver.describe_refusal(exc, settings))
        return 1

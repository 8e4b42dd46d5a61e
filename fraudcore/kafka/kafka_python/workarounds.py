"""Every piece of code that leans on kafka-python 3.0.12 behaviour beyond its documented API.

Each piece names the upstream behaviour it works around, and tests/unit/test_kafka_workarounds.py
fails loudly when the internals it relies on change. Nothing outside this module may reach
into kafka-python's private attributes.
"""

from __future__ import annotations

import logging

from kafka.errors import KafkaError

from kafka import KafkaConsumer, KafkaProducer

log = logging.getLogger(__name__)


def discard_producer(producer: KafkaProducer) -> None:
    """Stop a producer at once, whatever it still holds; a new one with its id takes over.

    kafka-python's close(timeout=0) flushes first and raises when batches are still pending,
    before it stops the I/O thread; left running, that thread could re-initialise the
    transactional id and so fence the producer that replaced it. So it is force-closed through
    the sender (KafkaProducer._sender.force_close), which fails every pending batch.
    """
    try:
        producer.close(timeout=0)
    except KafkaError:
        producer._sender.force_close()


def underlying_error(producer: KafkaProducer, exc: BaseException) -> BaseException:
    """The error that put a transactional producer into its error state, else `exc` itself.

    Once a transactional request or a batch failed, kafka-python 3.0.12 refuses every later
    send and transactional call with a plain KafkaError that names the original error only in
    its text (TransactionManager._maybe_fail_with_error, _fail_if_not_ready_for_send). A
    producer fenced by a newer one thus reports "Cannot execute transactional method because
    we are in an error state: ProducerFencedError" rather than ProducerFencedError, and the
    detector's error policy needs the ProducerFencedError. It is read from the transaction
    manager (KafkaProducer._transaction_manager.has_error() and .last_error).
    """
    manager = producer._transaction_manager
    if manager is not None and manager.has_error() and manager.last_error is not None:
        last = manager.last_error
        return last if isinstance(last, BaseException) else last()
    return exc


# ---------------------------------------------------------------- a group join left unfinished


def resume_unfinished_join(consumer: KafkaConsumer) -> None:
    """Make the consumer's next poll() finish the group join that its last poll() gave up on.

    kafka-python 3.0.12 runs each JoinGroup -> SyncGroup attempt as a task
    (BaseCoordinator._join_task). When poll()'s timeout ends first, join_group_async returns and
    leaves the task to the next poll(), which awaits it only while need_rejoin() is true. A rejoin
    that a change of the subscribed topic's metadata asked for is needed only while
    ConsumerCoordinator.need_rejoin() sees _assignment_snapshot differ from _metadata_snapshot,
    and the leader's _perform_assignment, inside that very task, makes them equal. So when a
    member joined before its metadata held a new topic (no partitions: "No partition metadata
    for topic"), and the rejoin that follows outlasts one poll(), no later poll() completes it:
    the member keeps no partitions, its heartbeat stays off, and the broker drops it from the
    group. request_rejoin() sets the flag that holds until a join completes, as the Java client
    latches it (ConsumerCoordinator.rejoinNeededOrPending calls requestRejoin()).
    """
    coordinator = consumer._coordinator
    if coordinator._join_task is not None and not coordinator.rejoin_needed:
        log.debug("a group join outlasted poll(): the next poll() finishes it")
        coordinator.request_rejoin()


# --------------------------------------------------------------------------- the I/O thread's name


def client_io_thread_name(client_id: str) -> str:
    """The name of the thread that does a kafka-python client's network I/O.

    kafka-python 3.0.12 runs each consumer's and admin client's connections on a daemon thread
    it names "kafka-io-<client_id>" (kafka.net.selector.NetworkSelector.start), and that thread
    logs every failed connection. Its name is how the health probe's own connection logs are
    told from the service's (fraudcore/health.py QuietProbeLogs); the name is not API.
    """
    return f"kafka-io-{client_id}"


# kafka-python's transport reads after awaiting a readable socket without checking that it was
# not aborted meanwhile (KafkaTCPTransport._read_from_sock). After an abort (_sock None) the read
# fails on None and is logged, with a traceback, as if a live connection broke: a fatal error
# that closes the clients, e.g. a refused transactional id, ended in a traceback instead of one
# line. The filter drops exactly that record for a transport already closed; any other read
# error is still logged.
TRANSPORT_LOGGER = "kafka.net.transport"
READ_ERROR_MESSAGE = "%s: Error receiving network data closing socket"


class _ReadAfterAbortFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg != READ_ERROR_MESSAGE or not isinstance(record.args, tuple):
            return True
        transport = record.args[0] if record.args else None
        closed = getattr(transport, "_closed", False) and getattr(transport, "_sock", 0) is None
        return not closed


def quiet_reads_after_abort() -> None:
    """Install the filter on kafka-python's transport logger (once)."""
    logger = logging.getLogger(TRANSPORT_LOGGER)
    if not any(isinstance(f, _ReadAfterAbortFilter) for f in logger.filters):
        logger.addFilter(_ReadAfterAbortFilter())

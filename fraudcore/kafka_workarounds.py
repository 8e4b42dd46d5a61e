"""Every piece of code that leans on kafka-python 3.0.12 behaviour beyond its documented API.

Each piece names the upstream behaviour it works around, and tests/unit/test_kafka_workarounds.py
fails loudly when the internals it relies on change. Nothing outside this module may reach
into kafka-python's private attributes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from kafka.errors import KafkaError

from kafka import KafkaProducer


class TransactionStalledError(RuntimeError):
    """A transactional producer call did not complete in time; its producer is replaced."""


def call_with_deadline(call: Callable[[], None], seconds: float, what: str) -> None:
    """Run a blocking producer call; raise TransactionStalledError if it takes over `seconds`.

    kafka-python 3.0.12 waits for send_offsets_to_transaction, commit_transaction and
    abort_transaction without a timeout, and its sender drops a transactional request whose
    coordinator connection is down at the moment it is sent (Sender._maybe_send_pending_request:
    await_ready raises, the request is neither sent nor queued again). After a broker outage the
    call would then wait forever. It runs on a daemon thread, left behind if it is stuck.
    """
    done = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            call()
        except BaseException as exc:
            failure.append(exc)
        finally:
            done.set()

    threading.Thread(target=run, name=f"detector-{what}", daemon=True).start()
    if not done.wait(seconds):
        raise TransactionStalledError(f"{what} did not complete within {seconds:g}s")
    if failure:
        raise failure[0]


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

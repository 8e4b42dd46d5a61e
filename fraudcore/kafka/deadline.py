"""The bound on a blocking transactional call, whichever client library: the port promises that
send_offsets_to_transaction, commit_transaction and abort_transaction end within their
`seconds` (fraudcore/kafka/ports.py), and neither library keeps that promise on its own.

- kafka-python 3.0.12 waits for them without a timeout (fraudcore/kafka/kafka_python/clients.py).
- librdkafka 2.12 waits for send_offsets_to_transaction's TxnOffsetCommit with no timeout when
  the group coordinator's broker dies and is dropped from the metadata before a new coordinator
  was asked for (fraudcore/kafka/confluent/clients.py).

The call runs on a daemon thread, left behind if it is stuck; its producer is then replaced.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from fraudcore.errors import TransactionStalledError


def call_with_deadline(call: Callable[[], None], seconds: float, what: str) -> None:
    """Run a blocking producer call; raise TransactionStalledError if it takes over `seconds`.
    What the call raises in time is raised here."""
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

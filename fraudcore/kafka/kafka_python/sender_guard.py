"""A guard around kafka-python 3.0.12's transactional sender, which loses a request when the
transaction coordinator's broker has just died.

Sender._maybe_send_pending_request sends each transactional request (InitProducerId,
AddOffsetsToTxn, EndTxn, ...) to the coordinator after `client.await_ready(coordinator)`. When
that connection cannot be made (or is in its reconnect backoff, or the node has left the
metadata), await_ready raises; the sender logs "Got an exception when
trying to find a node to send a transactional request to", looks the coordinator up again, and
never queues the request again (it re-queues only when await_ready returns False). The call
waiting for it (init_transactions, send_offsets_to_transaction, commit_transaction,
abort_transaction) then waits out its whole timeout: max_block_ms (60 s) for init_transactions,
TRANSACTION_TIMEOUT_MS for the others, once per call. The Java client re-queues it.

The guard hands the sender a client whose await_ready answers False instead of raising, so the
request goes back into the queue and is sent as soon as the new coordinator is known.
Like workarounds.py, this module may reach into kafka-python's internals;
tests/unit/test_kafka_workarounds.py checks that the code it relies on is still there.
"""

from __future__ import annotations

import time
from typing import Any

from kafka.errors import KafkaError

from kafka import KafkaProducer

# How long the sender waits before it tries a broker it could not reach again: it would spin.
NOT_READY_BACKOFF_SECONDS = 0.05


class _ReadyOrNot:
    """The sender's network client, except that await_ready answers instead of raising."""

    def __init__(self, client: Any) -> None:
        self._wrapped = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._wrapped, name)

    def await_ready(self, node_id: Any, timeout_ms: int = 30_000) -> bool:
        try:
            return bool(self._wrapped.await_ready(node_id, timeout_ms=timeout_ms))
        except KafkaError:  # not connected, in reconnect backoff, or no longer in the metadata
            time.sleep(NOT_READY_BACKOFF_SECONDS)
            return False


def keep_transactional_requests(producer: KafkaProducer) -> None:
    """Make `producer`'s sender queue a transactional request again when the coordinator cannot
    be reached, rather than drop it (see the module docstring). Call it before any transactional
    call; the sender thread reads the attribute afresh for every request."""
    sender = producer._sender
    if not isinstance(sender._client, _ReadyOrNot):
        sender._client = _ReadyOrNot(sender._client)

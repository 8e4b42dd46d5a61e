"""The detector's settings (env names are the field names, upper-cased)."""

from __future__ import annotations

import os
import socket
from decimal import Decimal
from typing import Literal

from pydantic import Field, PositiveInt, field_validator

from fraudcore.codec import DEFAULT_MAX_VALUE_BYTES
from fraudcore.config import CommonSettings
from fraudcore.rule import DEFAULT_THRESHOLD

ProcessingGuarantee = Literal["exactly_once", "at_least_once"]


class DetectorSettings(CommonSettings):
    legit_topic: str = Field("streaming.transactions.legit", min_length=1)
    fraud_topic: str = Field("streaming.transactions.fraud", min_length=1)
    dead_letter_topic: str = Field("streaming.transactions.invalid", min_length=1)
    consumer_group: str = Field("detector", min_length=1)
    fraud_amount_threshold: Decimal = Field(DEFAULT_THRESHOLD, ge=0, allow_inf_nan=False)
    processing_guarantee: ProcessingGuarantee = "exactly_once"
    # One Kafka transaction (or one offset commit) stays open at most this long. exactly_once
    # commits sooner when a poll finds nothing more waiting (its outputs are invisible until then).
    commit_interval_ms: PositiveInt = 100
    max_poll_records: PositiveInt = 2000
    # Unique per running detector. A restart with the same id fences and aborts its old self at
    # once; otherwise the broker aborts a dead instance's open transaction after the timeout.
    transactional_id: str | None = None
    transaction_timeout_ms: PositiveInt = 10_000
    # How long the group waits for a detector that went silent (crashed, SIGKILLed) before its
    # partitions move to the others or to its restarted self. Kafka's default; the broker accepts
    # group.min.session.timeout.ms (6 s) to group.max.session.timeout.ms (30 min).
    session_timeout_ms: PositiveInt = 45_000
    max_transaction_bytes: PositiveInt = DEFAULT_MAX_VALUE_BYTES

    @field_validator("processing_guarantee", mode="before")
    @classmethod
    def _lower_guarantee(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @property
    def effective_transactional_id(self) -> str:
        """Default: group, host and pid, which is unique locally and stable in a container."""
        return (
            self.transactional_id or f"{self.consumer_group}-{socket.gethostname()}-{os.getpid()}"
        )

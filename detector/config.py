"""The detector's settings (env names are the field names, upper-cased)."""

from __future__ import annotations

import socket
import uuid
from decimal import Decimal
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, PositiveInt, PrivateAttr, field_validator, model_validator

from fraudcore.config import CommonSettings
from fraudcore.core import topics
from fraudcore.core.codec import DEFAULT_MAX_VALUE_BYTES
from fraudcore.core.rule import DEFAULT_THRESHOLD
from fraudcore.core.rules.file import RulesFileError, load_rules
from fraudcore.core.rules.ruleset import RuleSet

ProcessingGuarantee = Literal["exactly_once", "at_least_once"]
_VELOCITY_FIELDS = ("velocity_max_transactions", "velocity_window_seconds")
# TRANSACTION_TIMEOUT_MS when unset, on a cluster of more than one broker (for_cluster).
CLUSTER_TRANSACTION_TIMEOUT_MS = 20_000


class DetectorSettings(CommonSettings):
    legit_topic: str = Field(topics.LEGIT_TOPIC, min_length=1)
    fraud_topic: str = Field(topics.FRAUD_TOPIC, min_length=1)
    dead_letter_topic: str = Field(topics.DEAD_LETTER_TOPIC, min_length=1)
    consumer_group: str = Field("detector", min_length=1)
    fraud_amount_threshold: Decimal = Field(DEFAULT_THRESHOLD, ge=0, allow_inf_nan=False)
    processing_guarantee: ProcessingGuarantee = "exactly_once"
    # One Kafka transaction (or one offset commit) stays open at most this long. exactly_once
    # commits sooner when a poll finds nothing more waiting (its outputs are invisible until then).
    commit_interval_ms: PositiveInt = 100
    max_poll_records: PositiveInt = 2000
    # Unset (the default): a new id per process, see effective_transactional_id. Set: this exact
    # id, which must then be unique per running detector (README "Guarantees").
    transactional_id: str | None = Field(None, min_length=1)
    # The broker aborts an open transaction this old (a dead detector's). Unset: this on a single
    # broker, CLUSTER_TRANSACTION_TIMEOUT_MS on a cluster (for_cluster).
    transaction_timeout_ms: PositiveInt = 10_000
    # How long the group waits for a detector that went silent (crashed, SIGKILLed) before its
    # partitions move to the others or to its restarted self. Kafka's default; the broker accepts
    # group.min.session.timeout.ms (6 s) to group.max.session.timeout.ms (30 min).
    session_timeout_ms: PositiveInt = 45_000
    max_transaction_bytes: PositiveInt = DEFAULT_MAX_VALUE_BYTES
    # The velocity rule (fraudcore/core/velocity.py): on when both are set, off when neither is.
    velocity_max_transactions: PositiveInt | None = None
    velocity_window_seconds: float | None = Field(None, gt=0, allow_inf_nan=False)
    # The rules as a YAML file (fraudcore/core/rules/file.py, docs/rules.md); instead of the
    # three settings above, never with them.
    rules_file: Path | None = None
    _rule_set: RuleSet = PrivateAttr()

    @model_validator(mode="after")
    def _one_source_of_rules(self) -> DetectorSettings:
        """RULES_FILE, or FRAUD_AMOUNT_THRESHOLD and VELOCITY_*: both would be ambiguous."""
        if self.rules_file is None:
            self._check_velocity()
            self._rule_set = RuleSet.from_settings(
                self.fraud_amount_threshold,
                self.velocity_max_transactions,
                self.velocity_window_seconds,
            )
            return self
        mixed = sorted(
            name.upper()
            for name in ("fraud_amount_threshold", *_VELOCITY_FIELDS)
            if name in self.model_fields_set
        )
        if mixed:
            raise ValueError(
                f"RULES_FILE={self.rules_file} and {', '.join(mixed)} are both set: two sources "
                "of rules are ambiguous; put every rule in the rules file and unset the others"
            )
        try:
            self._rule_set = load_rules(self.rules_file)
        except RulesFileError as exc:
            raise ValueError(str(exc)) from None
        return self

    @property
    def rule_set(self) -> RuleSet:
        """The rules, in order: the rules file's, or FRAUD_AMOUNT_THRESHOLD's and VELOCITY_*'s."""
        return self._rule_set

    @property
    def changelog_rule_names(self) -> tuple[str, ...]:
        """The rules whose state goes to a changelog topic, in order."""
        rule_set = self._rule_set
        return tuple(rule_set.names[i] for i in rule_set.changelogged)

    def _check_velocity(self) -> None:
        given = {
            "VELOCITY_MAX_TRANSACTIONS": self.velocity_max_transactions,
            "VELOCITY_WINDOW_SECONDS": self.velocity_window_seconds,
        }
        unset = [name for name, value in given.items() if value is None]
        if len(unset) == 1:
            (missing,) = unset
            (present,) = (name for name in given if name != missing)
            raise ValueError(
                f"the velocity rule needs both VELOCITY_MAX_TRANSACTIONS and "
                f"VELOCITY_WINDOW_SECONDS: {present} is set, {missing} is not"
            )

    def for_cluster(self, brokers: int) -> DetectorSettings:
        """These settings on a cluster of `brokers`. A transaction open when a broker dies waits
        out the failover (fencing, new leaders), and it must not time out meanwhile: the broker
        would abort it, and librdkafka times out every record of it at the same age. So unless
        TRANSACTION_TIMEOUT_MS is set, a cluster gets a longer one than a single broker, which
        has no failover: there a short one sooner lets read_committed readers past a dead
        detector's open transaction, and its partitions' next owner read their offsets."""
        if brokers < 2 or "transaction_timeout_ms" in self.model_fields_set:
            return self
        return self.model_copy(update={"transaction_timeout_ms": CLUSTER_TRANSACTION_TIMEOUT_MS})

    @field_validator("processing_guarantee", mode="before")
    @classmethod
    def _lower_guarantee(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @cached_property
    def effective_transactional_id(self) -> str:
        """TRANSACTIONAL_ID, or by default the group, the host name and a random part.

        The random part makes the default unique per process on any network and in any pid
        namespace: replicas that share a host name and a pid (containers on one host network)
        never fence each other by accident. Nothing needs the id to survive a restart: the
        offsets go to the transaction with the consumer's group metadata (KIP-447), so a zombie
        is fenced by its group generation, and the broker aborts a dead process's open
        transaction after TRANSACTION_TIMEOUT_MS. The group is the prefix because the secure
        mode's ACLs grant transactional ids by that prefix. Computed once per settings object.
        """
        if self.transactional_id is not None:
            return self.transactional_id
        return f"{self.consumer_group}-{socket.gethostname()}-{uuid.uuid4().hex[:12]}"

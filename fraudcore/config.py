"""Settings shared by both services, read from the environment in one place.

Settings are built in each service's main(), never at import time, so a bad value is
reported as one clear line and a non-zero exit instead of a traceback.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import (
    Field,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import SettingsConfigDict

from fraudcore.core import topics
from fraudcore.security import KafkaSecuritySettings, is_secret

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
LogFormat = Literal["human", "json"]
# The Kafka client library behind the port (fraudcore/kafka/): kafka-python, or confluent-kafka
# (librdkafka).
KafkaClient = Literal["kafka-python", "confluent"]
# How a consumer group hands out partitions on the confluent client: cooperative (incremental,
# only what moves is revoked) or eager (all revoked, as kafka-python always does).
KafkaAssignment = Literal["cooperative", "eager"]
# The consumer group protocol on the confluent client: classic (JoinGroup/SyncGroup, the
# assignment computed by a member, KAFKA_ASSIGNMENT's choice) or consumer (KIP-848: the broker
# assigns, always incrementally, and owns the session timeout). kafka-python speaks only classic.
KafkaGroupProtocol = Literal["classic", "consumer"]


class SettingsError(ValueError):
    """A setting has a value the service cannot run with. Not retriable."""


class CommonSettings(KafkaSecuritySettings):
    """What both services read. Each field is the env variable of the same name, upper-cased.

    The client security settings (KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_*, KAFKA_SSL_*) come from
    KafkaSecuritySettings (fraudcore/security.py).
    """

    model_config = SettingsConfigDict(frozen=True, env_ignore_empty=True, extra="ignore")

    kafka_broker_url: str = Field(
        "localhost:9092", description="bootstrap servers, host:port[,...]"
    )
    transactions_topic: str = Field(topics.TRANSACTIONS_TOPIC, min_length=1)
    transactions_topic_partitions: PositiveInt = topics.PARTITIONS
    kafka_client: KafkaClient = "kafka-python"
    kafka_assignment: KafkaAssignment = "cooperative"
    kafka_group_protocol: KafkaGroupProtocol = "classic"
    broker_wait_seconds: PositiveFloat = 60.0
    stats_interval_seconds: PositiveFloat = 5.0
    log_level: LogLevel = "INFO"
    # human: one readable line per event; json: one JSON object per line (for log shippers).
    log_format: LogFormat = "human"
    # The client library's own lines: from this level up, at most one per
    # KAFKA_CLIENT_LOG_EVERY_SECONDS (0: all). DEBUG and 0 show all it says, for debugging.
    kafka_client_log_level: LogLevel = "WARNING"
    kafka_client_log_every_seconds: NonNegativeFloat = 10.0
    # /metrics (Prometheus) and /health on this port; unset or 0: no server (fraudcore/metrics.py).
    # 0 is for compose, whose ${VAR:-default} cannot leave a variable unset: replicas that share
    # one network namespace turn it off that way (README "Scaling and metrics").
    metrics_port: int | None = Field(None, ge=0, le=65535)

    # /health answers 503 when the service's loop has not come back from a poll, or has held a
    # batch open without committing it, for longer than this (fraudcore/health.py). Longer than
    # any legitimate pause: a commit and an abort, each bounded by TRANSACTION_TIMEOUT_MS.
    liveness_timeout_seconds: PositiveFloat = 60.0

    @field_validator("metrics_port")
    @classmethod
    def _zero_metrics_port_is_off(cls, value: int | None) -> int | None:
        return value or None

    @field_validator("log_level", "kafka_client_log_level", mode="before")
    @classmethod
    def _upper_log_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower_log_format(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("kafka_group_protocol", mode="before")
    @classmethod
    def _lower_group_protocol(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _group_protocol_fits_the_client(self) -> CommonSettings:
        """The consumer protocol exists only in librdkafka here, and its broker-side assignment
        is always incremental: an eager KAFKA_ASSIGNMENT next to it would be silently ignored."""
        if self.kafka_group_protocol != "consumer":
            return self
        if self.kafka_client != "confluent":
            raise ValueError(
                f"KAFKA_GROUP_PROTOCOL=consumer needs KAFKA_CLIENT=confluent: "
                f"{self.kafka_client} speaks only the classic group protocol"
            )
        if self.kafka_assignment == "eager" and "kafka_assignment" in self.model_fields_set:
            raise ValueError(
                "KAFKA_ASSIGNMENT=eager does not apply with KAFKA_GROUP_PROTOCOL=consumer, whose "
                "broker assigns incrementally: unset KAFKA_ASSIGNMENT, or use "
                "KAFKA_GROUP_PROTOCOL=classic"
            )
        return self

    @field_validator("kafka_broker_url")
    @classmethod
    def _check_bootstrap(cls, value: str) -> str:
        for server in value.split(","):
            host, sep, port = server.strip().rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"expected host:port[,host:port...], got {server.strip()!r}")
        return value

    @property
    def bootstrap_servers(self) -> list[str]:
        return [server.strip() for server in self.kafka_broker_url.split(",")]

    def describe(self) -> str:
        """The effective configuration as one log-friendly line."""
        return " ".join(f"{name.upper()}={value}" for name, value in self.model_dump().items())


SettingsT = TypeVar("SettingsT", bound=CommonSettings)


def load_settings(settings_class: type[SettingsT], **overrides: Any) -> SettingsT:
    """Build settings from the environment, `overrides` (a command's flags) winning over it;
    validation errors become one SettingsError line."""
    try:
        return settings_class(**overrides)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc = error["loc"]
            if not loc:  # a check across settings: its input is every setting, secrets included
                problems.append(error["msg"].removeprefix("Value error, "))
                continue
            name = ".".join(str(part) for part in loc).upper()
            field = settings_class.model_fields.get(str(loc[0]))
            if field is not None and is_secret(field.annotation):
                problems.append(f"{name}=<hidden>: {error['msg']}")  # never echo a secret
            else:
                problems.append(f"{name}={error.get('input')!r}: {error['msg']}")
        raise SettingsError("invalid setting " + "; ".join(problems)) from None

"""Kafka for the services: the project's own vocabulary (types.py), the port every client
library is used through (ports.py), one adapter package per library, and the reading helpers
built on the port (reading.py). `driver()` gives the adapter the settings choose.
"""

from __future__ import annotations

from fraudcore.config import CommonSettings
from fraudcore.kafka.ports import Driver


def driver(settings: CommonSettings) -> Driver:
    """The driver of KAFKA_CLIENT's library. Imported here, on first use, so that only the
    chosen library is loaded."""
    if settings.kafka_client == "confluent":
        from fraudcore.kafka.confluent import ConfluentDriver  # noqa: PLC0415

        return ConfluentDriver()
    from fraudcore.kafka.kafka_python import KafkaPythonDriver  # noqa: PLC0415

    return KafkaPythonDriver()

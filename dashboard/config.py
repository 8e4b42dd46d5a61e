"""The dashboard's settings: the same env names and defaults as the services it watches."""

from __future__ import annotations

import re

from pydantic import Field, PositiveFloat, field_validator

from fraudcore.config import CommonSettings
from fraudcore.core import topics

# A host name (letters, digits, dots, dashes) or an IPv4/IPv6 address.
HOST_PATTERN = re.compile(r"[A-Za-z0-9.\-]+|\[?[0-9A-Fa-f:.]+\]?")


class DashboardSettings(CommonSettings):
    # The defaults of fraudcore/core/topics.py, as in detector/config.py.
    legit_topic: str = Field(topics.LEGIT_TOPIC, min_length=1)
    fraud_topic: str = Field(topics.FRAUD_TOPIC, min_length=1)
    dead_letter_topic: str = Field(topics.DEAD_LETTER_TOPIC, min_length=1)
    consumer_group: str = Field("detector", min_length=1)
    # How often the screen (and the consumer lag) is refreshed.
    dashboard_refresh_seconds: PositiveFloat = 1.0
    # Where `python -m dashboard --web` serves the page. Loopback by default: the page shows
    # account ids and amounts, so exposing it is a decision (the compose service makes it).
    dashboard_host: str = "127.0.0.1"
    dashboard_port: int = Field(8088, ge=1, le=65535)

    @field_validator("dashboard_host")
    @classmethod
    def _check_host(cls, value: str) -> str:
        if not HOST_PATTERN.fullmatch(value):
            raise ValueError("expected a host name or an IP address")
        return value.strip("[]")

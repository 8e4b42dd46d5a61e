"""The dashboard's settings: the same env names and defaults as the services it watches."""

from __future__ import annotations

from pydantic import Field, PositiveFloat

from fraudcore.config import CommonSettings
from fraudcore.core import topics


class DashboardSettings(CommonSettings):
    # The defaults of fraudcore/core/topics.py, as in detector/config.py.
    legit_topic: str = Field(topics.LEGIT_TOPIC, min_length=1)
    fraud_topic: str = Field(topics.FRAUD_TOPIC, min_length=1)
    dead_letter_topic: str = Field(topics.DEAD_LETTER_TOPIC, min_length=1)
    consumer_group: str = Field("detector", min_length=1)
    # How often the screen (and the consumer lag) is refreshed.
    dashboard_refresh_seconds: PositiveFloat = 1.0

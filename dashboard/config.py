"""The dashboard's settings: the same env names and defaults as the services it watches."""

from __future__ import annotations

from pydantic import Field, PositiveFloat

from fraudcore.config import CommonSettings


class DashboardSettings(CommonSettings):
    # As in detector/config.py (tests/unit/test_dashboard.py checks the defaults agree).
    legit_topic: str = Field("streaming.transactions.legit", min_length=1)
    fraud_topic: str = Field("streaming.transactions.fraud", min_length=1)
    dead_letter_topic: str = Field("streaming.transactions.invalid", min_length=1)
    consumer_group: str = Field("detector", min_length=1)
    # How often the screen (and the consumer lag) is refreshed.
    dashboard_refresh_seconds: PositiveFloat = 1.0

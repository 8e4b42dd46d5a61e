"""The generator's settings (env names are the field names, upper-cased)."""

from __future__ import annotations

from pydantic import NonNegativeInt, PositiveFloat, PositiveInt

from fraudcore.config import CommonSettings


class GeneratorSettings(CommonSettings):
    transactions_per_second: PositiveFloat = 1000.0
    transactions_count: PositiveInt | None = None  # unset: run until stopped
    random_seed: NonNegativeInt | None = None

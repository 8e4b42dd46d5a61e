"""The generator's settings (env names are the field names, upper-cased)."""

from __future__ import annotations

from pydantic import NonNegativeInt, PositiveFloat, PositiveInt, field_validator

from fraudcore.config import CommonSettings
from fraudcore.core.model import DEFAULT_ACCOUNT_POOL_SIZE, check_account_pool_size


class GeneratorSettings(CommonSettings):
    transactions_per_second: PositiveFloat = 1000.0
    transactions_count: PositiveInt | None = None  # unset: run until stopped
    random_seed: NonNegativeInt | None = None
    # How many distinct accounts the sources and targets are drawn from. A small pool makes an
    # account repeat often, so that the detector's velocity rule fires in a demo.
    account_pool_size: int = DEFAULT_ACCOUNT_POOL_SIZE

    @field_validator("account_pool_size")
    @classmethod
    def _check_account_pool_size(cls, value: int) -> int:
        return check_account_pool_size(value)

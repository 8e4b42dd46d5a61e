"""The generator's settings (env names are the field names, upper-cased)."""

from __future__ import annotations

from pydantic import NonNegativeInt, PositiveFloat, PositiveInt, field_validator, model_validator

from fraudcore.config import CommonSettings
from fraudcore.core.model import DEFAULT_ACCOUNT_POOL_SIZE, check_account_pool_size
from fraudcore.core.scenarios import Profile, parse_scenarios


class GeneratorSettings(CommonSettings):
    transactions_per_second: PositiveFloat = 1000.0
    transactions_count: PositiveInt | None = None  # unset: run until stopped
    random_seed: NonNegativeInt | None = None
    # How many distinct accounts the sources and targets are drawn from. A small pool makes an
    # account repeat often, so that the detector's velocity rule fires in a demo.
    account_pool_size: int = DEFAULT_ACCOUNT_POOL_SIZE
    # uniform: today's records, byte for byte; realistic: per-account habits
    # (fraudcore/core/scenarios.py).
    generator_profile: Profile = "uniform"
    # name:share,... labelled fraud injected into realistic traffic; unset: none.
    fraud_scenarios: str | None = None

    @property
    def scenario_shares(self) -> dict[str, float]:
        """FRAUD_SCENARIOS parsed (already checked when the settings were made)."""
        return parse_scenarios(self.fraud_scenarios or "")

    @field_validator("fraud_scenarios")
    @classmethod
    def _check_fraud_scenarios(cls, value: str | None) -> str | None:
        if value is not None:
            parse_scenarios(value)
        return value

    @model_validator(mode="after")
    def _scenarios_need_realistic(self) -> GeneratorSettings:
        """Fraud injected into uniform random traffic would be indistinguishable from it."""
        if self.fraud_scenarios and self.generator_profile != "realistic":
            raise ValueError(
                f"FRAUD_SCENARIOS needs GENERATOR_PROFILE=realistic "
                f"(it is {self.generator_profile})"
            )
        return self

    @field_validator("account_pool_size")
    @classmethod
    def _check_account_pool_size(cls, value: int) -> int:
        return check_account_pool_size(value)

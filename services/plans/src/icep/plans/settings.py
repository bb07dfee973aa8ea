from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from icep.platform.settings import ServiceSettings


class PlansSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ICEP_PLANS_", extra="ignore")

    service_name: str = "plans"
    port: int = 8001
    #: A progress report raises a shortfall when actual output falls short of the ramp by more than this.
    shortfall_threshold: float = Field(default=0.1, ge=0.0, lt=1.0)

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from icep.platform.settings import ServiceSettings


class PlansSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ICEP_PLANS_", extra="ignore")

    service_name: str = "plans"
    port: int = 8001

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from icep.platform.settings import ServiceSettings


class ProcurementSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ICEP_PROCUREMENT_", extra="ignore")

    service_name: str = "procurement"
    port: int = 8002

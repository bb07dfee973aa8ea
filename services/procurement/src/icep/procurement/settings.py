from __future__ import annotations

from icep.platform.settings import ServiceSettings
from pydantic_settings import SettingsConfigDict


class ProcurementSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ICEP_PROCUREMENT_", extra="ignore")

    service_name: str = "procurement"
    port: int = 8002

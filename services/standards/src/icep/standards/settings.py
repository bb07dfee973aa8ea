from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from icep.platform.settings import ServiceSettings


class StandardsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ICEP_STANDARDS_", extra="ignore")

    service_name: str = "standards"
    port: int = 8003

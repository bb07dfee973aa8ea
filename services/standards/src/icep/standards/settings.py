from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from icep.platform.settings import ServiceSettings


class StandardsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ICEP_STANDARDS_", extra="ignore")

    service_name: str = "standards"
    port: int = 8003
    #: How often the expiry schedule looks for verified conformance claims whose date has come.
    expiry_interval_seconds: float = Field(default=300.0, gt=0, le=86_400)
    #: Whether a nation's standards staff may verify their own nation's conformance claims. By default
    #: verification is independent: NATO or another nation's test centre.
    allow_self_verification: bool = False

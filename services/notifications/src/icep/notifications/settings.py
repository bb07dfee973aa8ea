from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from icep.platform.settings import ServiceSettings


class NotificationsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ICEP_NOTIFICATIONS_", extra="ignore")

    service_name: str = "notifications"
    port: int = 8004
    #: Seconds to wait before each retry after a failed delivery; when they are used up it failed.
    retry_schedule_seconds: list[float] = Field(
        default_factory=lambda: [5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0]
    )
    request_timeout_seconds: float = 10.0
    #: How much of a receiver's answer is read and kept (the rest is ignored).
    max_response_bytes: int = 4096
    dispatch_concurrency: int = 20
    dispatch_poll_seconds: float = 1.0
    #: Development only: let endpoints be http:// on loopback addresses (local receivers, tests).
    allow_loopback_endpoints: bool = False

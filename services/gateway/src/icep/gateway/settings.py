"""Gateway settings, read from `ICEP_GATEWAY_*` (and the platform-wide `ICEP_AUTH_*`, `ICEP_VAR_DIR`)."""

from __future__ import annotations

from pydantic import model_validator
from pydantic_settings import SettingsConfigDict

from icep.platform.settings import ServiceSettings


class GatewaySettings(ServiceSettings):
    """The token issuer is `auth_issuer` and the audience `auth_audience` (inherited, platform-wide)."""

    model_config = SettingsConfigDict(env_prefix="ICEP_GATEWAY_", extra="ignore")

    service_name: str = "gateway"
    port: int = 8000

    plans_url: str = "http://127.0.0.1:8001"
    procurement_url: str = "http://127.0.0.1:8002"
    standards_url: str = "http://127.0.0.1:8003"
    notifications_url: str = "http://127.0.0.1:8004"

    #: TOML file of the OAuth clients (see deploy/dev-clients.toml).
    clients_file: str = "deploy/dev-clients.toml"
    #: Where the token signing keys live; empty means `<var_dir>/gateway/signing-keys.json`.
    signing_keys_file: str = ""
    token_ttl_seconds: int = 300
    upstream_timeout_seconds: float = 10.0
    max_body_bytes: int = 1024 * 1024

    @model_validator(mode="after")
    def _default_signing_keys_file(self) -> GatewaySettings:
        if not self.signing_keys_file:
            self.signing_keys_file = f"{self.var_dir}/gateway/signing-keys.json"
        return self

    @property
    def upstreams(self) -> dict[str, str]:
        """Upstream name (as in `domain.ROUTES`) -> base URL."""
        return {
            "plans": self.plans_url,
            "procurement": self.procurement_url,
            "standards": self.standards_url,
            "notifications": self.notifications_url,
        }

"""Gateway settings, read from `ICEP_GATEWAY_*` (and the platform-wide `ICEP_AUTH_*`, `ICEP_VAR_DIR`)."""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

from pydantic import Field, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from icep.gateway.edge import parse_networks
from icep.gateway.ratelimit import DEFAULT_TIERS, DEFAULT_TOKEN_LIMIT, async_storage_uri, parse_limits
from icep.platform.settings import ServiceSettings

#: Set on every gateway response unless the response already has them (see `security_headers`).
DEFAULT_SECURITY_HEADERS: dict[str, str] = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_ORIGIN = re.compile(r"^https?://[^/?#\s]+$")


class GatewaySettings(ServiceSettings):
    """The token issuer is `auth_issuer` and the audience `auth_audience` (inherited, platform-wide)."""

    model_config = SettingsConfigDict(env_prefix="ICEP_GATEWAY_", extra="ignore")

    service_name: str = "gateway"
    port: int = 8000

    #: Where the gateway reaches the plans service's API port.
    plans_url: str = "http://127.0.0.1:8001"
    #: Where the gateway reaches the procurement service's API port.
    procurement_url: str = "http://127.0.0.1:8002"
    #: Where the gateway reaches the standards service's API port.
    standards_url: str = "http://127.0.0.1:8003"
    #: Where the gateway reaches the notifications service's API port.
    notifications_url: str = "http://127.0.0.1:8004"

    #: TOML file of the OAuth clients (see deploy/dev-clients.toml).
    clients_file: str = "deploy/dev-clients.toml"
    #: Where the token signing keys live; empty means `<var_dir>/gateway/signing-keys.json`.
    signing_keys_file: str = ""
    #: Lifetime of the access tokens the gateway issues.
    token_ttl_seconds: int = 300
    #: False when an external identity provider (Keycloak, ...) issues the tokens: `ICEP_AUTH_ISSUER` and
    #: `ICEP_AUTH_JWKS_URL` name it, `/oauth/token` sends callers there, and tokens are verified against its
    #: key set over HTTP, as the services do.
    issue_tokens: bool = True
    #: How often (at most) the clients and signing key files are checked for changes, which then apply
    #: without a restart; token requests always check the clients file.
    reload_interval_seconds: float = Field(default=1.0, ge=0)
    #: How long the gateway waits for a service's answer before it answers 504.
    upstream_timeout_seconds: float = 10.0
    #: Connections per upstream for ordinary requests; past that, a request waits for one (up to the
    #: upstream timeout). Event streams never use these: they have a pool of their own.
    upstream_max_connections: int = Field(default=256, ge=1)
    #: Event streams (`GET /v1/events/stream`, or any request that accepts `text/event-stream`) open at once
    #: through this gateway process, all clients together; one more is refused with 503. Each upstream's
    #: stream pool is this large, so an admitted stream never waits for a connection.
    max_streams: int = Field(default=1000, ge=1)
    #: Event streams one client may have open at once through this gateway process; one more is refused
    #: with 429 (a slot frees when a stream ends, however it ends).
    max_streams_per_client: int = Field(default=5, ge=1)
    #: Largest request body the gateway accepts; a larger one is refused with 413.
    max_body_bytes: int = 1024 * 1024
    #: Largest upstream answer (other than an event stream) the gateway buffers; a larger one is a 502.
    #: Ordinary answers are read whole before the caller gets anything, so a service failing mid-answer
    #: gives a 502 problem, never a status line followed by a reset.
    max_response_bytes: int = Field(default=16 * 1024 * 1024, ge=1)
    #: Direct peers (addresses or CIDR networks, e.g. a load balancer's range; `*` for all) whose
    #: `X-Forwarded-For`/`X-Forwarded-Proto`/`X-Forwarded-Host` the gateway believes. A JSON list or a
    #: comma-separated string. Empty (the default): nobody's; the client is the TCP peer.
    forwarded_allow_ips: Annotated[list[str], NoDecode] = Field(default_factory=list)
    #: Where the published API documents are (`icep docs` writes them): served at /openapi.json,
    #: /asyncapi.json and /docs/asyncapi. Relative to the working directory, like `clients_file`.
    api_docs_dir: str = "docs/api"
    #: Where the guides are: the portal serves its `*.md` files and those of its `operations/` folder,
    #: rendered, under /docs/guides (nothing else from it).
    guides_dir: str = "docs"

    #: Requests per client, by the client's `rate_tier`, in `limits` notation ("600/minute", or several
    #: that all apply: "10/second; 600/minute"). A JSON object; tiers it does not name keep their defaults.
    rate_limits: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_TIERS))
    #: Requests to `POST /oauth/token` per client address (against guessing secrets).
    token_rate_limit: str = DEFAULT_TOKEN_LIMIT
    #: Where the counts live: `memory://` (this process only) or `redis://host:6379/0` (shared by replicas).
    rate_limit_storage: str = "memory://"
    #: How long a check may wait for the storage; past that, or when it is down, requests pass (fail open).
    rate_limit_storage_timeout_seconds: float = Field(default=0.5, gt=0)
    #: False turns every rate limit off (the token endpoint's included).
    rate_limit_enabled: bool = True
    #: Browser origins allowed to call the API (JSON list, e.g. ["https://portal.example"]); empty: no CORS.
    cors_origins: list[str] = Field(default_factory=list)
    #: Headers set on every response that lacks them (JSON object); entries override the defaults and an
    #: empty value removes one.
    security_headers: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_SECURITY_HEADERS))
    #: Content-Security-Policy of API responses (not of the developer portal under /docs); empty: none.
    content_security_policy: str = "default-src 'none'; frame-ancestors 'none'"
    #: Content-Security-Policy of the developer portal (/docs and below, and the API documents): only the
    #: gateway itself. Swagger UI's stylesheet draws its icons from `data:` images; the capacity chart is
    #: shown from a `blob:` URL. No inline script anywhere. Empty: none.
    portal_content_security_policy: str = (
        "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    )
    #: Strict-Transport-Security value, sent on requests that came over HTTPS; empty: not sent.
    strict_transport_security: str = ""

    @field_validator("rate_limits")
    @classmethod
    def _tiers(cls, value: dict[str, str]) -> dict[str, str]:
        tiers = {**DEFAULT_TIERS, **value}
        for text in tiers.values():
            parse_limits(text)
        return tiers

    @field_validator("token_rate_limit")
    @classmethod
    def _token_limit(cls, value: str) -> str:
        parse_limits(value)
        return value

    @field_validator("rate_limit_storage")
    @classmethod
    def _storage(cls, value: str) -> str:
        async_storage_uri(value)
        return value

    @field_validator("forwarded_allow_ips", mode="before")
    @classmethod
    def _forwarded_allow_ips(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            value = json.loads(text) if text.startswith("[") else [v for v in text.split(",") if v.strip()]
        if isinstance(value, list):
            parse_networks(str(v) for v in value)  # a bad entry is a ValueError: the setting is refused
        return value

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        bad = [origin for origin in value if origin != "*" and not _ORIGIN.match(origin)]
        if bad:
            raise ValueError(f"CORS origins are scheme://host[:port] without a path, not {bad}")
        return value

    @field_validator("security_headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        merged = dict(DEFAULT_SECURITY_HEADERS)
        for name, header_value in value.items():
            merged = {n: v for n, v in merged.items() if n.lower() != name.lower()}
            merged[name] = header_value
        if any(not _HEADER_NAME.match(name) or "\r" in v or "\n" in v for name, v in merged.items()):
            raise ValueError("security headers need valid names and single-line values")
        return {name: v for name, v in merged.items() if v}

    @model_validator(mode="after")
    def _default_signing_keys_file(self) -> GatewaySettings:
        if not self.signing_keys_file:
            self.signing_keys_file = f"{self.var_dir}/gateway/signing-keys.json"
        return self

    @property
    def upstreams(self) -> dict[str, str]:
        """Upstream name (as in `routing.ROUTES`) -> base URL."""
        return {
            "plans": self.plans_url,
            "procurement": self.procurement_url,
            "standards": self.standards_url,
            "notifications": self.notifications_url,
        }

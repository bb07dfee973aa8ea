"""The gateway app: platform service defaults plus token issuing, JWKS and the proxy.

Run it with `uvicorn icep.gateway.app:create_app --factory --port 8000`.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from icep.gateway import api, audit, docs, portal
from icep.gateway.clients import ClientsFile
from icep.gateway.docs import OPENAPI_FILE
from icep.gateway.edge import (
    CORS_ALLOW_HEADERS,
    CORS_ALLOW_METHODS,
    CORS_EXPOSE_HEADERS,
    ForwardedHeadersMiddleware,
    PathGuardMiddleware,
    SecurityHeadersMiddleware,
    TrustedProxies,
    parse_networks,
)
from icep.gateway.keys import SigningKeys
from icep.gateway.metrics import GatewayRequestMetrics
from icep.gateway.proxy import Proxy, StreamSlots
from icep.gateway.ratelimit import RateLimiter, RateLimitPolicy, RateLimits, TokenRateLimitMiddleware
from icep.gateway.settings import GatewaySettings
from icep.gateway.tokens import TokenIssuer, TokenService
from icep.platform import telemetry
from icep.platform.app import Hook, ServiceSpec, service_app
from icep.platform.auth import TokenVerifier

DESCRIPTION = (
    "The public entry to ICEP. Obtain a token with `POST /oauth/token` (OAuth2 client credentials) and send "
    "it as `Authorization: Bearer <token>` to the `/v1/...` APIs, which the gateway routes to the services."
)


TAGS = [
    {
        "name": "auth",
        "description": (
            "OAuth2 client credentials: `POST /oauth/token` issues short-lived JWTs carrying the client's "
            "nation, roles and scopes; `/.well-known/jwks.json` publishes the keys that verify them. Reads "
            "need the `read` scope, changes `write`."
        ),
    },
    {
        "name": "audit",
        "description": (
            "Who touched the records: every change and other nations' reads, across the services. "
            "Operators only; a nation's operators see the entries of the records their nation owns, NATO's "
            "operators all."
        ),
    },
]


def _issue_own_tokens(app: FastAPI, settings: GatewaySettings) -> None:
    # Both files are reread when they change: `icep clients ...` and `icep keys ...` need no restart.
    keys = SigningKeys.load_or_create(
        settings.signing_keys_file, check_interval=settings.reload_interval_seconds
    )
    issuer = TokenIssuer(
        keys,
        issuer=settings.auth_issuer,
        audience=settings.auth_audience,
        ttl_seconds=settings.token_ttl_seconds,
    )

    async def own_key_set() -> dict[str, object]:
        return keys.jwks()

    app.state.signing_keys = keys
    app.state.token_issuer = issuer
    app.state.token_service = TokenService(
        ClientsFile(settings.clients_file, check_interval=settings.reload_interval_seconds), issuer
    )
    # The gateway checks tokens with its own keys, in process: no HTTP round trip to itself, and a key
    # added by `rotate()` is known at once (hence no refetch throttle for this in-memory source). The keys
    # are looked at again after the reload interval, so a retired key stops verifying here at once.
    app.state.token_verifier = TokenVerifier(
        settings.auth_issuer,
        settings.auth_audience,
        settings.auth_jwks_url,
        jwks_source=own_key_set,
        refresh_interval=0,
        max_key_age=settings.reload_interval_seconds,
        nation_claim=settings.auth_nation_claim,
    )


def gateway_startup(settings: GatewaySettings) -> Hook:
    async def start(app: FastAPI) -> None:
        if settings.issue_tokens:
            _issue_own_tokens(app, settings)
        else:
            # An external identity provider issues the tokens: they are verified against its key set over
            # HTTP by the verifier every service has (made from ICEP_AUTH_*), and /oauth/token points there.
            app.state.signing_keys = None
            app.state.token_service = None
        app.state.rate_limits = _rate_limits(app, settings)
        app.state.proxy = Proxy(
            settings.upstreams,
            timeout=settings.upstream_timeout_seconds,
            max_body_bytes=settings.max_body_bytes,
            rate_limits=app.state.rate_limits,
            max_connections=settings.upstream_max_connections,
            max_response_bytes=settings.max_response_bytes,
            streams=StreamSlots(total=settings.max_streams, per_client=settings.max_streams_per_client),
        )

    return start


def _rate_limits(app: FastAPI, settings: GatewaySettings) -> RateLimits | None:
    if not settings.rate_limit_enabled:
        return None

    def tier_of(client_id: str) -> str | None:
        # Looked up on each request, so a changed clients file applies at once; None for a client the
        # file does not know (a token from an external issuer), which gets the default tier.
        tokens: TokenService | None = app.state.token_service  # None with an external issuer
        client = tokens.clients.get(client_id) if tokens is not None else None
        return None if client is None else str(client.rate_tier)

    limiter = RateLimiter(settings.rate_limit_storage, timeout=settings.rate_limit_storage_timeout_seconds)
    return RateLimits(
        limiter, RateLimitPolicy.from_strings(settings.rate_limits, settings.token_rate_limit), tier_of
    )


async def gateway_shutdown(app: FastAPI) -> None:
    proxy: Proxy | None = getattr(app.state, "proxy", None)
    if proxy is not None:
        await proxy.aclose()
    rate_limits: RateLimits | None = getattr(app.state, "rate_limits", None)
    if rate_limits is not None:
        await rate_limits.aclose()


async def _ready(app: FastAPI) -> bool:
    return hasattr(app.state, "signing_keys") and hasattr(app.state, "proxy")


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    settings = settings or GatewaySettings()
    app = service_app(
        ServiceSpec(
            settings=settings,
            # /v1/audit before the proxy's /v1/...
            routers=[audit.router, api.router, docs.router, portal.router],
            own_api_docs=False,  # docs.router serves the merged documents instead
            title="ICEP gateway",
            tags=TAGS,
            description=DESCRIPTION,
            metadata=None,
            uses_kafka=False,
            startup=[gateway_startup(settings)],
            shutdown=[gateway_shutdown, audit.close_fanout],
            readiness={"gateway": _ready},
        )
    )
    # Outermost last: the client address from trusted proxies only, security headers on everything, CORS
    # answers preflights, the token endpoint's limit inside it (so a 429 carries the CORS headers too) and
    # the path check (before any token is looked at). The request id and the access log are outside all of
    # them (`service_app` installs them, see `icep.platform.logs`): every answer carries the id.
    # Inside the path guard (a refused path is no upstream's call), outside the platform's request metrics
    # (which take the route template it finds).
    app.add_middleware(GatewayRequestMetrics, openapi_file=Path(settings.api_docs_dir) / OPENAPI_FILE)
    app.add_middleware(PathGuardMiddleware)
    app.add_middleware(TokenRateLimitMiddleware)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=list(CORS_ALLOW_METHODS),
            allow_headers=list(CORS_ALLOW_HEADERS),
            expose_headers=list(CORS_EXPOSE_HEADERS),
            allow_credentials=False,  # bearer tokens, never cookies
            max_age=600,
        )
    app.add_middleware(
        SecurityHeadersMiddleware,
        headers=settings.security_headers,
        content_security_policy=settings.content_security_policy,
        docs_content_security_policy=settings.portal_content_security_policy,
        strict_transport_security=settings.strict_transport_security,
    )
    if settings.forwarded_allow_ips:
        # Without trusted proxies there is nothing to do: every header from the peer is the peer's claim.
        app.add_middleware(
            ForwardedHeadersMiddleware, proxies=TrustedProxies(parse_networks(settings.forwarded_allow_ips))
        )
    # The public edge: a partner's trace context is a link of the gateway's own trace, never its parent.
    telemetry.public_edge(app)
    return app

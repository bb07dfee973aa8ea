"""The gateway app: platform service defaults plus token issuing, JWKS and the proxy.

Run it with `uvicorn icep.gateway.app:create_app --factory --port 8000`.
"""

from __future__ import annotations

from fastapi import FastAPI

from icep.gateway import api
from icep.gateway.domain import load_clients
from icep.gateway.service import Proxy, RequestIdMiddleware, SigningKeys, TokenIssuer, TokenService
from icep.gateway.settings import GatewaySettings
from icep.platform.app import Hook, ServiceSpec, service_app
from icep.platform.auth import TokenVerifier

DESCRIPTION = (
    "The public entry to ICEP. Obtain a token with `POST /oauth/token` (OAuth2 client credentials) and send "
    "it as `Authorization: Bearer <token>` to the `/v1/...` APIs, which the gateway routes to the services."
)


def gateway_startup(settings: GatewaySettings) -> Hook:
    async def start(app: FastAPI) -> None:
        keys = SigningKeys.load_or_create(settings.signing_keys_file)
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
        app.state.token_service = TokenService(load_clients(settings.clients_file), issuer)
        # The gateway checks tokens with its own keys, in process: no HTTP round trip to itself, and a key
        # added by `rotate()` is known at once (hence no refetch throttle for this in-memory source).
        app.state.token_verifier = TokenVerifier(
            settings.auth_issuer,
            settings.auth_audience,
            settings.auth_jwks_url,
            jwks_source=own_key_set,
            refresh_interval=0,
        )
        app.state.proxy = Proxy(
            settings.upstreams,
            timeout=settings.upstream_timeout_seconds,
            max_body_bytes=settings.max_body_bytes,
        )

    return start


async def gateway_shutdown(app: FastAPI) -> None:
    proxy: Proxy | None = getattr(app.state, "proxy", None)
    if proxy is not None:
        await proxy.aclose()


async def _ready(app: FastAPI) -> bool:
    return hasattr(app.state, "signing_keys") and hasattr(app.state, "proxy")


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    settings = settings or GatewaySettings()
    app = service_app(
        ServiceSpec(
            settings=settings,
            routers=[api.router],
            title="ICEP gateway",
            description=DESCRIPTION,
            metadata=None,
            uses_kafka=False,
            startup=[gateway_startup(settings)],
            shutdown=[gateway_shutdown],
            readiness={"gateway": _ready},
        )
    )
    app.add_middleware(RequestIdMiddleware)
    return app

"""Browser-facing headers: security headers on every response, caching of proxied answers, HSTS, and CORS.
Gateways and upstreams are real servers on loopback ports."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from icep.gateway.app import create_app

API_CSP = "default-src 'none'; frame-ancestors 'none'"
SECURITY = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}
PORTAL = "https://portal.example"
DEU_SECRET = "deu-secret"  # the test client's secret (conftest.SECRETS)


def _upstream() -> Starlette:
    async def plain(request: Request) -> Response:
        return JSONResponse({"ok": True}, headers={"ETag": '"1"', "Idempotent-Replayed": "false"})

    async def cacheable(request: Request) -> Response:
        return JSONResponse({"ok": True}, headers={"Cache-Control": "private, max-age=60"})

    return Starlette(
        routes=[
            Route("/v1/standards/cacheable", cacheable),
            Route("/v1/{rest:path}", plain, methods=["GET", "POST", "PUT", "DELETE"]),
        ]
    )


@pytest.fixture
async def upstream_url(server: Any) -> AsyncIterator[str]:
    async with server(_upstream()) as url:
        yield url


@pytest.fixture
def settings_for(make_settings: Any, upstream_url: str) -> Any:
    routes = {f"{name}_url": upstream_url for name in ("plans", "standards", "notifications", "procurement")}
    return lambda **overrides: make_settings(**{**routes, **overrides})


def _assert_secured(response: httpx.Response, *, csp: str | None = API_CSP) -> None:
    where = f"{response.request.method} {response.request.url.path} -> {response.status_code}"
    for name, value in SECURITY.items():
        assert response.headers.get(name) == value, (where, name)
    assert response.headers.get("content-security-policy") == csp, where
    assert "strict-transport-security" not in response.headers, where


async def test_every_kind_of_response_carries_the_security_headers(
    server: Any, settings_for: Any, http: httpx.AsyncClient, get_token: Any, refusing_port: Any
) -> None:
    with refusing_port() as closed:
        settings = settings_for(
            procurement_url=f"http://127.0.0.1:{closed}",
            rate_limits={"standard": "6/hour"},
            token_rate_limit="3/hour",
        )
        async with server(create_app(settings)) as url:
            auth = {"Authorization": f"Bearer {await get_token(url)}"}
            bad_client = await http.post(
                f"{url}/oauth/token", data={"grant_type": "client_credentials"}, auth=("nobody", "x")
            )
            token_ok = await http.post(
                f"{url}/oauth/token",
                data={"grant_type": "client_credentials"},
                auth=("deu-planner", DEU_SECRET),
            )
            token_refused = await http.post(f"{url}/oauth/token", data={"grant_type": "client_credentials"})
            answers = {
                "proxied": await http.get(f"{url}/v1/plans", headers=auth),
                "proxied-post": await http.post(f"{url}/v1/plans", headers=auth, json={}),
                "no-token": await http.get(f"{url}/v1/plans"),
                "unrouted": await http.get(f"{url}/v1/nowhere", headers=auth),
                "upstream-down": await http.get(f"{url}/v1/initiatives", headers=auth),
                "too-large": await http.post(f"{url}/v1/plans", headers=auth, content=b"x" * 5000),
                "jwks": await http.get(f"{url}/.well-known/jwks.json"),
                "health": await http.get(f"{url}/healthz"),
                "token-ok": token_ok,
                "token-bad-client": bad_client,
                "token-refused": token_refused,
            }
            answers["over-budget"] = [await http.get(f"{url}/v1/plans", headers=auth) for _ in range(3)][-1]

    assert {name: r.status_code for name, r in answers.items()} == {
        "proxied": 200,
        "proxied-post": 200,
        "no-token": 401,
        "unrouted": 404,
        "upstream-down": 503,
        "too-large": 413,
        "jwks": 200,
        "health": 200,
        "token-ok": 200,
        "token-bad-client": 401,
        "token-refused": 429,
        "over-budget": 429,
    }
    for response in answers.values():
        _assert_secured(response)


async def test_proxied_answers_are_not_cached_unless_the_service_says_so(
    server: Any, settings_for: Any, http: httpx.AsyncClient, get_token: Any
) -> None:
    async with server(create_app(settings_for())) as url:
        auth = {"Authorization": f"Bearer {await get_token(url)}"}
        plain = await http.get(f"{url}/v1/plans", headers=auth)
        cacheable = await http.get(f"{url}/v1/standards/cacheable", headers=auth)
        refused = await http.get(f"{url}/v1/plans")
        jwks = await http.get(f"{url}/.well-known/jwks.json")
        token = await http.post(
            f"{url}/oauth/token", data={"grant_type": "client_credentials"}, auth=("deu-planner", DEU_SECRET)
        )
    assert plain.headers.get_list("cache-control") == ["no-store"]
    assert cacheable.headers.get_list("cache-control") == ["private, max-age=60"]
    assert refused.headers.get_list("cache-control") == ["no-store"]
    # The gateway's own endpoints keep their own policies.
    assert jwks.headers.get_list("cache-control") == ["public, max-age=60"]
    assert token.headers.get_list("cache-control") == ["no-store"]


async def test_the_docs_pages_get_the_portals_content_security_policy(
    server: Any, settings_for: Any, http: httpx.AsyncClient
) -> None:
    async with server(create_app(settings_for())) as url:
        # The portal loads the gateway's own scripts and styles: the API's `default-src 'none'` would
        # break it, so it gets its own policy (only the gateway itself); the other security headers apply.
        for path in ("/docs", "/docs/oauth2-redirect", "/openapi.json", "/asyncapi.json"):
            response = await http.get(f"{url}{path}")
            for name, value in SECURITY.items():
                assert response.headers.get(name) == value, (path, name)
            policy = response.headers.get("content-security-policy", "")
            assert "default-src 'self'" in policy and "default-src 'none'" not in policy, path
        assert (await http.get(f"{url}/docsx")).headers["content-security-policy"] == API_CSP


async def test_security_headers_are_configurable(
    server: Any, settings_for: Any, http: httpx.AsyncClient
) -> None:
    settings = settings_for(
        security_headers={"x-frame-options": "", "Permissions-Policy": "geolocation=()"},
        content_security_policy="",
    )
    async with server(create_app(settings)) as url:
        response = await http.get(f"{url}/healthz")
    assert "x-frame-options" not in response.headers
    assert "content-security-policy" not in response.headers
    assert response.headers["permissions-policy"] == "geolocation=()"
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_no_hsts_unless_configured(server: Any, settings_for: Any, http: httpx.AsyncClient) -> None:
    # (With it configured, HSTS follows the scheme a trusted proxy reports: see test_gateway_forwarded.)
    async with server(create_app(settings_for(forwarded_allow_ips=["127.0.0.1"]))) as url:
        https = await http.get(f"{url}/healthz", headers={"X-Forwarded-Proto": "https"})
    assert "strict-transport-security" not in https.headers


# --- CORS -----------------------------------------------------------------------------------------------


def _preflight(
    origin: str, method: str = "POST", headers: str = "authorization, content-type"
) -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": headers,
    }


async def test_cors_preflight_from_an_allowed_origin(
    server: Any, settings_for: Any, http: httpx.AsyncClient
) -> None:
    async with server(create_app(settings_for(cors_origins=[PORTAL]))) as url:
        wanted = "authorization, content-type, if-match, idempotency-key, last-event-id, x-request-id"
        response = await http.options(f"{url}/v1/plans/7", headers=_preflight(PORTAL, "PATCH", wanted))
        token = await http.options(f"{url}/oauth/token", headers=_preflight(PORTAL, "POST", "content-type"))
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == PORTAL
    allowed = {h.strip().lower() for h in response.headers["access-control-allow-headers"].split(",")}
    assert set(wanted.split(", ")) <= allowed
    assert "PATCH" in response.headers["access-control-allow-methods"]
    assert response.headers["access-control-max-age"] == "600"
    assert "access-control-allow-credentials" not in response.headers  # bearer tokens, not cookies
    _assert_secured(response)
    assert (token.status_code, token.headers["access-control-allow-origin"]) == (200, PORTAL)


async def test_cors_preflight_from_another_origin_is_refused(
    server: Any, settings_for: Any, http: httpx.AsyncClient
) -> None:
    async with server(create_app(settings_for(cors_origins=[PORTAL]))) as url:
        other_origin = await http.options(f"{url}/v1/plans", headers=_preflight("https://evil.example"))
        other_header = await http.options(f"{url}/v1/plans", headers=_preflight(PORTAL, "GET", "x-secret"))
    for response in (other_origin, other_header):
        assert response.status_code == 400
        assert response.headers.get("access-control-allow-origin") != "https://evil.example"
        _assert_secured(response)
    assert "access-control-allow-origin" not in other_origin.headers


async def test_cors_answers_expose_the_headers_a_browser_client_needs(
    server: Any, settings_for: Any, http: httpx.AsyncClient, get_token: Any
) -> None:
    settings = settings_for(cors_origins=[PORTAL], rate_limits={"standard": "2/hour"})
    async with server(create_app(settings)) as url:
        auth = {"Authorization": f"Bearer {await get_token(url)}"}
        # Preflights are answered before the token check and the rate limit: they cost no budget.
        for _ in range(3):
            assert (await http.options(f"{url}/v1/plans", headers=_preflight(PORTAL))).status_code == 200
        allowed = await http.get(f"{url}/v1/plans", headers={**auth, "Origin": PORTAL})
        stranger = await http.get(f"{url}/v1/plans", headers={**auth, "Origin": "https://evil.example"})
        refused = await http.get(f"{url}/v1/plans", headers={**auth, "Origin": PORTAL})

    assert allowed.status_code == 200
    assert allowed.headers["ratelimit-remaining"] == "1"  # the preflights were not counted
    assert allowed.headers["access-control-allow-origin"] == PORTAL
    exposed = {h.strip().lower() for h in allowed.headers["access-control-expose-headers"].split(",")}
    assert exposed >= {
        "etag",
        "location",
        "retry-after",
        "ratelimit-limit",
        "ratelimit-remaining",
        "ratelimit-reset",
        "ratelimit-policy",
        "x-request-id",
        "idempotent-replayed",
    }
    assert "access-control-allow-origin" not in stranger.headers
    # A browser can read the 429 (and its Retry-After) too.
    assert refused.status_code == 429
    assert refused.headers["access-control-allow-origin"] == PORTAL


async def test_no_cors_unless_origins_are_configured(
    server: Any, settings_for: Any, http: httpx.AsyncClient
) -> None:
    async with server(create_app(settings_for())) as url:
        preflight = await http.options(f"{url}/v1/plans", headers=_preflight(PORTAL))
        plain = await http.get(f"{url}/healthz", headers={"Origin": PORTAL})
    assert preflight.status_code == 401  # an ordinary OPTIONS request, which needs a token
    assert not [name for name in preflight.headers if name.lower().startswith("access-control-")]
    assert "access-control-allow-origin" not in plain.headers


@pytest.mark.parametrize(
    "origin", ["portal.example", "https://portal.example/", "https://portal.example/app"]
)
def test_cors_origins_must_be_origins(make_settings: Any, origin: str) -> None:
    with pytest.raises(ValueError, match="CORS origins"):
        make_settings(cors_origins=[origin])

"""The gateway's HTTP surface: the token endpoint, the JWKS, and the proxy for everything under /v1."""

from __future__ import annotations

import base64
import binascii
from typing import Any
from urllib.parse import parse_qsl, unquote_plus

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from icep.gateway.keys import SigningKeys
from icep.gateway.models import JsonWebKeySet, OAuthError, TokenResponse
from icep.gateway.proxy import Proxy
from icep.gateway.tokens import OAuthFailure, TokenService
from icep.platform.auth import Principal, PrincipalDep, current_principal
from icep.platform.errors import NotFound

router = APIRouter()

#: RFC 6749 section 5.1: token responses must not be cached.
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_MAX_FORM_BYTES = 16 * 1024
_PROXIED_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]

_TOKEN_REQUEST_BODY: dict[str, Any] = {
    # The client authenticates with HTTP Basic or with its id and secret in the form (the empty entry).
    "security": [{"ClientSecretBasic": []}, {}],
    "requestBody": {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "required": ["grant_type"],
                    "properties": {
                        "grant_type": {"type": "string", "enum": ["client_credentials"]},
                        "scope": {
                            "type": "string",
                            "description": "Space-separated subset of the client's scopes.",
                        },
                        "client_id": {"type": "string", "description": "When not using HTTP Basic."},
                        "client_secret": {"type": "string", "description": "When not using HTTP Basic."},
                    },
                },
                "example": {"grant_type": "client_credentials", "scope": "read"},
            }
        },
    },
}


@router.post(
    "/oauth/token",
    operation_id="issueToken",
    tags=["auth"],
    summary="Obtain an access token (OAuth2 client credentials)",
    description=(
        "RFC 6749 client credentials grant. Authenticate with HTTP Basic (client id and secret) or with "
        "`client_id` and `client_secret` form fields. The token is a short-lived JWT carrying the client's "
        "nation, roles and the granted scopes (`scope`: a space-separated subset of the client's; default "
        "all of them); send it as `Authorization: Bearer <token>` and get a new one when it expires "
        "(`expires_in`). Token requests are rate-limited per client address (429 with `Retry-After`). "
        "With an external identity provider configured, this answers `unsupported_grant_type` naming it. "
        "Errors use the RFC 6749 error format."
    ),
    response_model=TokenResponse,
    responses={
        400: {"model": OAuthError, "description": "Malformed request, unsupported grant or invalid scope"},
        401: {"model": OAuthError, "description": "Client authentication failed"},
        429: {"description": "Too many token requests from this address (problem JSON, with Retry-After)"},
        500: {"description": "A bug (problem JSON)"},
    },
    openapi_extra=_TOKEN_REQUEST_BODY,
)
async def issue_token(request: Request) -> Response:
    tokens: TokenService | None = request.app.state.token_service
    if tokens is None:
        issuer = request.app.state.token_verifier.issuer
        return _oauth_error(
            OAuthFailure(
                "unsupported_grant_type",
                f"this gateway issues no tokens: obtain one from the identity provider {issuer}",
            )
        )
    try:
        form = await _form(request)
        client_id, client_secret = _client_credentials(request, form)
        token = await tokens.client_credentials(
            grant_type=form.get("grant_type"),
            client_id=client_id,
            client_secret=client_secret,
            scope=form.get("scope"),
        )
    except OAuthFailure as failure:
        return _oauth_error(failure)
    return JSONResponse(token.model_dump(), headers=_NO_STORE)


@router.get(
    "/.well-known/jwks.json",
    operation_id="getJwks",
    tags=["auth"],
    summary="The public keys that verify access tokens",
    description=(
        "The JSON Web Key Set of the keys the gateway signs access tokens with (RFC 7517), public: services "
        "and partners verify tokens against it. A rotated-in key appears here before it signs; cache it "
        "briefly (`Cache-Control: max-age=60`) and fetch again on an unknown `kid`. 404 when an external "
        "issuer signs the tokens (its own key set is named in the problem)."
    ),
    response_model=JsonWebKeySet,
    responses={404: {"description": "This gateway signs no tokens: an external issuer does (problem JSON)"}},
    openapi_extra={"security": []},  # public: anyone verifying a token needs the keys
)
async def jwks(request: Request) -> Response:
    keys: SigningKeys | None = request.app.state.signing_keys
    if keys is None:
        verifier = request.app.state.token_verifier
        raise NotFound(
            f"this gateway signs no tokens: they come from {verifier.issuer}, whose keys are at "
            f"{verifier.jwks_url}"
        )
    # Short cache: a rotated-in key must reach verifiers soon (they also refetch on an unknown kid).
    return JSONResponse(keys.jwks(), headers={"Cache-Control": "public, max-age=60"})


async def active_principal(request: Request, principal: PrincipalDep) -> Principal:
    """The verified caller, unless the gateway issued the token and has disabled the client since."""
    tokens: TokenService | None = request.app.state.token_service
    if tokens is not None:
        tokens.ensure_active(principal.client_id)
    return principal


class Forward:
    """Everything under /v1 belongs to a service; the token is checked here first (`active_principal`),
    and again there.

    A plain ASGI route, not a FastAPI endpoint: every partner request takes this path, and FastAPI's
    handling around an endpoint (solving dependencies, wrapping the call) cost a sixth of the gateway's
    CPU per request. What it raises reaches the same exception handlers, as problem JSON."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive, send)
        await active_principal(request, await current_principal(request))
        proxy: Proxy = request.app.state.proxy
        response = await proxy.forward(request)
        await response(scope, receive, send)


router.routes.append(Route("/v1/{path:path}", Forward(), methods=_PROXIED_METHODS, include_in_schema=False))


async def _form(request: Request) -> dict[str, str]:
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise OAuthFailure("invalid_request", "the body must be application/x-www-form-urlencoded")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > _MAX_FORM_BYTES:
            raise OAuthFailure("invalid_request", "the request body is too large")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(body))
    except (UnicodeDecodeError, ValueError):
        raise OAuthFailure("invalid_request", "the form body is malformed") from None
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            # RFC 6749 section 3.2: parameters must not be included more than once.
            raise OAuthFailure("invalid_request", f"the parameter {name!r} is repeated")
        form[name] = value
    return form


def _client_credentials(request: Request, form: dict[str, str]) -> tuple[str | None, str | None]:
    authorization = request.headers.get("authorization")
    if authorization is None:
        return form.get("client_id"), form.get("client_secret")
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() != "basic":
        raise OAuthFailure("invalid_client", "client authentication must use HTTP Basic", status=401)
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise OAuthFailure("invalid_client", "the Basic credentials are malformed", status=401) from None
    raw_id, colon, raw_secret = decoded.partition(":")
    if not colon:
        raise OAuthFailure("invalid_client", "the Basic credentials are malformed", status=401)
    # RFC 6749 section 2.3.1: id and secret are form-urlencoded before they go into the Basic header.
    client_id, client_secret = unquote_plus(raw_id), unquote_plus(raw_secret)
    if "client_secret" in form:
        raise OAuthFailure("invalid_request", "use one client authentication method, not two")
    if form.get("client_id", client_id) != client_id:
        raise OAuthFailure("invalid_request", "client_id differs from the authenticated client")
    return client_id, client_secret


def _oauth_error(failure: OAuthFailure) -> JSONResponse:
    headers = dict(_NO_STORE)
    if failure.status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="icep", charset="UTF-8"'
    body = OAuthError.model_validate({"error": failure.error, "error_description": failure.description})
    return JSONResponse(body.model_dump(exclude_none=True), status_code=failure.status, headers=headers)

"""Issuing access tokens: the OAuth 2.0 client credentials grant against the clients file."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Iterable

import jwt

from icep.gateway.clients import Client, ClientRegistry, ClientsFile
from icep.gateway.keys import SIGNING_ALGORITHM, SigningKeys
from icep.gateway.models import TokenResponse
from icep.platform.errors import Unauthorized

log = logging.getLogger("icep.gateway")

# --- tokens -------------------------------------------------------------------------------------------


class TokenIssuer:
    """Signs short-lived access tokens (JWT, RFC 9068 shape) for authenticated clients."""

    def __init__(self, keys: SigningKeys, *, issuer: str, audience: str, ttl_seconds: int) -> None:
        self.keys = keys
        self.issuer = issuer
        self.audience = audience
        self.ttl_seconds = ttl_seconds

    def issue(self, client: Client, scopes: Iterable[str] | None = None) -> tuple[str, int]:
        """A signed token for `client` (with `scopes`, default all of the client's) and its lifetime."""
        self.keys.refresh(now=True)  # sign with the newest key, even one rotated in a moment ago
        now = int(time.time())
        granted = sorted(client.scopes if scopes is None else scopes)
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": client.client_id,
            "client_id": client.client_id,
            "nation": client.nation,
            "roles": sorted(client.roles),
            "scope": " ".join(granted),
            "iat": now,
            "nbf": now,
            "exp": now + self.ttl_seconds,
            "jti": uuid.uuid4().hex,
        }
        key = self.keys.current
        token = jwt.encode(
            claims, key.private_key, algorithm=SIGNING_ALGORITHM, headers={"kid": key.kid, "typ": "at+jwt"}
        )
        return token, self.ttl_seconds


class OAuthFailure(Exception):
    """An RFC 6749 section 5.2 error: `error` is the registered code, `status` 400 or 401."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status


class TokenService:
    """The client-credentials grant: authenticate the client, narrow the scopes, issue the token."""

    def __init__(
        self, clients: ClientsFile | ClientRegistry, issuer: TokenIssuer, *, concurrent_checks: int = 4
    ) -> None:
        self._clients = clients
        self.issuer = issuer
        # Secret checks run scrypt (CPU and 16 MiB each) in threads; bounding them keeps a burst of token
        # requests from starving the proxy or exhausting memory.
        self._checks = asyncio.Semaphore(concurrent_checks)

    async def client_credentials(
        self, *, grant_type: str | None, client_id: str | None, client_secret: str | None, scope: str | None
    ) -> TokenResponse:
        if not grant_type:
            raise OAuthFailure("invalid_request", "grant_type is required")
        if grant_type != "client_credentials":
            raise OAuthFailure("unsupported_grant_type", "only the client_credentials grant is supported")
        if not client_id or client_secret is None:
            raise OAuthFailure("invalid_client", "client authentication is required", status=401)
        # The file is looked at on every token request: a client disabled a moment ago gets no token.
        registry = self._registry(now=True)
        async with self._checks:
            client = await asyncio.to_thread(registry.authenticate, client_id, client_secret)
        if client is None:
            log.info("token refused: client authentication failed for %r", client_id)
            raise OAuthFailure("invalid_client", "client authentication failed", status=401)
        scopes = client.grantable_scopes(scope)
        if scopes is None:
            raise OAuthFailure("invalid_scope", "the requested scope exceeds what this client may have")
        token, expires_in = self.issuer.issue(client, scopes)
        log.info("issued token to %s (%s)", client.client_id, client.nation)
        return TokenResponse(access_token=token, expires_in=expires_in, scope=" ".join(sorted(scopes)))

    @property
    def clients(self) -> ClientRegistry:
        """The registry as it is now (reread when the clients file changed)."""
        return self._registry()

    def _registry(self, *, now: bool = False) -> ClientRegistry:
        return self._clients.registry(now=now) if isinstance(self._clients, ClientsFile) else self._clients

    def ensure_active(self, client_id: str) -> None:
        """Refuse (401) the token of a client disabled or removed since it was issued: its tokens would
        otherwise work until they expire. (A service called directly still accepts them until then.)"""
        client = self.clients.get(client_id)
        if client is None or client.disabled:
            state = "disabled" if client is not None else "no longer registered"
            raise Unauthorized(f"the client {client_id!r} is {state}; its tokens are refused")

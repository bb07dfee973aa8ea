"""OAuth 2.0 client credentials as an `httpx.Auth`: one token is fetched, cached and used by every
request until shortly before it expires; a 401 fetches a fresh token once and sends the request again
(the platform may have rotated its signing key, or the token may have expired in flight)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Callable, Generator
from dataclasses import dataclass

import httpx

from icep_client.errors import TokenError

__all__ = ["ClientCredentials", "Token"]


@dataclass(frozen=True)
class Token:
    access_token: str
    #: When it expires, on the credentials' clock (monotonic seconds).
    expires_at: float
    lifetime: float


class ClientCredentials(httpx.Auth):
    """Bearer tokens from `token_url` for `client_id` (HTTP Basic with the secret, as the platform asks).

    `refresh_margin` seconds before expiry (at most half the token's lifetime) the next request fetches
    a new token. Concurrent requests share one fetch."""

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: str,
        *,
        scope: str | None = None,
        refresh_margin: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.token_url = token_url
        self.client_id = client_id
        self._secret = client_secret
        self.scope = scope
        self.refresh_margin = refresh_margin
        self.clock = clock
        self.token: Token | None = None
        #: How many tokens were fetched (for tests and metrics).
        self.fetched = 0
        self._lock = asyncio.Lock()

    def _fresh(self, token: Token | None) -> bool:
        if token is None:
            return False
        margin = min(self.refresh_margin, token.lifetime / 2)
        return self.clock() < token.expires_at - margin

    def _token_request(self) -> httpx.Request:
        form = {"grant_type": "client_credentials", **({"scope": self.scope} if self.scope else {})}
        request = httpx.Request("POST", self.token_url, data=form, headers={"Accept": "application/json"})
        basic = httpx.BasicAuth(self.client_id, self._secret)
        return next(basic.auth_flow(request))

    def _keep(self, response: httpx.Response, asked_at: float) -> Token:
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code != 200 or not isinstance(body, dict) or "access_token" not in body:
            body = body if isinstance(body, dict) else {}
            raise TokenError(
                response.status_code,
                str(body.get("error") or body.get("title") or response.reason_phrase),
                str(body.get("error_description") or body.get("detail") or response.text[:300]),
            )
        lifetime = float(body.get("expires_in") or 300)
        self.token = Token(str(body["access_token"]), asked_at + lifetime, lifetime)
        self.fetched += 1
        return self.token

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        async with self._lock:
            token = self.token
            if not self._fresh(token):
                asked_at = self.clock()
                answer = yield self._token_request()
                await answer.aread()
                token = self._keep(answer, asked_at)
        assert token is not None
        request.headers["Authorization"] = f"Bearer {token.access_token}"
        response = yield request
        if response.status_code != 401:
            return
        # Once: a fresh token, unless another request fetched one meanwhile.
        async with self._lock:
            if self.token is None or self.token.access_token == token.access_token:
                asked_at = self.clock()
                answer = yield self._token_request()
                await answer.aread()
                self._keep(answer, asked_at)
            assert self.token is not None
            request.headers["Authorization"] = f"Bearer {self.token.access_token}"
        yield request

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        raise RuntimeError("icep-client is asynchronous: use it with httpx.AsyncClient")
        yield request  # pragma: no cover (makes this a generator)

"""The proxy's HTTP clients to the services, behind one small interface (`UpstreamAnswer`).

aiohttp carries the proxied traffic: its C-accelerated HTTP/1.1 writer and parser cost about a seventh of
httpx's CPU per request (measured side by side against the same local server: 0.12 against 0.85 ms),
and the proxy is on the path of every partner request. Two things it cannot do are left to httpx:

- aiohttp writes header values as UTF-8 text, so a value that is not valid UTF-8 (HTTP field values are
  octets; Latin-1 `café` is `caf\\xe9`) could not go on as received. Such a request, rare and never the
  platform's own, goes through httpx, which sends the octets unchanged.
- nothing else: event streams, bodies and every answer go through aiohttp otherwise.

Neither client follows redirects, keeps cookies, reads proxies from the environment or decompresses: the
caller gets what the service sent. No aiohttp instrumentation exists at the version of OpenTelemetry the
platform uses, so the proxy makes its CLIENT span itself (`icep.platform.telemetry.http_client_call`);
httpx's instrumentation makes the fallback's.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Protocol

import aiohttp
import httpx

from icep.platform.outgoing import plain_session

#: The failures of either client that mean "no usable answer" (the proxy maps them to 502/503/504).
CONNECT_ERRORS: tuple[type[BaseException], ...] = (httpx.ConnectError, aiohttp.ClientConnectorError)
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (httpx.TransportError, aiohttp.ClientError)
#: An answer that broke off while its body was read.
BROKEN_OFF: tuple[type[BaseException], ...] = (TimeoutError, *TRANSPORT_ERRORS)


class UpstreamAnswer(Protocol):
    """A service's answer, its head read and its body not yet."""

    @property
    def status(self) -> int: ...

    @property
    def raw_headers(self) -> list[tuple[bytes, bytes]]: ...

    def header(self, name: str) -> str | None: ...

    def chunks(self) -> AsyncIterator[bytes]: ...

    async def aclose(self) -> None: ...


class AiohttpAnswer:
    __slots__ = ("_response",)

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    @property
    def status(self) -> int:
        return self._response.status

    @property
    def raw_headers(self) -> list[tuple[bytes, bytes]]:
        return list(self._response.raw_headers)

    def header(self, name: str) -> str | None:
        return self._response.headers.get(name)

    async def chunks(self) -> AsyncIterator[bytes]:
        content = self._response.content
        while True:
            chunk = await content.readany()
            if not chunk:
                return
            yield chunk

    async def aclose(self) -> None:
        # Released to the pool when read to the end, else the connection is closed (never reused half-read).
        if self._response.content.at_eof():
            self._response.release()
        else:
            self._response.close()


class HttpxAnswer:
    __slots__ = ("_response",)

    def __init__(self, response: httpx.Response) -> None:
        self._response = response

    @property
    def status(self) -> int:
        return self._response.status_code

    @property
    def raw_headers(self) -> list[tuple[bytes, bytes]]:
        return list(self._response.headers.raw)

    def header(self, name: str) -> str | None:
        value: str | None = self._response.headers.get(name)
        return value

    def chunks(self) -> AsyncIterator[bytes]:
        return self._response.aiter_raw()

    async def aclose(self) -> None:
        await self._response.aclose()


def is_utf8_text(headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether every header value is valid UTF-8 (so aiohttp sends the very octets received)."""
    for _, value in headers:
        if not value.isascii():
            try:
                value.decode("utf-8")
            except UnicodeDecodeError:
                return False
    return True


def aiohttp_session(max_connections: int) -> aiohttp.ClientSession:
    """A pooled session for one service. Idle connections are dropped before the services' keep-alive timeout
    (75 s, see `icep serve`). Made in the running loop (aiohttp binds a session to it)."""
    connector = aiohttp.TCPConnector(
        limit=max_connections, limit_per_host=0, keepalive_timeout=30, enable_cleanup_closed=False
    )
    # Transparent: send what the caller sent, not the client's defaults.
    return plain_session(
        connector, skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type")
    )


def httpx_client(max_connections: int) -> httpx.AsyncClient:
    """The fallback client (header values that are not UTF-8), as transparent as the aiohttp sessions."""
    client = httpx.AsyncClient(
        timeout=httpx.Timeout(30.0, read=None),
        limits=httpx.Limits(
            max_connections=max_connections,
            max_keepalive_connections=min(64, max_connections),
            keepalive_expiry=30,
        ),
        follow_redirects=False,
        trust_env=False,
        cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
    )
    for name in ("user-agent", "accept", "accept-encoding"):
        del client.headers[name]
    return client


def decoded(headers: list[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    """Header pairs as aiohttp takes them (valid UTF-8, checked by `is_utf8_text`)."""
    return [(name.decode("latin-1"), value.decode("utf-8")) for name, value in headers]


def with_context(headers: list[tuple[str, str]], carrier: Mapping[str, str]) -> list[tuple[str, str]]:
    """`headers` with the trace context (`traceparent`, ...) of `carrier`, the caller's own replaced."""
    if not carrier:
        return headers
    names = {name.lower() for name in carrier}
    return [(n, v) for n, v in headers if n.lower() not in names] + list(carrier.items())

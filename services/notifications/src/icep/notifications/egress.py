"""Connections to webhook endpoints: resolve the host once, check every address, dial what was checked.

A check made before the request and a second look-up when connecting leave a gap (DNS rebinding: a name
answers with a public address first and a private one a moment later). So the check lives where the
connection is made: `CheckedNetworkBackend` resolves the host itself, refuses it when any of its
addresses is not public, and connects to one of those very addresses. httpcore still knows the request
by its host name, so TLS sends that name (SNI) and verifies the certificate against it, and the `Host`
header carries it too.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Iterable, Mapping

import httpcore
import httpx

from icep.notifications.domain import address_allowed


class BlockedAddress(Exception):
    """The endpoint's host resolves to an address webhooks may not be sent to."""


class CheckedResolver:
    """Host name -> the addresses to dial, each of them allowed (or `BlockedAddress`).

    `static_hosts` (development: host -> IP) is consulted before DNS, like /etc/hosts; what it answers is
    checked like any DNS answer.
    """

    def __init__(self, *, allow_loopback: bool, static_hosts: Mapping[str, str] | None = None) -> None:
        self.allow_loopback = allow_loopback
        self.static_hosts = {k.rstrip(".").lower(): v for k, v in (static_hosts or {}).items()}

    async def addresses(self, host: str, port: int) -> list[str]:
        fixed = self.static_hosts.get(host.rstrip(".").lower())
        if fixed is not None:
            found = [fixed]
        else:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except (OSError, UnicodeError) as exc:
                raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
            found = list(dict.fromkeys(str(info[4][0]) for info in infos))
        if not found:
            raise httpcore.ConnectError(f"cannot resolve {host}: no addresses")
        for address in found:
            if not address_allowed(address, allow_loopback=self.allow_loopback):
                # All or nothing: a name with one private address among public ones is refused.
                raise BlockedAddress(f"{host} resolves to {address}, which is not a public address")
        return found


class CheckedNetworkBackend(httpcore.AsyncNetworkBackend):
    """An httpcore network backend that dials the checked addresses of a host instead of its name."""

    def __init__(self, resolver: CheckedResolver, inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self.resolver = resolver
        self.inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        last: Exception | None = None
        for address in await self.resolver.addresses(host, port):
            try:
                return await self.inner.connect_tcp(
                    address,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc  # the next address of the same (checked) answer
        assert last is not None
        raise last

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise BlockedAddress("webhooks are not sent to unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class CheckedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport (so tracing and everything else still see it) on a pool that connects through a
    `CheckedNetworkBackend`. Never through a proxy: the endpoint is called directly or not at all."""

    def __init__(
        self, resolver: CheckedResolver, limits: httpx.Limits, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        super().__init__(limits=limits, trust_env=False)
        self._pool = httpcore.AsyncConnectionPool(
            # (trust_env: SSL_CERT_FILE may name the CA bundle to trust)
            ssl_context=ssl_context or httpx.create_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=CheckedNetworkBackend(resolver),
        )


def webhook_client(
    *, allow_loopback: bool, static_hosts: Mapping[str, str], timeout: float, max_connections: int
) -> httpx.AsyncClient:
    """The dispatcher's HTTP client: checked addresses only, no redirects, no proxies from the environment."""
    transport = CheckedTransport(
        CheckedResolver(allow_loopback=allow_loopback, static_hosts=static_hosts),
        httpx.Limits(max_connections=max_connections),
    )
    return httpx.AsyncClient(transport=transport, timeout=timeout, follow_redirects=False, trust_env=False)


__all__ = [
    "BlockedAddress",
    "CheckedNetworkBackend",
    "CheckedResolver",
    "CheckedTransport",
    "webhook_client",
]

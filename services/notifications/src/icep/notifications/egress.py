"""Connections to webhook endpoints: resolve the host once, check every address, dial what was checked.

A check made before the request and a second look-up when connecting leave a gap (DNS rebinding: a name
answers with a public address first and a private one a moment later). So the check lives where the
connection is made: `CheckedNetworkBackend` resolves the host itself, refuses it when any of its
addresses is not public, and connects to one of those very addresses. httpcore still knows the request
by its host name, so TLS sends that name (SNI) and verifies the certificate against it, and the `Host`
header carries it too.

A deployment may also narrow where webhooks go at all (`AllowedHosts`, the `allowed_hosts` setting): a
host it does not list is refused before any look-up, so the service never asks DNS about it, let alone
connects to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import re
import socket
import ssl
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpcore
import httpx

from icep.notifications.domain import address_allowed
from icep.platform.errors import Unprocessable


class BlockedAddress(Exception):
    """The endpoint's host resolves to an address webhooks may not be sent to."""


def canonical_host(host: str) -> str:
    """A host as the allow-list compares it: without brackets, lower case, without the trailing dot, an
    internationalised name in its ASCII (IDNA) form as it is dialled, an IP address in its normal
    spelling (an IPv4-mapped IPv6 address as the IPv4 address a dual-stack socket reaches)."""
    name = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        pass
    else:
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ip)
    name = name.lower()
    if name.endswith("."):
        name = name[:-1]
    if not name.isascii():
        # httpx's own encoding, so the name compared is the one the connection is made for (one that
        # cannot be encoded is dialled by no one, and matches nothing ASCII).
        with contextlib.suppress(httpx.InvalidURL, UnicodeError):
            name = httpx.URL(f"https://{name}/").raw_host.decode("ascii")
    return name


_LABEL = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)")


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _is_host_name(name: str) -> bool:
    """A DNS name, whose last label is not a number (`10.0.0`, `215.14` are address fragments)."""
    labels = name.split(".")
    return len(name) <= 253 and all(_LABEL.fullmatch(label) for label in labels) and not labels[-1].isdigit()


@dataclass(frozen=True)
class AllowedHosts:
    """The hosts webhooks may go to: `None` patterns (the default) allow any host (whose addresses are
    still checked); a list allows only what it names, plus the `static_hosts` names.

    A pattern is a host name (`hooks.partner.example`), a suffix pattern (`*.mod.example`: any name
    under `mod.example`, not `mod.example` itself) or an IP address (an IP-literal endpoint is refused
    unless its address is listed). Compared without case and trailing dot (`canonical_host`).
    """

    restricted: bool = False
    names: frozenset[str] = frozenset()
    suffixes: tuple[str, ...] = ()

    @classmethod
    def of(cls, patterns: Iterable[str] | None, static_hosts: Collection[str] = ()) -> AllowedHosts:
        """The allow-list `patterns` (and the static hosts) describe; `ValueError` for a pattern that
        is neither a host name, nor `*.` and a host name, nor an IP address."""
        if patterns is None:
            return cls()
        names = {canonical_host(h) for h in static_hosts}
        suffixes: list[str] = []
        for pattern in patterns:
            text = pattern.strip()
            wildcard = text.startswith("*.")
            found = canonical_host(text[2:] if wildcard else text)
            if _is_address(found):
                if wildcard:
                    raise ValueError(f"{pattern!r}: a suffix pattern names a domain, not an address")
                names.add(found)
            elif not _is_host_name(found):
                raise ValueError(f"{pattern!r} is not a host name, a *.suffix pattern or an IP address")
            elif wildcard:
                suffixes.append("." + found)
            else:
                names.add(found)
        return cls(restricted=True, names=frozenset(names), suffixes=tuple(dict.fromkeys(suffixes)))

    def allows(self, host: str) -> bool:
        if not self.restricted:
            return True
        name = canonical_host(host)
        if name in self.names:
            return True
        # A suffix pattern covers names under its domain, never an address.
        return not _is_address(name) and any(name.endswith(s) and len(name) > len(s) for s in self.suffixes)

    def check_endpoint(self, url: str) -> None:
        """`Unprocessable` (on `url`) when the endpoint's host is not allowed; `url` passed
        `validate_endpoint`."""
        if self.restricted and not self.allows(urlsplit(url).hostname or ""):
            raise Unprocessable(
                "the endpoint's host is not on this deployment's list of allowed webhook hosts",
                field="url",
            )


class CheckedResolver:
    """Host name -> the addresses to dial, each of them allowed (or `BlockedAddress`).

    A host `allowed` does not list is refused before anything is looked up. `static_hosts`
    (development: host -> IP) is consulted before DNS, like /etc/hosts; what it answers is checked like
    any DNS answer.
    """

    def __init__(
        self,
        *,
        allow_loopback: bool,
        static_hosts: Mapping[str, str] | None = None,
        allowed: AllowedHosts | None = None,
    ) -> None:
        self.allow_loopback = allow_loopback
        self.static_hosts = {canonical_host(k): v for k, v in (static_hosts or {}).items()}
        self.allowed = allowed if allowed is not None else AllowedHosts()

    async def addresses(self, host: str, port: int) -> list[str]:
        if not self.allowed.allows(host):
            # Before any look-up: a host that is not allowed is not even asked about.
            raise BlockedAddress(f"{host} is not on the list of allowed webhook hosts")
        fixed = self.static_hosts.get(canonical_host(host))
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
    *,
    allow_loopback: bool,
    static_hosts: Mapping[str, str],
    timeout: float,
    max_connections: int,
    allowed: AllowedHosts | None = None,
) -> httpx.AsyncClient:
    """The dispatcher's HTTP client: allowed hosts and checked addresses only, no redirects, no proxies
    from the environment."""
    transport = CheckedTransport(
        CheckedResolver(allow_loopback=allow_loopback, static_hosts=static_hosts, allowed=allowed),
        httpx.Limits(max_connections=max_connections),
    )
    return httpx.AsyncClient(transport=transport, timeout=timeout, follow_redirects=False, trust_env=False)


__all__ = [
    "AllowedHosts",
    "BlockedAddress",
    "CheckedNetworkBackend",
    "CheckedResolver",
    "CheckedTransport",
    "canonical_host",
    "webhook_client",
]

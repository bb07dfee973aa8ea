"""Connections to webhook endpoints: resolve the host once, check every address, dial what was checked.

A check made before the request and a second look-up when connecting leave a gap (DNS rebinding: a name
answers with a public address first and a private one a moment later). So the check lives where the
connection is made: aiohttp asks `CheckedAiohttpResolver` for the host's addresses, which resolves the
host itself, refuses it when any of its addresses is not public, and answers with those very addresses,
which aiohttp dials (it keeps no DNS cache here). aiohttp still knows the request by its host name, so TLS
sends that name (SNI) and verifies the certificate against it, and the `Host` header carries it too.

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
from collections.abc import AsyncIterator, Collection, Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
import httpx
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from icep.notifications.subscriptions.endpoint import address_allowed
from icep.platform.errors import Unprocessable
from icep.platform.outgoing import plain_session


class BlockedAddress(Exception):
    """The endpoint's host resolves to an address webhooks may not be sent to."""


class CannotResolve(OSError):
    """The endpoint's host has no address (an `OSError`, as a failed look-up is to any client)."""


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
        # The client's own encoding (yarl's, aiohttp dials it), so the name compared is the one the
        # connection is made for (one that cannot be encoded is dialled by no one, and matches nothing ASCII).
        with contextlib.suppress(ValueError, UnicodeError):
            name = URL.build(scheme="https", host=name).raw_host or name
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
                raise CannotResolve(
                    getattr(exc, "errno", None) or 0, f"cannot resolve {host}: {exc}"
                ) from exc
            found = list(dict.fromkeys(str(info[4][0]) for info in infos))
        if not found:
            raise CannotResolve(0, f"cannot resolve {host}: no addresses")
        for address in found:
            if not address_allowed(address, allow_loopback=self.allow_loopback):
                # All or nothing: a name with one private address among public ones is refused.
                raise BlockedAddress(f"{host} resolves to {address}, which is not a public address")
        return found


class CheckedAiohttpResolver(AbstractResolver):
    """aiohttp's resolver interface over `CheckedResolver`: aiohttp dials exactly the addresses returned
    (each allowed), while the request keeps the host name for TLS (SNI, certificate) and `Host`."""

    def __init__(self, resolver: CheckedResolver) -> None:
        self.resolver = resolver

    async def resolve(
        self,
        host: str,
        port: int = 0,
        family: socket.AddressFamily = socket.AF_INET,  # noqa: ARG002 (aiohttp passes it by name)
    ) -> list[ResolveResult]:
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in await self.resolver.addresses(host, port)
        ]

    async def close(self) -> None:
        return None


def _literal_to_aiohttp(host: str) -> bool:
    """Whether aiohttp takes `host` for an address and dials it without asking the resolver (its own rule,
    wider than ours: `127.1` and `2130706433` are such hosts)."""
    return ":" in host or host.replace(".", "").isdigit()


class WebhookClient:
    """The dispatcher's HTTP client: allowed hosts and checked addresses only.

    aiohttp asks the resolver about host names only; an IP-literal endpoint is dialled as it is written,
    so its address is checked here before the request (the same check, and nothing can rebind a literal).
    """

    def __init__(self, resolver: CheckedResolver, session: aiohttp.ClientSession) -> None:
        self.resolver = resolver
        self.session = session

    @contextlib.asynccontextmanager
    async def post(
        self, url: str, *, data: bytes, headers: Mapping[str, str] | None = None
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        target = URL(url)
        host = target.raw_host or ""
        if _is_address(canonical_host(host)) or _literal_to_aiohttp(host):
            await self.resolver.addresses(host, target.port or 0)
        async with self.session.post(target, data=data, headers=headers, allow_redirects=False) as response:
            yield response

    async def close(self) -> None:
        await self.session.close()


def webhook_client(
    *,
    allow_loopback: bool,
    static_hosts: Mapping[str, str],
    max_connections: int,
    allowed: AllowedHosts | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> WebhookClient:
    """The dispatcher's HTTP client: allowed hosts and checked addresses only (looked up again for every new
    connection: no DNS cache), no redirects, no proxies from the environment, no cookies kept from one
    partner's answer for the next, answers read raw (never decompressed). The dispatcher bounds each
    exchange as a whole. Made in the running loop (aiohttp binds a session to it)."""
    resolver = CheckedResolver(allow_loopback=allow_loopback, static_hosts=static_hosts, allowed=allowed)
    connector = aiohttp.TCPConnector(
        resolver=CheckedAiohttpResolver(resolver),
        use_dns_cache=False,
        limit=max_connections,
        limit_per_host=0,
        keepalive_timeout=30,
        # (trust_env: SSL_CERT_FILE may name the CA bundle to trust)
        ssl=ssl_context or httpx.create_ssl_context(),
    )
    return WebhookClient(
        resolver, plain_session(connector, skip_auto_headers=("User-Agent", "Accept-Encoding"))
    )


__all__ = [
    "AllowedHosts",
    "BlockedAddress",
    "CheckedAiohttpResolver",
    "CheckedResolver",
    "WebhookClient",
    "canonical_host",
    "webhook_client",
]

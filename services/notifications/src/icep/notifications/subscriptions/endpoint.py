"""Where a subscription may send: the syntax of an endpoint URL and the addresses a webhook may reach."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Collection
from urllib.parse import urlsplit

from icep.platform.errors import Unprocessable

#: The NAT64 well-known prefix (RFC 6052): the last 32 bits are the IPv4 address the gateway reaches.
NAT64_PREFIX = ipaddress.IPv6Network("64:ff9b::/96")


def _public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return ip.is_global and not (
        ip.is_multicast or ip.is_reserved or ip.is_link_local or ip.is_private or ip.is_unspecified
    )


def address_allowed(address: str, *, allow_loopback: bool) -> bool:
    """Only public addresses, so a webhook cannot be aimed at the platform's own network.

    An IPv6 address that carries an IPv4 address the packets end up at (IPv4-mapped, NAT64, 6to4,
    Teredo) is judged by that IPv4 address too: `2002:a9fe:a9fe::` is the metadata service in disguise.
    """
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if ip.is_unspecified:  # 0.0.0.0 and :: reach the host itself
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            # A dual-stack socket connects to the IPv4 address itself: judge it as that address.
            return address_allowed(str(ip.ipv4_mapped), allow_loopback=allow_loopback)
        if ip in NAT64_PREFIX:
            # The NAT64 gateway connects to the embedded IPv4 address; only a public one is fine.
            return _public(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        embedded: list[ipaddress.IPv4Address] = []
        if ip.sixtofour is not None:
            embedded.append(ip.sixtofour)
        if ip.teredo is not None:
            embedded.extend(ip.teredo)  # (server, client)
        if not all(_public(v4) for v4 in embedded):
            return False
    if ip.is_loopback:
        return allow_loopback
    return _public(ip)


#: Alternative IPv4 spellings that resolvers accept (`2130706433`, `0x7f.1`, `127.1`): a public DNS
#: name never ends in a numeric label, so such a host is refused rather than resolved.
_NUMERIC_LABEL = re.compile(r"(0x[0-9a-f]*|[0-9]+)", re.IGNORECASE)


def validate_endpoint(url: str, *, allow_loopback: bool, loopback_names: Collection[str] = ()) -> str:
    """Syntax rules for an endpoint; the addresses are checked again when connecting.

    `loopback_names` are host names a development setting points at loopback addresses: with
    `allow_loopback` they are local endpoints like `localhost` (http allowed); without it, just names.
    """
    if not url.isprintable() or any(c.isspace() for c in url):
        # urlsplit drops tabs and newlines silently; what is stored must be what is called.
        raise Unprocessable("the endpoint must not contain spaces or control characters", field="url")
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError for a port that is not a number or out of range
    except ValueError as exc:
        raise Unprocessable(f"the endpoint is not a valid URL: {exc}", field="url") from exc
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise Unprocessable("the endpoint must be an absolute https URL", field="url")
    if port is not None and not 1 <= port <= 65535:
        raise Unprocessable("the endpoint's port must be between 1 and 65535", field="url")
    if parts.username or parts.password:
        raise Unprocessable("the endpoint must not carry credentials", field="url")
    host = parts.hostname
    if any(c in "%\\" for c in host):
        raise Unprocessable("the endpoint's host name is not valid", field="url")
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if ip is None and _NUMERIC_LABEL.fullmatch(host.rstrip(".").rsplit(".", 1)[-1]):
        raise Unprocessable("the endpoint's host is neither a host name nor an IP address", field="url")
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # `::ffff:127.0.0.1` is 127.0.0.1 to a dual-stack socket
    is_loopback_name = (
        host.rstrip(".") == "localhost"
        or (ip is not None and ip.is_loopback)
        or (allow_loopback and host.rstrip(".").lower() in loopback_names)
    )
    if parts.scheme == "http" and not (allow_loopback and is_loopback_name):
        raise Unprocessable("the endpoint must use https", field="url")
    if is_loopback_name and not allow_loopback:
        raise Unprocessable("the endpoint must be a public address", field="url")
    if ip is not None and not address_allowed(str(ip), allow_loopback=allow_loopback):
        raise Unprocessable("the endpoint must be a public address", field="url")
    return url

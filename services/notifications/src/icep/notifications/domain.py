"""Notifications: the rules for subscriptions and deliveries, in plain Python."""

from __future__ import annotations

import ipaddress
import re
import secrets
from base64 import b64encode
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum
from fnmatch import fnmatchcase
from urllib.parse import urlsplit

from icep.contracts import Releasability
from icep.platform.errors import Unprocessable


class SubscriptionStatus(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    DISABLED = "disabled"


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


def new_signing_secret() -> str:
    """A Standard Webhooks secret: `whsec_` and 32 random bytes in base64."""
    return "whsec_" + b64encode(secrets.token_bytes(32)).decode()


def validate_event_patterns(patterns: list[str]) -> list[str]:
    """Patterns like `icep.plans.*` or an exact type; `*` matches within and across dots."""
    clean = []
    for p in patterns:
        p = p.strip()
        if not p or not all(c.isalnum() or c in "._*-" for c in p):
            raise Unprocessable(f"{p!r} is not an event type pattern", field="event_types")
        clean.append(p)
    return clean or ["*"]


def matches(patterns: list[str], event_type: str) -> bool:
    return any(fnmatchcase(event_type, p) for p in patterns)


def entitled(subscriber_nation: str, releasability: Releasability) -> bool:
    """A subscriber gets an event only when its nation may see what the event describes."""
    return releasability.allows(subscriber_nation)


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


def validate_endpoint(url: str, *, allow_loopback: bool) -> str:
    """Syntax rules for an endpoint; the addresses are checked again when connecting."""
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
    is_loopback_name = host.rstrip(".") == "localhost" or (ip is not None and ip.is_loopback)
    if parts.scheme == "http" and not (allow_loopback and is_loopback_name):
        raise Unprocessable("the endpoint must use https", field="url")
    if is_loopback_name and not allow_loopback:
        raise Unprocessable("the endpoint must be a public address", field="url")
    if ip is not None and not address_allowed(str(ip), allow_loopback=allow_loopback):
        raise Unprocessable("the endpoint must be a public address", field="url")
    return url


#: A receiver may ask for a pause, but not for one longer than a day: the schedule resumes after it.
MAX_RETRY_AFTER_SECONDS = 24 * 3600.0


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds a `Retry-After` header asks to wait (RFC 9110: delay-seconds or an HTTP-date), capped at
    a day; None when it is absent or not understood."""
    if value is None:
        return None
    value = value.strip()
    if re.fullmatch(r"[0-9]+", value):  # ASCII digits only: "²".isdigit() is True
        # Long digit strings are capped before converting (int() refuses very long ones).
        if len(value) > 9:
            return MAX_RETRY_AFTER_SECONDS
        return min(float(int(value)), MAX_RETRY_AFTER_SECONDS)
    try:
        when = parsedate_to_datetime(value)
    except (ValueError, TypeError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # `-0000`: UTC without saying where
        when = when.replace(tzinfo=UTC)
    return min(max((when - now).total_seconds(), 0.0), MAX_RETRY_AFTER_SECONDS)


@dataclass(frozen=True)
class RetrySchedule:
    delays: tuple[float, ...]

    def next_delay(self, attempts_made: int) -> float | None:
        """Seconds until the next try after `attempts_made` failures, or None when it has failed for good."""
        if attempts_made < 1:
            return 0.0
        if attempts_made <= len(self.delays):
            return self.delays[attempts_made - 1]
        return None

    @staticmethod
    def honour_retry_after(delay: float, retry_after: str | None, now: datetime) -> float:
        """A 429/503 answer's `Retry-After` pushes the next try later, never earlier."""
        asked = parse_retry_after(retry_after, now)
        return delay if asked is None else max(delay, asked)

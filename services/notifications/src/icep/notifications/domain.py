"""Notifications: the rules for subscriptions and deliveries, in plain Python."""

from __future__ import annotations

import ipaddress
import secrets
from base64 import b64encode
from dataclasses import dataclass
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


def address_allowed(address: str, *, allow_loopback: bool) -> bool:
    """Only public addresses, so a webhook cannot be aimed at the platform's own network."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return allow_loopback
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_link_local or ip.is_private)


def validate_endpoint(url: str, *, allow_loopback: bool) -> str:
    """Syntax rules for an endpoint; the addresses are checked again when connecting."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise Unprocessable("the endpoint must be an absolute https URL", field="url")
    if parts.username or parts.password:
        raise Unprocessable("the endpoint must not carry credentials", field="url")
    host = parts.hostname
    literal: str | None = None
    try:
        literal = str(ipaddress.ip_address(host))
    except ValueError:
        literal = None
    is_loopback_name = host == "localhost" or (
        literal is not None and ipaddress.ip_address(literal).is_loopback
    )
    if parts.scheme == "http" and not (allow_loopback and is_loopback_name):
        raise Unprocessable("the endpoint must use https", field="url")
    if is_loopback_name and not allow_loopback:
        raise Unprocessable("the endpoint must be a public address", field="url")
    if literal is not None and not address_allowed(literal, allow_loopback=allow_loopback):
        raise Unprocessable("the endpoint must be a public address", field="url")
    return url


@dataclass(frozen=True)
class RetrySchedule:
    delays: tuple[float, ...]

    def next_delay(self, attempts_made: int) -> float | None:
        """Seconds until the next try after `attempts_made` failures, or None when it has failed for good."""
        if attempts_made - 1 < len(self.delays):
            return self.delays[attempts_made - 1]
        return None

    @staticmethod
    def honour_retry_after(delay: float, retry_after: str | None) -> float:
        """A 429/503 answer's `Retry-After` (seconds) pushes the next try later, never earlier."""
        if retry_after and retry_after.strip().isdigit():
            return max(delay, float(retry_after.strip()))
        return delay

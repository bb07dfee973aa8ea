"""Notifications: the rules for subscriptions and deliveries, in plain Python."""

from __future__ import annotations

import ipaddress
import re
import secrets
from base64 import b64encode
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum
from fnmatch import fnmatchcase
from typing import Any, Protocol
from urllib.parse import urlsplit

from standardwebhooks import Webhook

from icep.contracts import Releasability
from icep.contracts.nations import ALLIES, NATO, PARTNERS
from icep.platform.errors import IllegalTransition, Unprocessable


class SubscriptionStatus(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    DISABLED = "disabled"
    #: Deleted by its owner: kept (with its delivery history) but gone from the API and sent nothing.
    DELETED = "deleted"


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


# --- filters ---------------------------------------------------------------------------------------

#: Nation codes a `nations` filter may name: the Allies, the partners and NATO staff.
KNOWN_NATIONS: frozenset[str] = ALLIES | PARTNERS | {NATO}


def validate_nations(nations: Sequence[str]) -> list[str]:
    """A `nations` filter: the owning nations (the event's `nation`) a subscriber wants; empty means any.
    It only narrows what the subscriber is entitled to see, so any known nation may be named."""
    clean: list[str] = []
    for n in nations:
        code = n.strip().upper()
        if code not in KNOWN_NATIONS:
            raise Unprocessable(f"{n!r} is not a known nation code", field="nations")
        if code not in clean:
            clean.append(code)
    return clean


def _term_key(term: str) -> str:
    """Capability areas and products are free text: compared without case and extra spaces."""
    return " ".join(term.split()).casefold()


def validate_terms(values: Sequence[str], field: str) -> list[str]:
    """A capability area or product filter: trimmed, without duplicates; empty means any."""
    clean: list[str] = []
    seen: set[str] = set()
    for v in values:
        term = " ".join(v.split())
        if not term or len(term) > 200 or not term.isprintable():
            raise Unprocessable(f"{v!r} is not a valid {field} entry", field=field)
        if _term_key(term) not in seen:
            seen.add(_term_key(term))
            clean.append(term)
    return clean


def _data_values(data: Mapping[str, Any], singular: str, plural: str) -> set[str] | None:
    """The values an event's data has for a filtered field (`product` or a `products` list), or None
    when it has neither field."""
    found: set[str] = set()
    present = False
    one = data.get(singular)
    if isinstance(one, str):
        present = True
        found.add(_term_key(one))
    many = data.get(plural)
    if isinstance(many, list):
        present = True
        found.update(_term_key(v) for v in many if isinstance(v, str))
    return found if present else None


@dataclass(frozen=True)
class SubscriptionFilters:
    """What a subscriber asked for. Every non-empty filter must pass; entitlement is checked apart."""

    event_types: tuple[str, ...] = ("*",)
    nations: tuple[str, ...] = ()
    capability_areas: tuple[str, ...] = ()
    products: tuple[str, ...] = ()

    def accepts(self, event_type: str, nation: str, data: Mapping[str, Any]) -> bool:
        """The type matches a pattern, the owning nation is one of `nations`, and the data's
        `capability_area`/`capability_areas` and `product`/`products` meet the filters. An event whose
        data has no such field does not pass a filter on it."""
        if not matches(list(self.event_types), event_type):
            return False
        if self.nations and nation not in self.nations:
            return False
        for wanted, singular, plural in (
            (self.capability_areas, "capability_area", "capability_areas"),
            (self.products, "product", "products"),
        ):
            if not wanted:
                continue
            values = _data_values(data, singular, plural)
            if values is None or values.isdisjoint(_term_key(w) for w in wanted):
                return False
        return True


def term_keys(values: Sequence[str]) -> list[str]:
    """Capability areas or products as the filters compare them (the feed narrows in SQL with these)."""
    return sorted({_term_key(v) for v in values})


def event_terms(data: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """The capability areas and the products an event's data names, as `term_keys` gives them."""
    areas = _data_values(data, "capability_area", "capability_areas") or set()
    products = _data_values(data, "product", "products") or set()
    return sorted(areas), sorted(products)


# --- the subscription's life -----------------------------------------------------------------------


class SubscriptionAction(StrEnum):
    PAUSE = "pause"
    #: Also re-enables a disabled subscription.
    RESUME = "resume"
    DISABLE = "disable"
    DELETE = "delete"


_S = SubscriptionStatus
_A = SubscriptionAction
_TRANSITIONS: dict[tuple[SubscriptionStatus, SubscriptionAction], SubscriptionStatus] = {
    (_S.ACTIVE, _A.PAUSE): _S.PAUSED,
    (_S.PAUSED, _A.RESUME): _S.ACTIVE,
    (_S.DISABLED, _A.RESUME): _S.ACTIVE,
    (_S.ACTIVE, _A.DISABLE): _S.DISABLED,
    (_S.PAUSED, _A.DISABLE): _S.DISABLED,
    (_S.ACTIVE, _A.DELETE): _S.DELETED,
    (_S.PAUSED, _A.DELETE): _S.DELETED,
    (_S.DISABLED, _A.DELETE): _S.DELETED,
}


def next_status(current: SubscriptionStatus, action: SubscriptionAction) -> SubscriptionStatus:
    """The state machine: active <-> paused, active|paused -> disabled -> (resume) active, any -> deleted.
    A paused subscription's deliveries wait and go on resume; a disabled one gets none."""
    found = _TRANSITIONS.get((current, action))
    if found is None:
        raise IllegalTransition("subscription", action.value, current.value)
    return found


# --- signing ---------------------------------------------------------------------------------------


class SigningKeys(Protocol):
    """A subscription's secrets: the current one and, for a grace period after a rotation, the previous."""

    @property
    def secret(self) -> str: ...

    @property
    def previous_secret(self) -> str | None: ...

    @property
    def previous_secret_expires_at(self) -> datetime | None: ...


def previous_secret_valid(keys: SigningKeys, at: datetime) -> bool:
    expires = keys.previous_secret_expires_at
    if keys.previous_secret is None or expires is None:
        return False
    if expires.tzinfo is None:  # SQLite hands back naive datetimes; the service stores UTC
        expires = expires.replace(tzinfo=UTC)
    return at < expires


def signatures_for(subscription: SigningKeys, msg_id: str, timestamp: datetime, body: str) -> str:
    """The `webhook-signature` header of a message sent at `timestamp`: `v1,<sig>` with the current
    secret and, while the previous secret is in its grace period, `v1,<sig>` with that one too
    (space-separated, as Standard Webhooks allows), so receivers verify with either while they switch."""
    signatures = [Webhook(subscription.secret).sign(msg_id, timestamp, body)]
    if subscription.previous_secret is not None and previous_secret_valid(subscription, timestamp):
        signatures.append(Webhook(subscription.previous_secret).sign(msg_id, timestamp, body))
    return " ".join(signatures)


#: The type of the test message `POST /v1/subscriptions/{id}/ping` sends (never on Kafka).
PING_EVENT_TYPE = "icep.notifications.ping.v1"


def ping_body(msg_id: str, subscription_id: str, nation: str, at: datetime) -> dict[str, Any]:
    """A ping shaped like every other message (the event envelope), with a small `data`."""
    return {
        "id": msg_id,
        "type": PING_EVENT_TYPE,
        "source": "/icep/notifications",
        "subject": subscription_id,
        "time": at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "nation": nation,
        "releasableto": nation,
        "data": {"subscription_id": subscription_id, "message": "ping"},
    }


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

"""Rate-limit rules in plain Python: the tiers, the limits in each, and what a caller is told about them.

Limits are written in the `limits` library's notation: `"600/minute"`, or several at once, all of which
apply, `"10/second; 600/minute"`. A client's tier is the `rate_tier` of its entry in the clients file; the
token endpoint has one more limit, per client address, against guessing secrets (and burning scrypt).

What a caller sees follows the IETF RateLimit header fields draft: `RateLimit-Limit`, `RateLimit-Remaining`
and `RateLimit-Reset` (seconds) of the limit closest to running out, `RateLimit-Policy` listing every limit
as `<requests>;w=<window seconds>`, and on a refusal `Retry-After` (seconds).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from limits import RateLimitItem, parse_many

#: The tiers a client can be in, and their limits. Settings may change these or add tiers.
DEFAULT_TIERS: Mapping[str, str] = {
    "standard": "600/minute",
    "bulk": "6000/minute",
    "restricted": "60/minute",
}
#: The tier of a client that names none, or names one the settings do not define, or that the gateway's
#: clients file does not know (a token from an external issuer).
DEFAULT_TIER = "standard"
#: Token requests per client address: far above what a partner system needs with 5-minute tokens.
DEFAULT_TOKEN_LIMIT = "60/minute"

RATE_LIMIT_HEADERS: tuple[str, ...] = (
    "RateLimit-Limit",
    "RateLimit-Remaining",
    "RateLimit-Reset",
    "RateLimit-Policy",
)


def parse_limits(text: str) -> tuple[RateLimitItem, ...]:
    """The limits in `text` (`"10/second; 600/minute"`); ValueError if it is empty or malformed."""
    try:
        items = tuple(parse_many(text))
    except ValueError:
        items = ()
    if not items or any(item.amount < 1 for item in items):
        raise ValueError(f"{text!r} is not a rate limit such as '600/minute' or '10/second; 600/minute'")
    return items


@dataclass(frozen=True)
class RateLimitPolicy:
    """The limits of each tier and of the token endpoint."""

    tiers: Mapping[str, tuple[RateLimitItem, ...]]
    token: tuple[RateLimitItem, ...]
    default_tier: str = DEFAULT_TIER

    @classmethod
    def from_strings(cls, tiers: Mapping[str, str], token: str) -> RateLimitPolicy:
        parsed = {name: parse_limits(text) for name, text in tiers.items()}
        if DEFAULT_TIER not in parsed:
            raise ValueError(f"the tier {DEFAULT_TIER!r} must have limits")
        return cls(tiers=parsed, token=parse_limits(token))

    def tier(self, named: str | None) -> str:
        """The tier that applies to a client naming `named` (None: unknown client)."""
        return named if named is not None and named in self.tiers else self.default_tier

    def limits_of(self, tier: str | None) -> tuple[RateLimitItem, ...]:
        return self.tiers[self.tier(tier)]


def window_seconds(item: RateLimitItem) -> int:
    return int(item.get_expiry())


def policy_header(items: Sequence[RateLimitItem]) -> str:
    """`RateLimit-Policy`: each limit as `<requests>;w=<window seconds>`, e.g. `10;w=1, 600;w=60`."""
    return ", ".join(f"{item.amount};w={window_seconds(item)}" for item in items)


@dataclass(frozen=True)
class LimitState:
    """One limit right after a request was counted against it."""

    item: RateLimitItem
    allowed: bool
    remaining: int
    #: When the window next frees a request (seconds since the epoch).
    reset_at: float


@dataclass(frozen=True)
class Verdict:
    """Whether a request may pass, and the headers that tell the caller where it stands.

    `states` are the limits checked, in order, up to the first that refused (later ones were not counted).
    """

    items: tuple[RateLimitItem, ...]
    states: tuple[LimitState, ...]

    @property
    def allowed(self) -> bool:
        return all(state.allowed for state in self.states)

    @property
    def binding(self) -> LimitState:
        """The limit to report: the one that refused, else the one with the fewest requests left."""
        refused = [state for state in self.states if not state.allowed]
        if refused:
            return refused[0]
        return min(self.states, key=lambda s: (s.remaining, -window_seconds(s.item)))

    def retry_after(self, now: float) -> int:
        """Seconds until a refused request may be tried again (at least 1)."""
        return max(1, math.ceil(self.binding.reset_at - now))

    def headers(self, now: float) -> dict[str, str]:
        binding = self.binding
        headers = {
            "RateLimit-Limit": str(binding.item.amount),
            "RateLimit-Remaining": str(max(0, binding.remaining)),
            "RateLimit-Reset": str(max(0, math.ceil(binding.reset_at - now))),
            "RateLimit-Policy": policy_header(self.items),
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.retry_after(now))
        return headers


# --- storage ------------------------------------------------------------------------------------------


class MemoryWindows:
    """Moving windows in this process's memory, counted synchronously: what `limits`' moving-window
    strategy does with its memory storage, without its thread hop per check (its asyncio memory storage
    hands each expiry scan to a thread) or its list insertions at the front.

    Each key keeps the times of the requests in its window, oldest first; a check drops those that left the
    window, then counts the request if fewer than the limit remain. Keys whose window emptied are swept at
    most once per `sweep_seconds`, so memory stays bounded by the clients active within a window.
    """

    def __init__(self, *, sweep_seconds: float = 60.0) -> None:
        self._windows: dict[str, tuple[float, deque[float]]] = {}
        self._sweep_seconds = sweep_seconds
        self._sweep_at = time.monotonic() + sweep_seconds

    def hit(self, item: RateLimitItem, *identifiers: str) -> LimitState:
        """Count one request for `identifiers` against `item` unless its window is full."""
        now = time.time()
        if time.monotonic() >= self._sweep_at:
            self._sweep(now)
        key = item.key_for(*identifiers)
        expiry = float(item.get_expiry())
        entry = self._windows.get(key)
        if entry is None:
            entry = self._windows[key] = (expiry, deque())
        times = entry[1]
        start = now - expiry
        while times and times[0] < start:
            times.popleft()
        allowed = len(times) < item.amount
        if allowed:
            times.append(now)
        reset_at = (times[0] if times else now) + expiry
        return LimitState(item, allowed, max(0, item.amount - len(times)), reset_at)

    def _sweep(self, now: float) -> None:
        self._sweep_at = time.monotonic() + self._sweep_seconds
        gone = [
            key for key, (expiry, times) in self._windows.items() if not times or times[-1] < now - expiry
        ]
        for key in gone:
            del self._windows[key]

    def __len__(self) -> int:
        return len(self._windows)


#: Schemes operators may write, as `limits` names their asyncio storages (Redis through coredis; a Valkey
#: server speaks the same protocol and is reached with `redis://` too).
_ASYNC_SCHEMES = {
    "memory": "async+memory",
    "redis": "async+redis",
    "rediss": "async+rediss",
    "redis+unix": "async+redis+unix",
    "redis+sentinel": "async+redis+sentinel",
    "redis+cluster": "async+redis+cluster",
}


def async_storage_uri(uri: str) -> str:
    """The `limits` asyncio storage URI for what an operator wrote: `redis://h:6379/0` becomes
    `async+redis://h:6379/0`, `memory://` becomes `async+memory://`; `async+...` forms pass unchanged."""
    uri = uri.strip() or "memory://"
    scheme, sep, rest = uri.partition("://")
    scheme = scheme.lower()
    if not sep:
        raise ValueError(f"{uri!r} is not a storage URI such as memory:// or redis://host:6379/0")
    if scheme in _ASYNC_SCHEMES.values():
        return f"{scheme}://{rest}"
    if scheme not in _ASYNC_SCHEMES:
        known = ", ".join(f"{s}://" for s in _ASYNC_SCHEMES)
        raise ValueError(f"unsupported rate-limit storage {scheme}://; use one of {known}")
    return f"{_ASYNC_SCHEMES[scheme]}://{rest}"


def is_shared_storage(uri: str) -> bool:
    """Whether the storage is outside the process (and so shared by replicas, and able to fail)."""
    return not async_storage_uri(uri).startswith("async+memory://")


def redacted(uri: str) -> str:
    """`uri` without a password, for logs."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))

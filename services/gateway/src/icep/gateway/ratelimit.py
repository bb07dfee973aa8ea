"""Rate limits: the tiers, the limits in each, what a caller is told about them (plain Python), and the
limiter that counts them (in memory, or in Redis through `limits` when replicas share one) with the
middleware that applies them per client.

Limits are written in the `limits` library's notation: `"600/minute"`, or several at once, all of which
apply, `"10/second; 600/minute"`. A client's tier is the `rate_tier` of its entry in the clients file; the
token endpoint has one more limit, per client address, against guessing secrets (and burning scrypt).

What a caller sees follows the IETF RateLimit header fields draft: `RateLimit-Limit`, `RateLimit-Remaining`
and `RateLimit-Reset` (seconds) of the limit closest to running out, `RateLimit-Policy` listing every limit
as `<requests>;w=<window seconds>`, and on a refusal `Retry-After` (seconds).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from limits import RateLimitItem, parse_many
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from limits.storage import storage_from_string
from prometheus_client import Counter
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from icep.platform.problems import problem

log = logging.getLogger("icep.gateway")

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


# --- rate limits --------------------------------------------------------------------------------------

RATE_LIMITED = Counter(
    "icep_gateway_rate_limited_total", "Requests refused with 429, by the limit that refused them", ["limit"]
)
RATE_LIMIT_FAIL_OPEN = Counter(
    "icep_gateway_rate_limit_fail_open_total",
    "Requests let through unchecked because the rate-limit storage did not answer",
)


class RateLimiter:
    """Counts requests against limits: in this process's memory, or in a Redis (`limits` storage) that every
    gateway replica shares (then a client has one budget, whichever replica it reaches).

    Moving windows: 600/minute means at most 600 requests in any 60 seconds, with no double burst where
    two fixed windows meet, and a refused caller is told exactly when the oldest request leaves the window.

    In memory the counting is `MemoryWindows`, synchronous: no await, no thread, nothing that can fail.
    Redis is asked through `limits`' asyncio strategy.

    It fails open. When the storage does not answer within `timeout` seconds, the request passes unchecked,
    `icep_gateway_rate_limit_fail_open_total` counts it and a warning is logged (once per outage): losing
    the limits for a while is better than losing the API. After a failure the storage is left alone for
    `retry_interval` seconds, so that an outage does not add its timeout to every request.
    """

    def __init__(self, storage_uri: str, *, timeout: float, retry_interval: float = 1.0) -> None:
        uri = async_storage_uri(storage_uri)
        self.storage_uri = redacted(storage_uri)
        self.timeout = timeout
        self.retry_interval = retry_interval
        self._retry_at = 0.0
        self._failing = False
        #: This process's memory (checked synchronously: nothing to wait for), or None for a shared storage.
        self.memory: MemoryWindows | None = None
        self.storage: Any = None
        if not is_shared_storage(uri):
            self.memory = MemoryWindows()
            self._errors: tuple[type[BaseException], ...] = ()
            return
        self.storage = storage_from_string(uri, connect_timeout=timeout, stream_timeout=timeout)
        self._strategy = MovingWindowRateLimiter(self.storage)
        base = self.storage.base_exceptions
        self._errors = (
            TimeoutError,
            OSError,
            StorageError,
            *(base if isinstance(base, tuple) else (base,)),
        )

    async def hit(self, items: tuple[RateLimitItem, ...], *key: str) -> Verdict | None:
        """Count one request for `key` against each of `items`, in order, until one refuses.

        None when the storage could not be asked: the caller lets the request through.
        """
        if self.memory is not None:
            return self.hit_memory(items, *key)
        if self._failing and time.monotonic() < self._retry_at:
            RATE_LIMIT_FAIL_OPEN.inc()
            return None
        states: list[LimitState] = []
        try:
            async with asyncio.timeout(self.timeout):
                for item in items:
                    allowed = await self._strategy.hit(item, *key)
                    stats = await self._strategy.get_window_stats(item, *key)
                    states.append(LimitState(item, allowed, stats.remaining, stats.reset_time))
                    if not allowed:
                        break
        except self._errors as exc:
            RATE_LIMIT_FAIL_OPEN.inc()
            if not self._failing:
                log.warning(
                    "rate-limit storage %s does not answer (%r); requests pass unlimited until it does",
                    self.storage_uri,
                    exc,
                )
            self._failing = True
            self._retry_at = time.monotonic() + self.retry_interval
            return None
        if self._failing:
            self._failing = False
            log.info("rate-limit storage %s answers again; rate limits apply", self.storage_uri)
        return Verdict(items, tuple(states))

    def hit_memory(self, items: tuple[RateLimitItem, ...], *key: str) -> Verdict:
        """`hit` on this process's memory: no I/O, so no await, no timeout and no failure to open on."""
        assert self.memory is not None
        states: list[LimitState] = []
        for item in items:
            state = self.memory.hit(item, *key)
            states.append(state)
            if not state.allowed:
                break
        return Verdict(items, tuple(states))

    async def aclose(self) -> None:
        # The Redis client's pooled connections (coredis); the memory storage holds none.
        client = getattr(getattr(self.storage, "bridge", None), "storage", None)
        pool = getattr(client, "connection_pool", None)
        if pool is not None:
            pool.disconnect()


class RateLimits:
    """The gateway's limits: per client (by its tier) on the API, per address on the token endpoint."""

    def __init__(
        self, limiter: RateLimiter, policy: RateLimitPolicy, tier_of: Callable[[str], str | None]
    ) -> None:
        self.limiter = limiter
        self.policy = policy
        #: The `rate_tier` of a client id in the clients file, None for a client it does not know.
        self.tier_of = tier_of
        self._unknown_tiers: set[str] = set()

    async def for_client(self, client_id: str) -> Verdict | None:
        named = self.tier_of(client_id)
        tier = self.policy.tier(named)
        if named is not None and named != tier and named not in self._unknown_tiers:
            self._unknown_tiers.add(named)
            log.warning("rate tier %r is not configured; its clients get the %r limits", named, tier)
        return await self.limiter.hit(self.policy.tiers[tier], "icep-gateway", "client", client_id)

    async def for_token_request(self, address: str) -> Verdict | None:
        return await self.limiter.hit(self.policy.token, "icep-gateway", "token", address)

    async def aclose(self) -> None:
        await self.limiter.aclose()


def too_many_requests(verdict: Verdict, limit: str, detail: str, *, instance: str) -> Response:
    """The 429 problem, with `Retry-After` and the RateLimit fields."""
    RATE_LIMITED.labels(limit).inc()
    now = time.time()
    retry_after = verdict.retry_after(now)
    return problem(
        429,
        f"{detail}; retry after {retry_after} s",
        slug="rate-limited",
        instance=instance,
        headers=verdict.headers(now),
        retry_after=retry_after,
    )


def encoded_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers]


def _with_headers(send: Send, headers: Iterable[tuple[str, str]], *, replace: bool) -> Send:
    """`send`, adding `headers` to the response head: replacing same-named ones, or only where absent."""
    extra = encoded_headers(headers)

    async def send_with_headers(message: Message) -> None:
        if message["type"] == "http.response.start":
            current: list[tuple[bytes, bytes]] = list(message.get("headers", []))
            if replace:
                names = {name for name, _ in extra}
                current = [(k, v) for k, v in current if k.lower() not in names]
                added = extra
            else:
                present = {k.lower() for k, _ in current}
                added = [(k, v) for k, v in extra if k not in present]
            message = {**message, "headers": current + added}
        await send(message)

    return send_with_headers


class TokenRateLimitMiddleware:
    """Limits `POST /oauth/token` per client address, before the body is read or a secret is hashed.

    The address is the peer's, or the caller's when the peer is a trusted proxy (`ForwardedHeadersMiddleware`,
    `ICEP_GATEWAY_FORWARDED_ALLOW_IPS`); behind a load balancer not trusted so, every caller shares the
    balancer's budget, and a forged `X-Forwarded-For` never buys a fresh one.
    The limits live in `app.state.rate_limits` (none: no limit).
    """

    def __init__(self, app: ASGIApp, path: str = "/oauth/token") -> None:
        self.app = app
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        limits = getattr(getattr(scope.get("app"), "state", None), "rate_limits", None)
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or scope["path"] != self.path
            or not isinstance(limits, RateLimits)
        ):
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        verdict = await limits.for_token_request(client[0] if client else "unknown")
        if verdict is None:
            await self.app(scope, receive, send)
            return
        if not verdict.allowed:
            response = too_many_requests(
                verdict, "token", "too many token requests from this address", instance=self.path
            )
            response.headers["Cache-Control"] = "no-store"
            await response(scope, receive, send)
            return
        headers = verdict.headers(time.time()).items()
        await self.app(scope, receive, _with_headers(send, headers, replace=True))

"""When a request is tried again, and how long to wait first (tenacity does the looping).

- Safe requests (GET, HEAD, OPTIONS) and POSTs (which always carry an `Idempotency-Key`, the same on
  every attempt, so the platform carries each out once and answers a retry with the first answer) are
  retried on connection errors and timeouts, 429, 502, 503 and 504, and on 409 `idempotency-key-in-use`
  (the first attempt is still being processed).
- Other writes (PUT, PATCH, DELETE: the platform keeps no Idempotency-Key for them) are retried only when
  the request certainly had no effect: it could not be sent (connect errors), or 429 or 503.
- Nothing else is retried: any other 4xx is the caller's to fix, and is raised at once.
A `Retry-After` (seconds or an HTTP date) is honoured up to `max_retry_after`; otherwise the wait grows
exponentially with jitter.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx
from tenacity import RetryCallState

from icep_client.errors import TokenError

__all__ = ["RetryPolicy"]

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
RETRY_STATUSES = frozenset({429, 502, 503, 504})
#: Statuses that say the request was not carried out: safe to repeat any request.
NOT_CARRIED_OUT = frozenset({429, 503})
IN_USE_PROBLEM = "idempotency-key-in-use"


@dataclass(frozen=True)
class RetryPolicy:
    """How many attempts one logical call makes (1: no retries) and how long it waits between them."""

    attempts: int = 4
    initial_wait: float = 0.25
    max_wait: float = 8.0
    #: The longest `Retry-After` honoured; a longer one is cut to this.
    max_retry_after: float = 60.0
    #: How the client waits (tests pass one that records the waits).
    sleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep)

    def retries_exception(self, method: str, exc: BaseException) -> bool:
        if isinstance(exc, TokenError):
            return exc.status in RETRY_STATUSES
        if method in SAFE_METHODS or method == "POST":
            return isinstance(exc, httpx.TransportError)
        return isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)

    def retries_response(self, method: str, response: httpx.Response) -> bool:
        status = response.status_code
        if method in SAFE_METHODS:
            return status in RETRY_STATUSES
        if method == "POST":
            return status in RETRY_STATUSES or (status == 409 and _in_use(response))
        return status in NOT_CARRIED_OUT

    def wait(self, state: RetryCallState) -> float:
        """Seconds before the next attempt: the answer's `Retry-After` when it has one."""
        outcome = state.outcome
        if outcome is not None and not outcome.failed:
            answer = outcome.result()
            if isinstance(answer, httpx.Response):
                asked = retry_after(answer)
                if asked is not None:
                    return min(asked, self.max_retry_after)
        # Exponential with jitter, so that many clients failing together do not retry together.
        exponential: float = self.initial_wait * 2.0 ** max(0, state.attempt_number - 1)
        return min(self.max_wait, exponential) + random.uniform(0, self.initial_wait)


def _in_use(response: httpx.Response) -> bool:
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and str(body.get("type", "")).endswith(IN_USE_PROBLEM)


def retry_after(response: httpx.Response) -> float | None:
    """The `Retry-After` of an answer in seconds (RFC 9110: delay-seconds or an HTTP date)."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())

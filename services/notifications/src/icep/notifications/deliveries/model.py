"""The delivery's rules, in plain Python: its states and the retry schedule of failed attempts."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


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

"""How OCDS writes dates and amounts, and the shapes of a release and of known suppliers."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, time
from typing import Any

Release = dict[str, Any]
Suppliers = Mapping[str, tuple[str, str]]


def money(amount: float, currency: str) -> dict[str, Any]:
    return {"amount": amount, "currency": currency}


def aware(value: datetime, *, strict: bool = False) -> datetime:
    """A timezone-aware datetime: a naive one from storage is taken as UTC; one given by a caller
    (`strict`) must carry its timezone."""
    if value.tzinfo is None or value.utcoffset() is None:
        if strict:
            raise ValueError("an OCDS date carries its timezone")
        return value.replace(tzinfo=UTC)
    return value


def timestamp(value: datetime) -> str:
    return aware(value).astimezone(UTC).isoformat().replace("+00:00", "Z")


def day_start(day: date) -> str:
    return timestamp(datetime.combine(day, time.min, UTC))


def day_end(day: date) -> str:
    return timestamp(datetime.combine(day, time(23, 59, 59), UTC))

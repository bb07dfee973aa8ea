"""Building blocks every service's `domain.py` shares: plain Python, no web, database or Kafka."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

from icep.platform.errors import IllegalTransition, Unprocessable

S = TypeVar("S", bound=StrEnum)


@dataclass(frozen=True)
class Actor:
    """Who acts: the domain needs the nation and roles, not the token."""

    id: str
    nation: str
    roles: frozenset[str]


def transition(entity: str, table: Mapping[tuple[str, S], S], action: str, current: S) -> S:
    """The state `action` leads to from `current` in a transition table, or 409 with the current state."""
    try:
        return table[(action, current)]
    except KeyError:
        raise IllegalTransition(entity, action, current.value) from None


def invalid(location: str, message: str) -> Unprocessable:
    """A 422 naming the offending field, in the same shape as request validation errors."""
    return Unprocessable(message, errors=[{"location": location, "message": message, "type": "value_error"}])

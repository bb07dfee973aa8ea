"""Building blocks every service's `domain.py` shares: plain Python, no web, database or Kafka."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Self, TypeVar

from icep.platform.errors import IllegalTransition, PreconditionFailed, Unprocessable

S = TypeVar("S", bound=StrEnum)


@dataclass(frozen=True)
class Actor:
    """Who acts: the domain needs the nation and roles, not the token."""

    id: str
    nation: str
    roles: frozenset[str]


@dataclass(frozen=True, kw_only=True)
class DomainEvent:
    """Something that happened to an aggregate, said in the domain's words (`PlanSubmitted(by, at)`).

    An aggregate's method records it (`Aggregate.recorded`); the service's `events.py` maps it to the
    published `icep.contracts` payload with its releasability when the unit of work collects the aggregate
    (`UnitOfWork.collect`). Plain Python: no schema, topic or marking here."""

    at: datetime


@dataclass(frozen=True, kw_only=True)
class Aggregate:
    """Base of an aggregate that records its own domain events.

    Aggregates are immutable: a method returns the changed aggregate, with the events of the change added
    to `events` (`return self.recorded(PlanSubmitted(by=actor.id, at=now), status=...)`). An aggregate
    loaded from its repository has none; the repository's `save` hands the changed one to the unit of
    work, which publishes what it recorded with the same commit."""

    events: tuple[DomainEvent, ...] = field(default=(), compare=False, repr=False)

    def recorded(self, *events: DomainEvent, **changes: object) -> Self:
        """This aggregate with `changes` applied and `events` recorded after the ones it already holds."""
        return replace(self, events=(*self.events, *events), **changes)


def transition(entity: str, table: Mapping[tuple[str, S], S], action: str, current: S) -> S:
    """The state `action` leads to from `current` in a transition table, or 409 with the current state."""
    try:
        return table[(action, current)]
    except KeyError:
        raise IllegalTransition(entity, action, current.value) from None


def invalid(location: str, message: str) -> Unprocessable:
    """A 422 naming the offending field, in the same shape as request validation errors."""
    return Unprocessable(message, errors=[{"location": location, "message": message, "type": "value_error"}])


def check_version(entity: str, version: int, expected: int | None) -> None:
    """A change made against the version the caller read (`If-Match`), or 412 with the current one; a
    repository's `get_for_update(id, expected_version)` calls it once the aggregate is locked."""
    if expected is not None and expected != version:
        raise PreconditionFailed(
            f"the {entity} is at version {version}, not {expected}", current_version=version
        )

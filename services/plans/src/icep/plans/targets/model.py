"""Capability targets: NATO's Alliance requirement for a product in a year, in plain Python."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from icep.contracts import Releasability, ReleasabilityScope
from icep.contracts.nations import NATO
from icep.platform.domain import Actor, Aggregate, DomainEvent, check_version
from icep.platform.errors import Forbidden, PreconditionFailed, PreconditionRequired


def check_target_setter(actor: Actor) -> None:
    if actor.nation != NATO or actor.roles.isdisjoint({"reviewer", "planner"}):
        raise Forbidden("only NATO staff record capability targets")


#: Capability targets are NATO's and go to every Ally.
TARGET_RELEASABILITY = Releasability(owner=NATO, scope=ReleasabilityScope.ALLIES)


@dataclass(frozen=True, kw_only=True)
class TargetSet(DomainEvent):
    by: str


@dataclass(frozen=True, kw_only=True)
class CapabilityTarget(Aggregate):
    id: str
    capability_area: str
    product: str
    year: int
    required_quantity: int
    unit: str
    set_by: str
    set_at: datetime
    #: Bumped on each correction: the `ETag` a correction names in `If-Match`.
    version: int

    @classmethod
    def record(
        cls,
        *,
        id: str,
        actor: Actor,
        capability_area: str,
        product: str,
        year: int,
        required_quantity: int,
        unit: str,
        now: datetime,
    ) -> CapabilityTarget:
        """A requirement NATO staff record for the first time."""
        check_target_setter(actor)
        return cls(
            id=id,
            capability_area=capability_area,
            product=product,
            year=year,
            required_quantity=required_quantity,
            unit=unit,
            set_by=actor.id,
            set_at=now,
            version=1,
            events=(TargetSet(by=actor.id, at=now),),
        )

    def correct(self, actor: Actor, required_quantity: int, unit: str, now: datetime) -> CapabilityTarget:
        check_target_setter(actor)
        return self.recorded(
            TargetSet(by=actor.id, at=now),
            required_quantity=required_quantity,
            unit=unit,
            set_by=actor.id,
            set_at=now,
            version=self.version + 1,
        )


def check_if_match(
    target: CapabilityTarget | None, product: str, year: int, expected: int | Literal["*"] | None
) -> None:
    """A new target is recorded without `If-Match`; a correction names the version it read (or `*`), so
    that two staff correcting one target at once do not overwrite each other unseen."""
    if target is None:
        if isinstance(expected, int):
            raise PreconditionFailed(
                f"there is no target for {product} in {year} yet; leave If-Match out to record one"
            )
        return
    if expected is None:
        raise PreconditionRequired(
            f"a target for {product} in {year} exists; correcting it needs If-Match with its ETag",
            current_version=target.version,
        )
    if isinstance(expected, int):
        check_version("target", target.version, expected)

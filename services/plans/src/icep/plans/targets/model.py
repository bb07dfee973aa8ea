"""Capability targets: NATO's Alliance requirement for a product in a year, in plain Python."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from icep.contracts import Releasability, ReleasabilityScope
from icep.contracts.nations import NATO
from icep.platform.domain import Actor
from icep.platform.errors import Forbidden


def check_target_setter(actor: Actor) -> None:
    if actor.nation != NATO or actor.roles.isdisjoint({"reviewer", "planner"}):
        raise Forbidden("only NATO staff record capability targets")


#: Capability targets are NATO's and go to every Ally.
TARGET_RELEASABILITY = Releasability(owner=NATO, scope=ReleasabilityScope.ALLIES)


@dataclass(frozen=True)
class CapabilityTarget:
    id: str
    capability_area: str
    product: str
    year: int
    required_quantity: int
    unit: str
    set_by: str
    set_at: datetime
    version: int

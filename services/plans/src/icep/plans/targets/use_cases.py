"""Capability targets: NATO records (or corrects) the Alliance requirement for a product in a year."""

from __future__ import annotations

from typing import Literal

from icep.plans.targets.model import CapabilityTarget, check_if_match, check_target_setter
from icep.plans.targets.repository import TargetRepository
from icep.platform.domain import Actor
from icep.platform.events import utcnow
from icep.platform.ids import new_id
from icep.platform.outbox import UnitOfWorkFactory


async def set_capability_target(
    uow: UnitOfWorkFactory,
    actor: Actor,
    *,
    capability_area: str,
    product: str,
    year: int,
    required_quantity: int,
    unit: str,
    expected: int | Literal["*"] | None = None,
) -> tuple[CapabilityTarget, bool]:
    """Record (or correct) the requirement for a product in a year; True when it was new.

    `expected` is the caller's `If-Match`: nothing for a new target; a correction names the version it
    read (or `*`)."""
    check_target_setter(actor)  # before any look-up: who may not set targets learns nothing of them
    async with uow() as tx:
        targets = TargetRepository(tx)
        target = await targets.get_for_update(capability_area, product, year)
        check_if_match(target, product, year, expected)
        now = utcnow()
        if target is None:
            changed = CapabilityTarget.record(
                id=new_id(),
                actor=actor,
                capability_area=capability_area,
                product=product,
                year=year,
                required_quantity=required_quantity,
                unit=unit,
                now=now,
            )
        else:
            changed = target.correct(actor, required_quantity, unit, now)
        await targets.save(changed)
    return changed, target is None

"""Capability targets: NATO records (or corrects) the Alliance requirement for a product in a year."""

from __future__ import annotations

from typing import Literal

from sqlalchemy import select
from sqlmodel import col

from icep.contracts.plans import CapabilityTargetSet
from icep.plans.plans.model import Actor
from icep.plans.targets.model import TARGET_RELEASABILITY, CapabilityTarget, check_target_setter
from icep.plans.targets.repository import to_target
from icep.plans.targets.rows import CapabilityTargetRow
from icep.platform.errors import PreconditionFailed, PreconditionRequired
from icep.platform.events import OutgoingEvent, utcnow
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
    read (or `*`), so that two staff correcting one target at once do not overwrite each other unseen."""
    check_target_setter(actor)
    async with uow() as tx:
        row = (
            await tx.session.execute(
                select(CapabilityTargetRow)
                .where(
                    col(CapabilityTargetRow.capability_area) == capability_area,
                    col(CapabilityTargetRow.product) == product,
                    col(CapabilityTargetRow.year) == year,
                )
                .with_for_update()
            )
        ).scalar_one_or_none()
        created = row is None
        if row is None and isinstance(expected, int):
            raise PreconditionFailed(
                f"there is no target for {product} in {year} yet; leave If-Match out to record one"
            )
        if row is not None and expected is None:
            raise PreconditionRequired(
                f"a target for {product} in {year} exists; correcting it needs If-Match with its ETag",
                current_version=row.version,
            )
        if row is not None and isinstance(expected, int) and expected != row.version:
            raise PreconditionFailed(
                f"the target is at version {row.version}, not {expected}", current_version=row.version
            )
        now = utcnow()
        if row is None:
            row = CapabilityTargetRow(
                id=new_id(),
                capability_area=capability_area,
                product=product,
                year=year,
                required_quantity=required_quantity,
                unit=unit,
                set_by=actor.id,
                set_at=now,
                version=1,
            )
            tx.session.add(row)
        else:
            row.required_quantity = required_quantity
            row.unit = unit
            row.set_by = actor.id
            row.set_at = now
            row.version += 1
        target = to_target(row)
        tx.publish(
            OutgoingEvent(
                payload=CapabilityTargetSet(
                    target_id=target.id,
                    capability_area=capability_area,
                    product=product,
                    year=year,
                    required_quantity=required_quantity,
                    unit=unit,
                    set_by=actor.id,
                    set_at=now,
                ),
                subject=target.id,
                releasability=TARGET_RELEASABILITY,
            )
        )
    return target, created

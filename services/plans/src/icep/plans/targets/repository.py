"""Capability targets in the database: rows <-> targets, and the target queries."""

from __future__ import annotations

from sqlalchemy import select
from sqlmodel import col

from icep.plans.plans.model import Actor
from icep.plans.targets.model import TARGET_RELEASABILITY, CapabilityTarget
from icep.plans.targets.rows import CapabilityTargetRow
from icep.platform.db import Database
from icep.platform.errors import NotFound
from icep.platform.outbox import UnitOfWork


def to_target(row: CapabilityTargetRow) -> CapabilityTarget:
    return CapabilityTarget(
        id=row.id,
        capability_area=row.capability_area,
        product=row.product,
        year=row.year,
        required_quantity=row.required_quantity,
        unit=row.unit,
        set_by=row.set_by,
        set_at=row.set_at,
        version=row.version,
    )


class TargetRepository:
    """The capability targets of one unit of work."""

    def __init__(self, tx: UnitOfWork) -> None:
        self._tx = tx
        self._rows: dict[str, CapabilityTargetRow] = {}

    async def get_for_update(self, capability_area: str, product: str, year: int) -> CapabilityTarget | None:
        """The target for a product in a year, locked for this transaction; None when there is none yet."""
        row = (
            await self._tx.session.execute(
                select(CapabilityTargetRow)
                .where(
                    col(CapabilityTargetRow.capability_area) == capability_area,
                    col(CapabilityTargetRow.product) == product,
                    col(CapabilityTargetRow.year) == year,
                )
                .with_for_update()
            )
        ).scalar_one_or_none()
        if row is None:
            return None
        self._rows[row.id] = row
        return to_target(row)

    async def save(self, target: CapabilityTarget) -> None:
        """A new or corrected target, and what it recorded."""
        row = self._rows.get(target.id)
        if row is None:
            row = CapabilityTargetRow(
                id=target.id,
                capability_area=target.capability_area,
                product=target.product,
                year=target.year,
                required_quantity=target.required_quantity,
                unit=target.unit,
                set_by=target.set_by,
                set_at=target.set_at,
                version=target.version,
            )
            self._tx.session.add(row)
            self._rows[target.id] = row
        else:  # a correction: area, product and year name the target and stay
            row.required_quantity = target.required_quantity
            row.unit = target.unit
            row.set_by = target.set_by
            row.set_at = target.set_at
            row.version = target.version
        self._tx.collect(target)


async def get_capability_target(db: Database, actor: Actor, target_id: str) -> CapabilityTarget:
    if TARGET_RELEASABILITY.allows(actor.nation):
        async with db.sessions() as session:
            row = await session.get(CapabilityTargetRow, target_id)
        if row is not None:
            return to_target(row)
    raise NotFound(f"no capability target {target_id}")


async def list_capability_targets(
    db: Database,
    actor: Actor,
    *,
    capability_area: str | None = None,
    product: str | None = None,
    year: int | None = None,
) -> list[CapabilityTarget]:
    if not TARGET_RELEASABILITY.allows(actor.nation):
        return []
    query = select(CapabilityTargetRow)
    if capability_area:
        query = query.where(col(CapabilityTargetRow.capability_area) == capability_area)
    if product:
        query = query.where(col(CapabilityTargetRow.product) == product)
    if year:
        query = query.where(col(CapabilityTargetRow.year) == year)
    query = query.order_by(
        col(CapabilityTargetRow.capability_area),
        col(CapabilityTargetRow.product),
        col(CapabilityTargetRow.year),
    )
    async with db.sessions() as session:
        return [to_target(r) for r in (await session.execute(query)).scalars()]

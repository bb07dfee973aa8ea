"""Capability targets in the database: rows <-> targets, and the target queries."""

from __future__ import annotations

from sqlalchemy import select
from sqlmodel import col

from icep.plans.plans.model import Actor
from icep.plans.targets.model import TARGET_RELEASABILITY, CapabilityTarget
from icep.plans.targets.rows import CapabilityTargetRow
from icep.platform.db import Database
from icep.platform.errors import NotFound


def to_target(row: CapabilityTargetRow) -> CapabilityTarget:
    return CapabilityTarget(
        row.id,
        row.capability_area,
        row.product,
        row.year,
        row.required_quantity,
        row.unit,
        row.set_by,
        row.set_at,
        row.version,
    )


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

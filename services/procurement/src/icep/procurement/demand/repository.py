"""Demand signal rows <-> demand signals, and the demand a caller may see."""

from __future__ import annotations

from pydantic import TypeAdapter
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from icep.platform import audit, visibility
from icep.platform.domain import Actor
from icep.platform.errors import NotFound
from icep.procurement.demand.model import DemandSignal
from icep.procurement.demand.rows import DemandSignalRow
from icep.procurement.initiatives.model import Initiative
from icep.procurement.initiatives.parts import InitiativeStatus
from icep.procurement.initiatives.repository import initiative_of
from icep.procurement.initiatives.rows import InitiativeRow
from icep.procurement.rules import (
    may_read,
)

SIGNAL = TypeAdapter(DemandSignal)


async def signal_row(session: AsyncSession, actor: Actor, signal_id: str, *, lock: bool) -> DemandSignalRow:
    query = select(DemandSignalRow).where(col(DemandSignalRow.id) == signal_id)
    row = (await session.execute(query.with_for_update() if lock else query)).scalar_one_or_none()
    release = None if row is None else SIGNAL.validate_python(row.document).releasability
    if release is not None:
        audit.subject("demand_signal", signal_id, release.owner)
    if release is None or row is None or not may_read(release, actor.nation):
        raise NotFound(f"no demand signal {signal_id}")
    return row


async def visible_demand(
    session: AsyncSession, actor: Actor, product: str | None
) -> tuple[list[DemandSignal], list[Initiative]]:
    sq = select(DemandSignalRow).where(visibility.readable_by(col(DemandSignalRow.readers), actor.nation))
    iq = select(InitiativeRow).where(
        visibility.readable_by(col(InitiativeRow.readers), actor.nation),
        col(InitiativeRow.status) != InitiativeStatus.CANCELLED.value,
    )
    if product:
        sq = sq.where(col(DemandSignalRow.product) == product)
        iq = iq.where(col(InitiativeRow.product) == product)
    signals = [SIGNAL.validate_python(r.document) for r in (await session.execute(sq)).scalars()]
    initiatives = [initiative_of(r) for r in (await session.execute(iq)).scalars()]
    return (
        [s for s in signals if may_read(s.releasability, actor.nation)],
        [i for i in initiatives if i.visible_to(actor.nation)],
    )

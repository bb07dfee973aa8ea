"""Initiative rows <-> initiatives: loaded (optionally locked) only for a caller who may read them."""

from __future__ import annotations

from datetime import datetime

from pydantic import TypeAdapter
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from icep.platform import audit
from icep.platform.domain import Actor
from icep.platform.errors import NotFound
from icep.procurement.initiatives.model import Initiative
from icep.procurement.initiatives.rows import InitiativeRow
from icep.procurement.records import stored_readers, to_json

INITIATIVE = TypeAdapter(Initiative)


def initiative_of(row: InitiativeRow) -> Initiative:
    return INITIATIVE.validate_python(row.document)


def store_initiative(row: InitiativeRow, i: Initiative, now: datetime) -> None:
    row.status = i.status.value
    row.version = i.version
    row.readers = stored_readers(i.releasability)
    row.document = to_json(INITIATIVE, i)
    row.updated_at = now


async def initiative_row(
    session: AsyncSession, actor: Actor, initiative_id: str, *, lock: bool
) -> InitiativeRow:
    query = select(InitiativeRow).where(col(InitiativeRow.id) == initiative_id)
    row = (await session.execute(query.with_for_update() if lock else query)).scalar_one_or_none()
    if row is not None:
        audit.subject("initiative", row.id, row.lead_nation)  # a refused attempt is the lead's to see too
    if row is None or not initiative_of(row).visible_to(actor.nation):
        raise NotFound(f"no initiative {initiative_id}")
    return row

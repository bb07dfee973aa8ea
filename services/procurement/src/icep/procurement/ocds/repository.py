"""The OCDS releases as written: one with each change of an initiative (numbered within its ocid), and a
call-off's first release of its own process, in the change's transaction."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from icep.procurement.initiatives.model import Initiative
from icep.procurement.initiatives.parts import CallOff
from icep.procurement.ocds import releases
from icep.procurement.ocds.rows import OcdsReleaseRow
from icep.procurement.ocds.tags import tags_for
from icep.procurement.settings import min_aggregate_participants
from icep.procurement.suppliers.repository import supplier_of
from icep.procurement.suppliers.rows import SupplierRow


async def record_release(session: AsyncSession, i: Initiative, action: str, now: datetime) -> None:
    """The OCDS release of this change: immutable, numbered within its ocid."""
    position = (
        await session.execute(select(func.count()).where(col(OcdsReleaseRow.ocid) == i.ocid))
    ).scalar_one()
    release_id = f"{i.ocid}-{position + 1:04d}"
    tags = tags_for(action, i)
    suppliers = await supplier_parties(session, i)
    body = releases.release(
        i,
        tags,
        release_id=release_id,
        date=now,
        suppliers=suppliers,
        min_contributors=min_aggregate_participants(),
    )
    session.add(
        OcdsReleaseRow(id=release_id, ocid=i.ocid, position=position + 1, date=now, tags=tags, release=body)
    )


async def record_call_off_release(
    session: AsyncSession, i: Initiative, call_off: CallOff, now: datetime
) -> None:
    """A call-off is a process of its own: its first OCDS release, linked to the framework's ocid."""
    release_id = f"{call_off.ocid}-0001"
    body = releases.call_off_release(
        i, call_off, release_id=release_id, date=now, suppliers=await supplier_parties(session, i)
    )
    session.add(
        OcdsReleaseRow(
            id=release_id, ocid=call_off.ocid, position=1, date=now, tags=body["tag"], release=body
        )
    )


async def supplier_parties(session: AsyncSession, i: Initiative) -> dict[str, tuple[str, str]]:
    """The name and scale of each bidder and awarded supplier of the initiative."""
    ids = {b.supplier_id for b in i.bids} | {a.supplier_id for a in i.awards}
    if not ids:
        return {}
    rows = (await session.execute(select(SupplierRow).where(col(SupplierRow.id).in_(ids)))).scalars()
    out = {}
    for r in rows:
        s = supplier_of(r)
        out[s.id] = (s.name, s.scale.value)
    return out

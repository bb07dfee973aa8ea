"""The OCDS releases of initiatives as stored: one written with each change (numbered within its ocid), and
an initiative's or a call-off's releases read in order for whoever may read the initiative."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from icep.platform.db import Database
from icep.platform.domain import Actor
from icep.platform.errors import NotFound
from icep.procurement.initiatives.model import Initiative
from icep.procurement.initiatives.parts import CallOff
from icep.procurement.initiatives.repository import initiative_of, initiative_row
from icep.procurement.ocds import releases
from icep.procurement.ocds.rows import OcdsReleaseRow
from icep.procurement.ocds.tags import tags_for
from icep.procurement.settings import min_aggregate_participants
from icep.procurement.suppliers.repository import SUPPLIER
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


async def supplier_parties(session: AsyncSession, i: Initiative) -> dict[str, tuple[str, str]]:
    ids = {b.supplier_id for b in i.bids} | {a.supplier_id for a in i.awards}
    if not ids:
        return {}
    rows = (await session.execute(select(SupplierRow).where(col(SupplierRow.id).in_(ids)))).scalars()
    out = {}
    for r in rows:
        s = SUPPLIER.validate_python(r.document)
        out[s.id] = (s.name, s.scale.value)
    return out


async def ocds_releases(
    db: Database, actor: Actor, initiative_id: str
) -> tuple[Initiative, list[dict[str, Any]]]:
    """The initiative's OCDS releases in order (its call-offs' processes have their own ocids)."""
    async with db.sessions() as session:
        initiative = initiative_of(await initiative_row(session, actor, initiative_id, lock=False))
        rows = (
            await session.execute(
                select(OcdsReleaseRow)
                .where(col(OcdsReleaseRow.ocid) == initiative.ocid)
                .order_by(col(OcdsReleaseRow.position))
            )
        ).scalars()
        return initiative, [r.release for r in rows]


async def call_off_releases(
    db: Database, actor: Actor, initiative_id: str, call_off_id: str
) -> tuple[CallOff, list[dict[str, Any]]]:
    """A call-off's own OCDS releases (its own ocid), for whoever may read the framework's initiative."""
    async with db.sessions() as session:
        initiative = initiative_of(await initiative_row(session, actor, initiative_id, lock=False))
        call_off = next((c for c in initiative.call_offs if c.id == call_off_id), None)
        if call_off is None:
            raise NotFound(f"no call-off {call_off_id} in initiative {initiative_id}")
        rows = (
            await session.execute(
                select(OcdsReleaseRow)
                .where(col(OcdsReleaseRow.ocid) == call_off.ocid)
                .order_by(col(OcdsReleaseRow.position))
            )
        ).scalars()
        releases = [r.release for r in rows]
    if not releases:
        raise NotFound(f"call-off {call_off_id} has no OCDS release")
    return call_off, releases

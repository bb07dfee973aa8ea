"""Reads of the OCDS export: an initiative's or a call-off's releases in order, for whoever may read the
initiative."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlmodel import col

from icep.platform.db import Database
from icep.platform.domain import Actor
from icep.platform.errors import NotFound
from icep.procurement.initiatives.model import Initiative
from icep.procurement.initiatives.parts import CallOff
from icep.procurement.initiatives.repository import initiative_of, initiative_row
from icep.procurement.ocds.rows import OcdsReleaseRow


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

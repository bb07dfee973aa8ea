"""Initiative rows <-> initiatives: an initiative is kept whole as its JSON document, loaded (locked for a
change) only for a caller who may read it. Saving one stores its row and the OCDS release of its latest
change, and hands what it recorded to the unit of work, all in the change's transaction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from pydantic import TypeAdapter
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from icep.platform import audit
from icep.platform.domain import Actor, check_version
from icep.platform.errors import NotFound
from icep.platform.outbox import UnitOfWork
from icep.procurement.initiatives.model import Initiative
from icep.procurement.initiatives.parts import CONTRACTED_STATES, InitiativeStatus, RequiredStandard
from icep.procurement.initiatives.rows import InitiativeRow
from icep.procurement.ocds.repository import record_release
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


async def requiring(session: AsyncSession, standard: RequiredStandard) -> list[str]:
    """The ids of the initiatives not yet contracted (nor cancelled) that require `standard`."""
    done = [s.value for s in (*CONTRACTED_STATES, InitiativeStatus.CANCELLED)]
    found = await session.execute(
        select(col(InitiativeRow.id), col(InitiativeRow.document)).where(
            col(InitiativeRow.status).not_in(done)
        )
    )
    return [
        row_id
        for row_id, document in found.all()
        if any(
            r.get("number") == standard.number and r.get("edition") == standard.edition
            for r in document.get("required_standards", [])
        )
    ]


class InitiativeRepository:
    """The initiatives one unit of work reads and changes."""

    def __init__(self, tx: UnitOfWork) -> None:
        self.tx = tx
        self.session = tx.session
        self._rows: dict[str, InitiativeRow] = {}

    async def get_for_update(
        self, actor: Actor, initiative_id: str, expected_version: int | None
    ) -> Initiative:
        """The initiative, locked until the unit of work ends, if `actor` may read it (else 404) and it is
        at `expected_version` (else 412; None: any version)."""
        row = await initiative_row(self.session, actor, initiative_id, lock=True)
        initiative = initiative_of(row)
        check_version("initiative", initiative.version, expected_version)
        self._rows[row.id] = row
        return initiative

    async def all_for_update(self, initiative_ids: Sequence[str]) -> list[Initiative]:
        """These initiatives, locked in the order of their ids (so transactions take the locks in one
        order), as committed now: for a change no caller makes (a consumer's)."""
        rows = (
            await self.session.execute(
                select(InitiativeRow)
                .where(col(InitiativeRow.id).in_(initiative_ids))
                .order_by(col(InitiativeRow.id))
                .with_for_update()
                .execution_options(populate_existing=True)
            )
        ).scalars()
        found = []
        for row in rows:
            self._rows[row.id] = row
            found.append(initiative_of(row))
        return found

    async def add(self, initiative: Initiative) -> None:
        """A new initiative: its row, then as `save`."""
        row = InitiativeRow(
            id=initiative.id,
            ocid=initiative.ocid,
            lead_nation=initiative.lead_nation,
            title=initiative.title,
            product=initiative.item.product,
            capability_area=initiative.capability_area,
            status=initiative.status.value,
            version=initiative.version,
            created_at=initiative.created_at,
            updated_at=initiative.created_at,
        )
        self.session.add(row)
        self._rows[initiative.id] = row
        await self.save(initiative)

    async def save(self, initiative: Initiative) -> None:
        """Store the initiative as its latest change left it, write that change's OCDS release, and publish
        what it recorded (mapped by `events.py`) with the same commit. Save after each change: the events
        and the release carry the initiative as that change left it."""
        change = initiative.history[-1]
        store_initiative(self._rows[initiative.id], initiative, change.at)
        self.tx.collect(initiative)
        await record_release(self.session, initiative, change.action, change.at)

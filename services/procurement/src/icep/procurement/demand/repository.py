"""Demand signal rows <-> demand signals (each kept whole as its JSON document, read only by who may read
it), and the demand a caller may see."""

from __future__ import annotations

from pydantic import TypeAdapter
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from icep.platform import audit, visibility
from icep.platform.domain import Actor, check_version
from icep.platform.errors import NotFound
from icep.platform.outbox import UnitOfWork
from icep.procurement.demand.model import DemandSignal
from icep.procurement.demand.rows import DemandSignalRow
from icep.procurement.initiatives.model import Initiative
from icep.procurement.initiatives.parts import InitiativeStatus
from icep.procurement.initiatives.repository import initiative_of
from icep.procurement.initiatives.rows import InitiativeRow
from icep.procurement.records import stored_readers, to_json
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


class DemandSignalRepository:
    """The demand signals one unit of work reads and changes."""

    def __init__(self, tx: UnitOfWork) -> None:
        self.tx = tx
        self.session = tx.session
        self._rows: dict[str, DemandSignalRow] = {}

    async def get_for_update(
        self, actor: Actor, signal_id: str, expected_version: int | None
    ) -> DemandSignal:
        """The signal, locked until the unit of work ends, if `actor` may read it (else 404) and it is at
        `expected_version` (else 412; None: any version)."""
        row = await signal_row(self.session, actor, signal_id, lock=True)
        signal = SIGNAL.validate_python(row.document)
        check_version("demand signal", signal.version, expected_version)
        self._rows[row.id] = row
        return signal

    async def add(self, signal: DemandSignal) -> None:
        """A new signal: its row, and the events it recorded published with the same commit."""
        row = DemandSignalRow(
            id=signal.id,
            nation=signal.nation,
            product=signal.product,
            version=signal.version,
            readers=stored_readers(signal.releasability),
            document=to_json(SIGNAL, signal),
            updated_at=signal.updated_at,
        )
        self.session.add(row)
        self._rows[signal.id] = row
        self.tx.collect(signal)

    async def save(self, signal: DemandSignal) -> None:
        """Store the signal and publish what it recorded (mapped by `events.py`) with the same commit."""
        row = self._rows[signal.id]
        row.version = signal.version
        row.document = to_json(SIGNAL, signal)
        row.updated_at = signal.updated_at
        self.tx.collect(signal)

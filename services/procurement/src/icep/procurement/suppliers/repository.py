"""Supplier rows <-> suppliers: a supplier is kept whole as its JSON document, loaded (locked for a change)
only for a caller who may read it; blocks of an organisation looked up, its records locked in one order."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from pydantic import TypeAdapter
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from icep.platform import audit
from icep.platform.domain import Actor, check_version, invalid
from icep.platform.errors import NotFound
from icep.platform.outbox import UnitOfWork
from icep.procurement.records import stored_readers, to_json
from icep.procurement.rules import (
    may_read,
)
from icep.procurement.suppliers.model import (
    Screening,
    Supplier,
    organisation_key,
)
from icep.procurement.suppliers.rows import SupplierRow

SUPPLIER = TypeAdapter(Supplier)


def supplier_of(row: SupplierRow) -> Supplier:
    return SUPPLIER.validate_python(row.document)


def store_supplier(row: SupplierRow, s: Supplier, now: datetime) -> None:
    row.name = s.name
    row.screening = s.screening.value
    row.lists_version = s.lists_version
    row.version = s.version
    row.readers = stored_readers(s.releasability)
    row.document = to_json(SUPPLIER, s)
    row.updated_at = now


async def blocks_of(
    session: AsyncSession, organisation_ids: Iterable[str], *, lock: bool = False
) -> dict[str, list[Supplier]]:
    """The blocked supplier records of these organisations (any nation's), by organisation key. `lock`:
    every record of them is read FOR SHARE, so a block being committed meanwhile is waited for and seen."""
    keys = sorted({organisation_key(o) for o in organisation_ids})
    query = select(SupplierRow).where(col(SupplierRow.organisation_key).in_(keys))
    if lock:
        query = query.order_by(col(SupplierRow.id)).with_for_update(read=True)
    else:
        query = query.where(col(SupplierRow.screening) == Screening.BLOCKED.value)
    out: dict[str, list[Supplier]] = {}
    for row in (await session.execute(query)).scalars():
        s = supplier_of(row)
        if s.screening is Screening.BLOCKED:
            out.setdefault(s.organisation_key, []).append(s)
    return out


async def supplier_row(session: AsyncSession, actor: Actor, supplier_id: str, *, lock: bool) -> SupplierRow:
    query = select(SupplierRow).where(col(SupplierRow.id) == supplier_id)
    row = (await session.execute(query.with_for_update() if lock else query)).scalar_one_or_none()
    release = None if row is None else supplier_of(row).releasability
    if release is not None:
        audit.subject("supplier", supplier_id, release.owner)
    if release is None or row is None or not may_read(release, actor.nation):
        raise NotFound(f"no supplier {supplier_id}")
    return row


def organisation_rows(organisation_id: str) -> Any:
    """Every record of the organisation, locked in the order of their ids."""
    return (
        select(SupplierRow)
        .where(col(SupplierRow.organisation_key) == organisation_key(organisation_id))
        .order_by(col(SupplierRow.id))
        .with_for_update()
    )


async def lock_organisation_of(session: AsyncSession, supplier_id: str) -> None:
    """Lock every record of the organisation of `supplier_id` (before the supplier itself is loaded)."""
    organisation_id = (
        await session.execute(
            select(col(SupplierRow.organisation_id)).where(col(SupplierRow.id) == supplier_id)
        )
    ).scalar_one_or_none()
    if organisation_id is not None:
        await session.execute(organisation_rows(organisation_id))


async def readable_supplier(session: AsyncSession, actor: Actor, supplier_id: str) -> Supplier:
    """The supplier a request names (a 422 on that field when the caller may not read it)."""
    row = await session.get(SupplierRow, supplier_id)
    if row is None:
        raise invalid("body.supplier_id", f"no supplier {supplier_id}")
    supplier = supplier_of(row)
    if not may_read(supplier.releasability, actor.nation):
        raise invalid("body.supplier_id", f"no supplier {supplier_id}")
    return supplier


async def suppliers_for_award(
    session: AsyncSession, actor: Actor, supplier_ids: Iterable[str]
) -> dict[str, Supplier]:
    """The named suppliers that the caller may read, by id. Their rows are read FOR SHARE in the award's
    transaction, in the order of their ids (so transactions take these locks in one order): a block or
    a new screening committed meanwhile is seen, or waits until the award is made; never missed."""
    query = (
        select(SupplierRow)
        .where(col(SupplierRow.id).in_(sorted(set(supplier_ids))))
        .order_by(col(SupplierRow.id))
        .with_for_update(read=True)
    )
    found = (supplier_of(r) for r in (await session.execute(query)).scalars())
    return {s.id: s for s in found if may_read(s.releasability, actor.nation)}


class SupplierRepository:
    """The suppliers one unit of work reads and changes."""

    def __init__(self, tx: UnitOfWork) -> None:
        self.tx = tx
        self.session = tx.session
        self._rows: dict[str, SupplierRow] = {}

    def _track(self, rows: Iterable[SupplierRow]) -> list[Supplier]:
        found = []
        for row in rows:
            self._rows[row.id] = row
            found.append(supplier_of(row))
        return found

    async def get_for_update(self, actor: Actor, supplier_id: str, expected_version: int | None) -> Supplier:
        """The supplier, locked until the unit of work ends, if `actor` may read it (else 404) and it is at
        `expected_version` (else 412; None: any version)."""
        [supplier] = self._track([await supplier_row(self.session, actor, supplier_id, lock=True)])
        check_version("supplier", supplier.version, expected_version)
        return supplier

    async def organisation_for_update(self, organisation_id: str) -> list[Supplier]:
        """Every nation's record of the organisation, locked in the order of their ids."""
        return self._track((await self.session.execute(organisation_rows(organisation_id))).scalars())

    async def due_for_screening(self, lists_version: str, batch: int) -> list[Supplier]:
        """Up to `batch` suppliers last screened under other lists, locked; rows another transaction holds
        (another replica's batch, an adjudication) are skipped, not waited for."""
        query = (
            select(SupplierRow)
            .where(
                sa.or_(
                    col(SupplierRow.lists_version).is_(None),
                    col(SupplierRow.lists_version) != lists_version,
                )
            )
            .order_by(col(SupplierRow.id))
            .limit(batch)
            .with_for_update(skip_locked=True)
        )
        return self._track((await self.session.execute(query)).scalars().all())

    async def registered_by(self, nation: str, key: str) -> str | None:
        """The id of `nation`'s record of the organisation (by its key), if it has one."""
        return (
            await self.session.execute(
                select(col(SupplierRow.id)).where(
                    col(SupplierRow.nation) == nation, col(SupplierRow.organisation_key) == key
                )
            )
        ).scalar_one_or_none()

    async def add(self, supplier: Supplier, now: datetime) -> None:
        """A new supplier: its row, then as `save`."""
        row = SupplierRow(
            id=supplier.id,
            nation=supplier.nation,
            organisation_id=supplier.organisation_id,
            organisation_key=supplier.organisation_key,
            name=supplier.name,
            screening=supplier.screening.value,
            version=supplier.version,
            updated_at=now,
        )
        self.session.add(row)
        self._rows[supplier.id] = row
        await self.save(supplier, now)

    async def save(self, supplier: Supplier, now: datetime) -> None:
        """Store the supplier as of `now` and publish what it recorded (mapped by `events.py`) with the same
        commit. Save after each change: the events carry the supplier as that change left it."""
        store_supplier(self._rows[supplier.id], supplier, now)
        self.tx.collect(supplier)

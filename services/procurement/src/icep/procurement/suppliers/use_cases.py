"""Use cases of suppliers: registration (screened at once), adjudication by a named person, and screening
again when the lists change; each one unit of work with its events."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlmodel import col

from icep.contracts import EventPayload, Releasability
from icep.contracts.procurement import (
    SupplierBlocked,
    SupplierCleared,
    SupplierFlagged,
    SupplierRegistered,
    SupplierScreened,
)
from icep.platform import audit, visibility
from icep.platform.db import Database
from icep.platform.domain import Actor, check_version
from icep.platform.errors import Conflict
from icep.platform.events import utcnow
from icep.platform.ids import new_id
from icep.platform.outbox import UnitOfWork, UnitOfWorkFactory
from icep.procurement.records import publish
from icep.procurement.rules import (
    may_read,
)
from icep.procurement.settings import current_lists
from icep.procurement.suppliers.model import (
    Owner,
    Scale,
    Screening,
    ScreeningLists,
    Supplier,
    blocked_elsewhere,
    organisation_key,
)
from icep.procurement.suppliers.repository import (
    blocks_of,
    lock_organisation_of,
    organisation_rows,
    store_supplier,
    supplier_of,
    supplier_row,
)
from icep.procurement.suppliers.rows import SupplierRow

log = logging.getLogger("icep.procurement")


@dataclass(frozen=True)
class NewSupplier:
    organisation_id: str
    name: str
    scale: Scale
    country_of_incorporation: str
    ultimate_parent: str | None = None
    ultimate_parent_country: str | None = None
    ownership_chain: tuple[Owner, ...] = ()
    products: tuple[str, ...] = ()
    releasability: Releasability | None = None


def _supplier_fields(s: Supplier) -> dict[str, Any]:
    return {
        "supplier_id": s.id,
        "organisation_id": s.organisation_id,
        "name": s.name,
        "scale": s.scale.value,
        "country_of_incorporation": s.country_of_incorporation,
        "screening": s.screening.value,
        "version": s.version,
    }


def _screen_again(
    tx: UnitOfWork, row: SupplierRow, lists: ScreeningLists, now: datetime, blocked_elsewhere: Sequence[str]
) -> bool:
    """Screen a stored supplier again; True when that changed its outcome or matches (a new version,
    announced), else only the lists' version is noted."""
    before = supplier_of(row)
    after = before.screen(lists, now, blocked_elsewhere)
    changed = not (after.screening is before.screening and after.matches == before.matches)
    if changed:
        _announce_screening(tx, after, before, now)
    else:
        after = replace(before, lists_version=after.lists_version)
    store_supplier(row, after, now)
    return changed


def _announce_screening(tx: UnitOfWork, s: Supplier, before: Supplier | None, now: datetime) -> None:
    """SupplierScreened, and SupplierFlagged when the screening found a potential match a person has not
    seen yet (it became one, or a new match joined those already waiting for adjudication)."""
    publish(
        tx,
        s.id,
        s.releasability,
        SupplierScreened(
            **_supplier_fields(s),
            matches=list(s.matches),
            lists_version=s.lists_version or "",
            screened_at=now,
        ),
    )
    if s.screening is Screening.POTENTIAL_MATCH and (
        before is None
        or before.screening is not Screening.POTENTIAL_MATCH
        or not set(s.matches) <= set(before.matches)
    ):
        publish(
            tx,
            s.id,
            s.releasability,
            SupplierFlagged(**_supplier_fields(s), matches=list(s.matches), flagged_at=now),
        )


async def register_supplier(
    uow: UnitOfWorkFactory, actor: Actor, new: NewSupplier, lists: ScreeningLists | None = None
) -> Supplier:
    """Register a supplier and screen it at once, in one transaction: it is never on record unscreened.
    `lists`: the screening lists to use; by default the ones in force (the service's settings)."""
    now = utcnow()
    registered = Supplier.register(
        id=new_id(),
        actor=actor,
        organisation_id=new.organisation_id,
        name=new.name,
        scale=new.scale,
        country_of_incorporation=new.country_of_incorporation,
        now=now,
        ultimate_parent=new.ultimate_parent,
        ultimate_parent_country=new.ultimate_parent_country,
        ownership_chain=new.ownership_chain,
        products=new.products,
        releasability=new.releasability,
    )
    duplicate = (
        f"{actor.nation} has already registered a supplier with organisation id {registered.organisation_id}"
    )
    async with uow() as tx:
        blocks = await blocks_of(tx.session, [registered.organisation_id], lock=True)
        screened = registered.screen(
            lists if lists is not None else current_lists(),
            now,
            blocked_elsewhere(registered, blocks.get(registered.organisation_key, ())),
        )
        taken = (
            await tx.session.execute(
                select(col(SupplierRow.id)).where(
                    col(SupplierRow.nation) == actor.nation,
                    col(SupplierRow.organisation_key) == registered.organisation_key,
                )
            )
        ).scalar_one_or_none()
        if taken is not None:
            raise Conflict(duplicate, supplier_id=taken)
        row = SupplierRow(
            id=screened.id,
            nation=screened.nation,
            organisation_id=screened.organisation_id,
            organisation_key=screened.organisation_key,
            name=screened.name,
            screening=screened.screening.value,
            version=screened.version,
            updated_at=now,
        )
        store_supplier(row, screened, now)
        tx.session.add(row)
        publish(
            tx,
            registered.id,
            registered.releasability,
            SupplierRegistered(
                **_supplier_fields(registered),
                ultimate_parent=registered.ultimate_parent,
                ultimate_parent_country=registered.ultimate_parent_country,
                products=list(registered.products),
                registered_by=actor.id,
                registered_at=now,
            ),
        )
        _announce_screening(tx, screened, None, now)
        try:
            await tx.session.flush()
        except IntegrityError as exc:  # registered at the same moment by another request
            raise Conflict(duplicate) from exc
    log.info("supplier %s registered by %s: %s", screened.id, actor.id, screened.screening.value)
    return screened


async def get_supplier(db: Database, actor: Actor, supplier_id: str) -> Supplier:
    async with db.sessions() as session:
        supplier = supplier_of(await supplier_row(session, actor, supplier_id, lock=False))
    audit.read("supplier", supplier_id, supplier.releasability.owner)
    return supplier


async def list_suppliers(
    db: Database,
    actor: Actor,
    *,
    screening: Screening | None = None,
    nation: str | None = None,
    organisation_id: str | None = None,
    limit: int = 50,
    after: str | None = None,
) -> tuple[list[Supplier], str | None]:
    query = select(SupplierRow).where(visibility.readable_by(col(SupplierRow.readers), actor.nation))
    if screening:
        query = query.where(col(SupplierRow.screening) == screening.value)
    if nation:
        query = query.where(col(SupplierRow.nation) == nation)
    if organisation_id:
        query = query.where(col(SupplierRow.organisation_key) == organisation_key(organisation_id))
    if after:
        query = query.where(col(SupplierRow.id) > after)
    async with db.sessions() as session:
        rows = (await session.execute(query.order_by(col(SupplierRow.id)).limit(limit + 1))).scalars().all()
    found = [s for s in (supplier_of(r) for r in rows[:limit]) if may_read(s.releasability, actor.nation)]
    return found, (rows[limit - 1].id if len(rows) > limit else None)


async def _adjudicate(
    uow: UnitOfWorkFactory,
    actor: Actor,
    supplier_id: str,
    expected: int | None,
    step: Callable[[Supplier, datetime], Supplier],
    announce: Callable[[Supplier, datetime], EventPayload],
    *,
    organisation_wide: bool = False,
) -> Supplier:
    """`organisation_wide` (a block): every record of the organisation is locked first, in the order of
    their ids, and the others are screened again in the same transaction (the block is a match on them)."""
    async with uow() as tx:
        if organisation_wide:
            await lock_organisation_of(tx.session, supplier_id)
        row = await supplier_row(tx.session, actor, supplier_id, lock=True)
        current = supplier_of(row)
        check_version("supplier", current.version, expected)
        now = utcnow()
        changed = step(current, now)
        store_supplier(row, changed, now)
        publish(tx, changed.id, changed.releasability, announce(changed, now))
        if organisation_wide:
            await _rescreen_organisation(tx, changed, now)
    log.info("supplier %s is %s after %s", changed.id, changed.screening.value, actor.id)
    return changed


async def _rescreen_organisation(tx: UnitOfWork, blocked: Supplier, now: datetime) -> None:
    """A block on one nation's record of an organisation is a match on every other nation's record of it:
    they are screened again at once, with the lists in force."""
    await tx.session.flush()
    rows = list((await tx.session.execute(organisation_rows(blocked.organisation_id))).scalars())
    others = [r for r in rows if r.id != blocked.id]
    if not others:
        return
    blocks = [s for s in map(supplier_of, rows) if s.screening is Screening.BLOCKED]
    lists = current_lists()
    for row in others:
        _screen_again(tx, row, lists, now, blocked_elsewhere(supplier_of(row), blocks))


async def clear_supplier(
    uow: UnitOfWorkFactory,
    actor: Actor,
    supplier_id: str,
    expected: int | None,
    mitigation: str,
    adjudicator: str,
) -> Supplier:
    """A named person (`adjudicator`, of the registering Ally's or NATO's procurement staff) clears a
    potential match."""
    return await _adjudicate(
        uow,
        actor,
        supplier_id,
        expected,
        lambda s, now: s.clear(actor, mitigation, now, adjudicator=adjudicator),
        lambda s, now: SupplierCleared(
            **_supplier_fields(s),
            mitigation=s.mitigation or mitigation,
            adjudicator=s.adjudicator or adjudicator,
            cleared_at=now,
        ),
    )


async def block_supplier(
    uow: UnitOfWorkFactory,
    actor: Actor,
    supplier_id: str,
    expected: int | None,
    reason: str,
    adjudicator: str,
) -> Supplier:
    """A named person (`adjudicator`) blocks a supplier on a potential match. Every other nation's record
    of the same organisation is screened again in the same transaction: the block is a match on them."""
    return await _adjudicate(
        uow,
        actor,
        supplier_id,
        expected,
        lambda s, now: s.block(actor, reason, now, adjudicator=adjudicator),
        lambda s, now: SupplierBlocked(
            **_supplier_fields(s),
            reason=s.blocked_reason or reason,
            adjudicator=s.adjudicator or adjudicator,
            blocked_at=now,
        ),
        organisation_wide=True,
    )


async def rescreen_suppliers(
    uow: UnitOfWorkFactory, lists: ScreeningLists, now: datetime | None = None, batch: int = 200
) -> int:
    """Screen again every supplier last screened under other lists; returns how many were screened.

    Only a changed outcome or changed matches is a new screening (a new version, SupplierScreened, and
    SupplierFlagged when a person must look again); otherwise only the lists' version is noted. Batches of
    rows are locked, skipping rows another replica (or an adjudication) holds, each batch one transaction;
    a noted supplier is never due again, so each is screened once per change of the lists."""
    now = now or utcnow()
    screened = changed = 0
    while True:
        async with uow() as tx:
            query = (
                select(SupplierRow)
                .where(
                    sa.or_(
                        col(SupplierRow.lists_version).is_(None),
                        col(SupplierRow.lists_version) != lists.version,
                    )
                )
                .order_by(col(SupplierRow.id))
                .limit(batch)
                .with_for_update(skip_locked=True)
            )
            rows = (await tx.session.execute(query)).scalars().all()
            blocks = await blocks_of(tx.session, {r.organisation_key for r in rows}) if rows else {}
            for row in rows:
                elsewhere = blocked_elsewhere(supplier_of(row), blocks.get(row.organisation_key, ()))
                changed += _screen_again(tx, row, lists, now, elsewhere)
        screened += len(rows)
        if len(rows) < batch:
            break
    if screened:
        log.info("re-screened %d suppliers against lists %s; %d changed", screened, lists.version, changed)
    return screened

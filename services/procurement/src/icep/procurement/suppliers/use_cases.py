"""Use cases of suppliers: registration (screened at once), adjudication by a named person, and screening
again when the lists change. Each change loads the supplier through its repository, calls one method of
it and saves it (its row and the events it recorded commit together)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlmodel import col

from icep.contracts import Releasability
from icep.platform import audit, visibility
from icep.platform.db import Database
from icep.platform.domain import Actor
from icep.platform.errors import Conflict
from icep.platform.events import utcnow
from icep.platform.ids import new_id
from icep.platform.outbox import UnitOfWorkFactory
from icep.procurement.rules import may_read
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
    SupplierRepository,
    blocks_of,
    lock_organisation_of,
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
        suppliers = SupplierRepository(tx)
        blocks = await blocks_of(tx.session, [registered.organisation_id], lock=True)
        screened = registered.screen(
            lists if lists is not None else current_lists(),
            now,
            blocked_elsewhere(registered, blocks.get(registered.organisation_key, ())),
        )
        taken = await suppliers.registered_by(actor.nation, registered.organisation_key)
        if taken is not None:
            raise Conflict(duplicate, supplier_id=taken)
        await suppliers.add(registered, now)
        await suppliers.save(screened, now)
        try:
            await tx.session.flush()
        except IntegrityError as exc:  # registered at the same moment by another request
            raise Conflict(duplicate) from exc
    log.info("supplier %s registered by %s: %s", screened.id, actor.id, screened.screening.value)
    return screened


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
    async with uow() as tx:
        suppliers = SupplierRepository(tx)
        supplier = await suppliers.get_for_update(actor, supplier_id, expected)
        now = utcnow()
        supplier = supplier.clear(actor, mitigation, now, adjudicator=adjudicator)
        await suppliers.save(supplier, now)
    log.info("supplier %s is %s after %s", supplier.id, supplier.screening.value, actor.id)
    return supplier


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
    async with uow() as tx:
        suppliers = SupplierRepository(tx)
        # Every record of the organisation is locked first, in the order of their ids, as below.
        await lock_organisation_of(tx.session, supplier_id)
        supplier = await suppliers.get_for_update(actor, supplier_id, expected)
        now = utcnow()
        supplier = supplier.block(actor, reason, now, adjudicator=adjudicator)
        await suppliers.save(supplier, now)
        await _screen_organisation_again(suppliers, supplier, now)
    log.info("supplier %s is %s after %s", supplier.id, supplier.screening.value, actor.id)
    return supplier


async def _screen_organisation_again(suppliers: SupplierRepository, blocked: Supplier, now: datetime) -> None:
    """A block on one nation's record of an organisation is a match on every other nation's record of it:
    they are screened again at once, with the lists in force."""
    await suppliers.session.flush()
    records = await suppliers.organisation_for_update(blocked.organisation_id)
    others = [s for s in records if s.id != blocked.id]
    if not others:
        return
    blocks = [s for s in records if s.screening is Screening.BLOCKED]
    lists = current_lists()
    for other in others:
        await suppliers.save(other.screen_again(lists, now, blocked_elsewhere(other, blocks)), now)


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
            suppliers = SupplierRepository(tx)
            due = await suppliers.due_for_screening(lists.version, batch)
            blocks = await blocks_of(tx.session, {s.organisation_key for s in due}) if due else {}
            for supplier in due:
                elsewhere = blocked_elsewhere(supplier, blocks.get(supplier.organisation_key, ()))
                again = supplier.screen_again(lists, now, elsewhere)
                changed += again.version != supplier.version
                await suppliers.save(again, now)
        screened += len(due)
        if len(due) < batch:
            break
    if screened:
        log.info("re-screened %d suppliers against lists %s; %d changed", screened, lists.version, changed)
    return screened


# --- reads ----------------------------------------------------------------------------------------------


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

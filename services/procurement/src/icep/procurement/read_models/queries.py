"""Reads of the local read models: capacity and shortfalls a caller may see, required editions known as
withdrawn, and a supplier's standing from the conformance claims and standards known here."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from icep.contracts import Releasability
from icep.contracts.releasability import nation_tokens
from icep.platform import visibility
from icep.platform.domain import Actor
from icep.procurement.initiatives.parts import RequiredStandard
from icep.procurement.initiatives.standing import SupplierStanding, supplier_standing
from icep.procurement.read_models.known import KnownConformance, KnownStandard
from icep.procurement.read_models.rows import CapacityRow, KnownConformanceRow, KnownStandardRow, ShortfallRow
from icep.procurement.suppliers.model import Supplier

#: A standard edition in one of these states flags the initiatives (not yet contracted) requiring it.
WITHDRAWN_STANDARD_STATUSES = ("superseded", "cancelled")


async def withdrawn_standards(
    session: AsyncSession, required: Sequence[RequiredStandard]
) -> list[tuple[RequiredStandard, str]]:
    """The required editions the standards read model knows as superseded or cancelled, with that status."""
    if not required:
        return []
    numbers = {s.number for s in required}
    known = (
        await session.execute(
            select(KnownStandardRow).where(
                col(KnownStandardRow.number).in_(numbers),
                col(KnownStandardRow.status).in_(WITHDRAWN_STANDARD_STATUSES),
            )
        )
    ).scalars()
    status = {(r.number, r.edition): r.status for r in known}
    return [(s, status[(s.number, s.edition)]) for s in required if (s.number, s.edition) in status]


async def standing_of(
    session: AsyncSession, supplier: Supplier, on: date, audience: Releasability
) -> SupplierStanding:
    """The supplier's screening and, per product, the standard editions that product holds verified
    conformance with, from the local read model of the standards service's events: only the claims that
    name the product and that every reader of `audience` (the initiative) may read count."""
    if not supplier.products:
        return SupplierStanding(supplier, {})
    claims = [
        KnownConformance(
            r.claim_id,
            r.product_code,
            r.standard_id,
            r.status,
            r.expires_on,
            r.manufacturer,
            Releasability.from_marking(r.nation, r.releasable_to) if r.nation and r.releasable_to else None,
        )
        for r in (
            await session.execute(
                select(KnownConformanceRow).where(
                    col(KnownConformanceRow.product_code).in_(supplier.products)
                )
            )
        ).scalars()
    ]
    ids = {c.standard_id for c in claims}
    standards = (
        {
            r.id: KnownStandard(r.id, r.number, r.edition, r.status)
            for r in (
                await session.execute(select(KnownStandardRow).where(col(KnownStandardRow.id).in_(ids)))
            ).scalars()
        }
        if ids
        else {}
    )
    return supplier_standing(supplier, claims, standards, on, audience)


def _reads(readers_column: str, actor: Actor) -> bool:
    return not set(readers_column.strip(",").split(",")).isdisjoint(nation_tokens(actor.nation))


async def capacity_rows(session: AsyncSession, actor: Actor, product: str) -> list[CapacityRow]:
    """The capacity commitments of accepted national plans for `product` that the caller may see."""
    rows = (
        await session.execute(
            select(CapacityRow).where(
                col(CapacityRow.product) == product,
                visibility.readable_by(col(CapacityRow.readers), actor.nation),
            )
        )
    ).scalars()
    return [r for r in rows if _reads(r.readers, actor)]


async def shortfall_rows(session: AsyncSession, actor: Actor, product: str) -> list[ShortfallRow]:
    """The shortfalls the plans reported for `product` that the caller may see."""
    rows = (
        await session.execute(
            select(ShortfallRow).where(
                col(ShortfallRow.product) == product,
                visibility.readable_by(col(ShortfallRow.readers), actor.nation),
            )
        )
    ).scalars()
    return [r for r in rows if _reads(r.readers, actor)]

"""Use cases of demand signals (each change loads the signal through its repository, calls one method of
it and saves it, its events with it), the demand picture and demand against capacity."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass

from sqlalchemy import select
from sqlmodel import col

from icep.contracts import Releasability
from icep.platform import audit, visibility
from icep.platform.db import Database
from icep.platform.domain import Actor
from icep.platform.events import utcnow
from icep.platform.ids import new_id
from icep.platform.outbox import UnitOfWorkFactory
from icep.procurement.demand import model
from icep.procurement.demand.model import DemandSignal, Firmness, ProductDemand, YearBalance
from icep.procurement.demand.repository import SIGNAL, DemandSignalRepository, signal_row, visible_demand
from icep.procurement.demand.rows import DemandSignalRow
from icep.procurement.read_models.queries import capacity_rows, shortfall_rows
from icep.procurement.rules import (
    may_read,
)
from icep.procurement.settings import min_aggregate_participants


async def publish_demand_signal(
    uow: UnitOfWorkFactory,
    actor: Actor,
    *,
    product: str,
    capability_area: str,
    unit: str,
    firmness: Firmness,
    quantities: Mapping[int, int],
    releasability: Releasability | None,
) -> DemandSignal:
    signal = DemandSignal.publish(
        id=new_id(),
        actor=actor,
        product=product,
        capability_area=capability_area,
        unit=unit,
        firmness=firmness,
        quantities=quantities,
        now=utcnow(),
        releasability=releasability,
    )
    async with uow() as tx:
        await DemandSignalRepository(tx).add(signal)
    return signal


async def revise_demand_signal(
    uow: UnitOfWorkFactory,
    actor: Actor,
    signal_id: str,
    expected: int | None,
    firmness: Firmness,
    quantities: Mapping[int, int],
) -> DemandSignal:
    async with uow() as tx:
        signals = DemandSignalRepository(tx)
        signal = await signals.get_for_update(actor, signal_id, expected)
        signal = signal.revise(actor, firmness, quantities, utcnow())
        await signals.save(signal)
    return signal


async def list_demand_signals(
    db: Database,
    actor: Actor,
    *,
    nation: str | None,
    product: str | None,
    limit: int,
    after: str | None,
) -> tuple[list[DemandSignal], str | None]:
    query = select(DemandSignalRow).where(visibility.readable_by(col(DemandSignalRow.readers), actor.nation))
    if nation:
        query = query.where(col(DemandSignalRow.nation) == nation)
    if product:
        query = query.where(col(DemandSignalRow.product) == product)
    if after:
        query = query.where(col(DemandSignalRow.id) > after)
    async with db.sessions() as session:
        rows = (
            (await session.execute(query.order_by(col(DemandSignalRow.id)).limit(limit + 1))).scalars().all()
        )
    found = [SIGNAL.validate_python(r.document) for r in rows[:limit]]
    found = [s for s in found if may_read(s.releasability, actor.nation)]
    return found, (rows[limit - 1].id if len(rows) > limit else None)


async def get_demand_signal(db: Database, actor: Actor, signal_id: str) -> DemandSignal:
    async with db.sessions() as session:
        signal = SIGNAL.validate_python((await signal_row(session, actor, signal_id, lock=False)).document)
    audit.read("demand_signal", signal_id, signal.releasability.owner)
    return signal


async def demand(db: Database, actor: Actor, product: str | None) -> list[ProductDemand]:
    """The demand signal industry asks for: per product and year, by firmness, within what the caller sees."""
    async with db.sessions() as session:
        signals, initiatives = await visible_demand(session, actor, product)
    return model.demand_picture(signals, initiatives, actor.nation, min_aggregate_participants())


def _most_used(units: Sequence[str], preferred: Set[str] = frozenset()) -> str | None:
    """The unit most of `units` are in, one of `preferred` first (the first in sorted order on a tie)."""
    counted = Counter(units)
    return min(counted, key=lambda u: (u not in preferred, -counted[u], u)) if counted else None


@dataclass(frozen=True)
class DemandCapacity:
    product: str
    #: The unit compared: the committed capacity's (its most used, one the demand is in first), else the
    #: demand's; None with neither.
    unit: str | None
    years: list[YearBalance]
    #: Units the product is also demanded or committed in, left out (quantities of different units are
    #: never added up).
    other_units: tuple[str, ...] = ()


async def demand_against_capacity(
    db: Database, actor: Actor, product: str, unit: str | None = None
) -> DemandCapacity:
    """Per year, the product's demand against committed capacity, in one unit (`unit`, else the unit of
    the capacity the caller sees), with the shortfalls the plans reported."""
    async with db.sessions() as session:
        signals, initiatives = await visible_demand(session, actor, product)
        capacity = await capacity_rows(session, actor, product)
        shortfalls = await shortfall_rows(session, actor, product)
    picture = model.demand_picture(signals, initiatives, actor.nation, min_aggregate_participants())
    demanded = {p.unit for p in picture}
    unit = unit or _most_used([r.unit for r in capacity], demanded) or _most_used([p.unit for p in picture])
    years = next((p.years for p in picture if p.unit == unit), {})
    per_year: dict[int, int] = {}
    for r in capacity:
        if r.unit == unit:
            for y, q in r.yearly.items():
                per_year[int(y)] = per_year.get(int(y), 0) + q
    short: dict[int, int] = {}
    for s in shortfalls:
        if s.unit in (None, unit):
            short[s.month.year] = short.get(s.month.year, 0) + s.shortfall
    others = demanded | {r.unit for r in capacity}
    return DemandCapacity(
        product,
        unit,
        model.demand_against_capacity(years, per_year, short),
        tuple(sorted(others - {unit})) if unit else (),
    )

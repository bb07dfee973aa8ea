"""Demand signals and the demand picture, in plain Python: a nation's standing demand for a product, and
per product and year the demand of signals and initiatives by firmness, against committed capacity."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from icep.contracts import Releasability, ReleasabilityScope
from icep.contracts.nations import ALLIES, PARTNERS
from icep.platform.domain import Actor, Aggregate, DomainEvent, invalid
from icep.platform.errors import Forbidden
from icep.procurement.initiatives.model import Initiative
from icep.procurement.initiatives.parts import (
    ACTIVE,
    CONTRACTED_STATES,
    FIRM,
    S,
)
from icep.procurement.rules import (
    check_procurement_staff,
    check_quantities,
)


class Firmness(StrEnum):
    INDICATIVE = "indicative"
    PLANNED = "planned"
    FUNDED = "funded"
    CONTRACTED = "contracted"


@dataclass(frozen=True, kw_only=True)
class SignalPublished(DomainEvent):
    """A demand signal published or revised (it is published anew, with its new figures)."""

    by: str


@dataclass(frozen=True, kw_only=True)
class DemandSignal(Aggregate):
    """A nation's standing demand for a product, outside any initiative."""

    id: str
    nation: str
    product: str
    capability_area: str
    unit: str
    firmness: Firmness
    quantities: dict[int, int]
    releasability: Releasability
    version: int
    updated_at: datetime

    @classmethod
    def publish(
        cls,
        *,
        id: str,
        actor: Actor,
        product: str,
        capability_area: str,
        unit: str,
        firmness: Firmness,
        quantities: Mapping[int, int],
        now: datetime,
        releasability: Releasability | None = None,
    ) -> DemandSignal:
        check_procurement_staff(actor)
        if actor.nation not in ALLIES and actor.nation not in PARTNERS:
            raise Forbidden("demand signals come from nations")
        if not product.strip() or not unit.strip():
            raise invalid("body.product", "a demand signal names a product and a unit")
        if not capability_area.strip():
            raise invalid("body.capability_area", "a demand signal names its capability area")
        q = check_quantities(quantities, "body.quantities")
        if not q:
            raise invalid("body.quantities", "a demand signal has a quantity for at least one year")
        release = releasability or Releasability(owner=actor.nation, scope=ReleasabilityScope.ALLIES)
        if release.owner != actor.nation:
            raise invalid("body.releasability", f"the signal belongs to {actor.nation}")
        return cls(
            id=id,
            nation=actor.nation,
            product=product.strip(),
            capability_area=capability_area.strip(),
            unit=unit.strip(),
            firmness=firmness,
            quantities=q,
            releasability=release,
            version=1,
            updated_at=now,
        ).recorded(SignalPublished(by=actor.id, at=now))

    def revise(
        self, actor: Actor, firmness: Firmness, quantities: Mapping[int, int], now: datetime
    ) -> DemandSignal:
        check_procurement_staff(actor)
        if actor.nation != self.nation:
            raise Forbidden(f"only {self.nation} revises its demand signal")
        q = check_quantities(quantities, "body.quantities")
        if not q:
            raise invalid("body.quantities", "a demand signal has a quantity for at least one year")
        return self.recorded(
            SignalPublished(by=actor.id, at=now),
            firmness=firmness,
            quantities=q,
            version=self.version + 1,
            updated_at=now,
        )


@dataclass(frozen=True)
class YearDemand:
    indicative: int = 0
    planned: int = 0
    funded: int = 0
    contracted: int = 0

    @property
    def total(self) -> int:
        return self.indicative + self.planned + self.funded + self.contracted

    @property
    def firm(self) -> int:
        """Planned, funded or contracted: what industry can build capacity on."""
        return self.planned + self.funded + self.contracted

    def plus(self, firmness: Firmness, quantity: int) -> YearDemand:
        return replace(self, **{firmness.value: getattr(self, firmness.value) + quantity})


def initiative_demand(
    initiative: Initiative, viewer: str | None, min_contributors: int
) -> dict[int, YearDemand]:
    """An initiative's demand by firmness: contracted once a contract is signed; before that, funded, then
    firm but unfunded (planned), then the indicative quantity beyond the firm one.

    As `viewer` (a nation, NATO, or None: everyone who may read the initiative) may see it (see
    `Disclosure`): in full for the lead nation and NATO staff; for anyone else only the published firm
    demand (nothing until the demand is settled), as planned (its funding is not published) or, once a
    contract is signed, contracted."""
    if initiative.status is S.CANCELLED:
        return {}
    contracted = initiative.status in CONTRACTED_STATES
    if not initiative.sees_demand_in_full(viewer):
        firm = initiative.demand_for(viewer, min_contributors).demand.firm
        as_ = Firmness.CONTRACTED if contracted else Firmness.PLANNED
        return {y: YearDemand().plus(as_, q) for y, q in firm.items()}
    out: dict[int, YearDemand] = {}
    for p in initiative.participations:
        if p.status not in ACTIVE:
            continue
        for y in set(p.indicative) | set(p.firm):
            firm_q, funded = (p.firm.get(y, 0), p.funded.get(y, 0)) if p.status in FIRM else (0, 0)
            d = out.get(y, YearDemand())
            if contracted:
                d = d.plus(Firmness.CONTRACTED, firm_q)
            else:
                d = d.plus(Firmness.FUNDED, funded).plus(Firmness.PLANNED, firm_q - funded)
            out[y] = d.plus(Firmness.INDICATIVE, max(p.indicative.get(y, 0) - firm_q, 0))
    return out


@dataclass(frozen=True)
class ProductDemand:
    product: str
    unit: str
    years: dict[int, YearDemand]
    signals: int
    initiatives: int


def demand_picture(
    signals: Iterable[DemandSignal],
    initiatives: Iterable[Initiative],
    viewer: str | None,
    min_contributors: int,
) -> list[ProductDemand]:
    """Per product, unit and year: standing signals and initiative demand, by firmness, each initiative's
    as `viewer` may see it (`initiative_demand`). Quantities in different units are never added up: a
    product demanded in two units has a line for each."""
    by_product: dict[tuple[str, str], dict[int, YearDemand]] = {}
    counts: dict[tuple[str, str], list[int]] = {}
    for s in signals:
        key = (s.product, s.unit)
        years = by_product.setdefault(key, {})
        counts.setdefault(key, [0, 0])[0] += 1
        for y, q in s.quantities.items():
            years[y] = years.get(y, YearDemand()).plus(s.firmness, q)
    for i in initiatives:
        d = initiative_demand(i, viewer, min_contributors)
        if not d:
            continue
        key = (i.item.product, i.item.unit)
        years = by_product.setdefault(key, {})
        counts.setdefault(key, [0, 0])[1] += 1
        for y, yd in d.items():
            cur = years.get(y, YearDemand())
            years[y] = YearDemand(
                cur.indicative + yd.indicative,
                cur.planned + yd.planned,
                cur.funded + yd.funded,
                cur.contracted + yd.contracted,
            )
    return [
        ProductDemand(p, u, dict(sorted(by_product[p, u].items())), counts[p, u][0], counts[p, u][1])
        for p, u in sorted(by_product)
    ]


@dataclass(frozen=True)
class YearBalance:
    year: int
    demand: YearDemand
    capacity: int
    #: Demand (all of it) minus committed capacity: positive is a shortfall industry must cover.
    gap: int
    #: Firm demand (planned, funded, contracted) minus capacity.
    firm_gap: int
    #: Output the plans reported short of their ramps in months of the year (latest report per month).
    shortfall_reported: int = 0


def demand_against_capacity(
    demand: Mapping[int, YearDemand],
    capacity: Mapping[int, int],
    shortfalls: Mapping[int, int] | None = None,
) -> list[YearBalance]:
    short = shortfalls or {}
    years = sorted(set(demand) | set(capacity) | set(short))
    out = []
    for y in years:
        d = demand.get(y, YearDemand())
        c = capacity.get(y, 0)
        out.append(YearBalance(y, d, c, d.total - c, d.firm - c, short.get(y, 0)))
    return out

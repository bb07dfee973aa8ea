"""HTTP routes of demand signals, the demand picture and demand against capacity."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from icep.platform.app import DatabaseDep, UnitOfWorkDep
from icep.platform.auth import ActorDep
from icep.platform.domain import invalid
from icep.platform.errors import PreconditionRequired
from icep.platform.http import IfMatch, etag, next_link
from icep.platform.openapi import CREATED_ID, links
from icep.procurement.demand import use_cases
from icep.procurement.demand.model import DemandSignal as Signal
from icep.procurement.demand.schemas import (
    DemandCapacityOut,
    DemandPictureOut,
    ProductDemandOut,
    SignalChange,
    SignalCreate,
    SignalOut,
    SignalPage,
    YearBalanceOut,
    YearDemandOut,
)
from icep.procurement.schema_types import (
    Cursor,
    Limit,
    owned,
    per_year,
)

router = APIRouter(prefix="/v1/demand", tags=["demand"])
capacity_router = APIRouter(prefix="/v1/demand-capacity", tags=["demand"])


def _product(product: str) -> str:
    """A product asked for by name: blank is not a product (it would drop the filter)."""
    if not product.strip():
        raise invalid("query.product", "name a product (not blank)")
    return product.strip()


def _signal(response: Response, s: Signal) -> SignalOut:
    response.headers["ETag"] = etag(s.version)
    return SignalOut.of(s)


@router.get(
    "",
    operation_id="demand",
    summary="Demand per product and year, by firmness",
)
async def demand(
    db: DatabaseDep, who: ActorDep, product: Annotated[str | None, Query(max_length=200)] = None
) -> DemandPictureOut:
    """Per product (and unit: quantities in different units are never added up) and year, the demand of the
    caller's visible demand signals and joint procurement initiatives, split by firmness: `indicative`,
    `planned` (firm, not funded), `funded` and `contracted`; `firm` is planned + funded + contracted and
    `total` all four.

    How an initiative counts, per participating nation and year: its firm quantity, split into funded and
    planned (all of it `contracted` once a contract is signed), plus its indicative quantity beyond the firm
    one. So each nation counts the larger of its indicative and firm quantities, once: an initiative's `total`
    here differs from the sum of its indicative quantities as soon as a nation commits more (or less) than it
    indicated. Withdrawn nations and cancelled initiatives count nothing; a nation whose withdrawal request is
    pending still counts.

    What the caller sees (disclosure rule): signals released to its nation; initiatives in full only when it
    leads them or is NATO staff; for any other initiative it may read, only the published firm demand (counted
    as `planned`, or `contracted` after a contract), nothing before the demand is settled (the tender
    published) and nothing for years fewer than `ICEP_PROCUREMENT_MIN_AGGREGATE_PARTICIPANTS` nations (default
    3) commit to. Two nations may therefore get different figures for the same product."""
    found = await use_cases.demand(db, who, None if product is None else _product(product))
    return DemandPictureOut(
        items=[
            ProductDemandOut(
                product=p.product,
                unit=p.unit,
                years={str(y): YearDemandOut.of(d) for y, d in sorted(p.years.items())},
                signals=p.signals,
                initiatives=p.initiatives,
            )
            for p in found
        ]
    )


@router.post(
    "/signals",
    status_code=201,
    operation_id="publishDemandSignal",
    openapi_extra=links(
        "getDemandSignal", "reviseDemandSignal", status=201, if_match=True, signal_id=CREATED_ID
    ),
    summary="Publish a nation's standing demand for a product",
)
async def publish_demand_signal(
    body: SignalCreate, uow: UnitOfWorkDep, response: Response, who: ActorDep
) -> SignalOut:
    """Procurement staff (role `procurement`) of a nation (an Ally or partner, not NATO staff) publish their
    nation's standing demand for a product outside any initiative: quantities per year at one firmness. Read
    by its `releasability` (default: all Allies). Raises `icep.procurement.demand_signal.published.v1` for
    those readers. It counts in `GET /v1/demand`."""
    signal = await use_cases.publish_demand_signal(
        uow,
        who,
        product=body.product.strip(),
        capability_area=body.capability_area.strip(),
        unit=body.unit.strip(),
        firmness=body.firmness,
        quantities=per_year(body.quantities),
        releasability=owned(body.releasability, who.nation),
    )
    response.headers["Location"] = f"/v1/demand/signals/{signal.id}"
    return _signal(response, signal)


@router.get("/signals", operation_id="listDemandSignals", summary="Demand signals the caller may see")
async def list_demand_signals(
    request: Request,
    db: DatabaseDep,
    who: ActorDep,
    nation: Annotated[str | None, Query(pattern=r"^[A-Z]{2,4}$")] = None,
    product: Annotated[str | None, Query(max_length=200)] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> SignalPage:
    """The demand signals the caller's nation may read, in pages, narrowed by nation or product."""
    found, after = await use_cases.list_demand_signals(
        db, who, nation=nation, product=product, limit=limit, after=cursor
    )
    return SignalPage(items=[SignalOut.of(x) for x in found], next=next_link(request, after))


@router.get("/signals/{signal_id}", operation_id="getDemandSignal", summary="One demand signal")
async def get_demand_signal(signal_id: str, db: DatabaseDep, response: Response, who: ActorDep) -> SignalOut:
    """One demand signal with its `ETag`; 404 when the caller's nation may not read it."""
    return _signal(response, await use_cases.get_demand_signal(db, who, signal_id))


@router.put(
    "/signals/{signal_id}",
    operation_id="reviseDemandSignal",
    summary="Revise a demand signal",
)
async def revise_demand_signal(
    signal_id: str,
    body: SignalChange,
    uow: UnitOfWorkDep,
    response: Response,
    who: ActorDep,
    expected: IfMatch,
) -> SignalOut:
    """The owning nation's procurement staff revise the signal's firmness and quantities (they replace the old
    ones). Requires `If-Match` with the signal's `ETag` (428 without, 412 when stale). Raises
    `icep.procurement.demand_signal.published.v1` again, with the new figures. 403 for another nation."""
    if expected is None:
        raise PreconditionRequired(
            "revising a demand signal needs If-Match with the ETag of the version you read"
        )
    signal = await use_cases.revise_demand_signal(
        uow, who, signal_id, expected, body.firmness, per_year(body.quantities)
    )
    return _signal(response, signal)


@capacity_router.get(
    "",
    operation_id="demandAgainstCapacity",
    summary="A product's demand against committed capacity, per year",
)
async def demand_against_capacity(
    db: DatabaseDep,
    who: ActorDep,
    product: Annotated[str, Query(min_length=1, max_length=200)],
    unit: Annotated[
        str | None, Query(min_length=1, max_length=50, description="Default: the committed capacity's")
    ] = None,
) -> DemandCapacityOut:
    """Per year, one product's aggregated demand (as `GET /v1/demand` counts it, within what the caller may
    see) against the capacity committed by the accepted national plans whose capacity figures the caller may
    read, in one unit (default: the committed capacity's; `other_units` lists units left out). `gap` is all
    demand minus capacity, `firm_gap` firm demand minus capacity (positive: a shortfall industry must cover);
    `shortfall_reported` is output the plans reported short of their ramps."""
    if unit is not None and not unit.strip():
        raise invalid("query.unit", "name a unit (not blank), or leave it out")
    found = await use_cases.demand_against_capacity(
        db, who, _product(product), unit.strip() if unit else None
    )
    return DemandCapacityOut(
        product=found.product,
        unit=found.unit,
        other_units=list(found.other_units),
        years=[
            YearBalanceOut(
                year=b.year,
                demand=YearDemandOut.of(b.demand),
                capacity=b.capacity,
                gap=b.gap,
                firm_gap=b.firm_gap,
                shortfall_reported=b.shortfall_reported,
            )
            for b in found.years
        ],
    )

"""HTTP routes of an initiative from its tender on: bids, awards, contracts, milestones, call-offs and
delivery (the proposal and the participation are in `routes.py`). Parse, call one use case, shape the
answer."""

from __future__ import annotations

from fastapi import APIRouter, Response

from icep.platform.app import DatabaseDep, UnitOfWorkDep
from icep.platform.auth import ActorDep
from icep.platform.errors import NotFound
from icep.platform.http import IfMatch, etag
from icep.platform.openapi import from_path, links
from icep.procurement.initiatives import use_cases
from icep.procurement.initiatives.parts import (
    AwardInput,
    Lot,
    Milestone,
)
from icep.procurement.initiatives.routes import initiative_answer
from icep.procurement.initiatives.schemas import (
    AwardIn,
    BidIn,
    CallOffIn,
    CallOffOut,
    CallOffPlacedOut,
    ContractIn,
    ContractOut,
    ContractSignedOut,
    InitiativeOut,
    MilestoneRecordIn,
    TenderIn,
)

#: The same paths and tag as the initiative's other routes.
router = APIRouter(prefix="/v1/initiatives", tags=["initiatives"])


@router.post(
    "/{initiative_id}/tender",
    operation_id="publishTender",
    openapi_extra=links(
        "getInitiative",
        "recordBid",
        "award",
        "cancelInitiative",
        "ocdsReleasePackage",
        if_match=True,
        initiative_id=from_path("initiative_id"),
    ),
    summary="Publish the tender, in lots (lead nation)",
)
async def publish_tender(
    initiative_id: str,
    body: TenderIn,
    uow: UnitOfWorkDep,
    response: Response,
    who: ActorDep,
    expected: IfMatch,
) -> InitiativeOut:
    """The lead nation publishes the tender in lots: `participation_closed` -> `tendering`. The lots'
    quantities may not exceed the firm demand. This settles the demand: its aggregate (firm demand of the
    years at least `ICEP_PROCUREMENT_MIN_AGGREGATE_PARTICIPANTS` nations commit to) is published to every
    reader of the initiative. Only the lead nation's procurement staff (role `procurement`) may do this (403
    otherwise). Requires `If-Match` with the initiative's `ETag` (428 without, 412 when stale). Raises
    `icep.procurement.tender.published.v1` and `icep.procurement.initiative.demand_aggregated.v1` with
    `disclosure: published`. 409 when not participation-closed or withdrawals are pending; 422 for empty,
    duplicate or oversized lots."""
    lots = [
        Lot(
            id=x.id,
            title=x.title.strip(),
            quantity=x.quantity,
            estimated_value=x.estimated_value,
            currency=x.currency,
        )
        for x in body.lots
    ]
    i = await use_cases.publish_tender(uow, who, initiative_id, expected, lots, body.tender_period_end)
    return initiative_answer(response, i, who)


@router.post(
    "/{initiative_id}/bids",
    operation_id="recordBid",
    openapi_extra=links("getInitiative", "award", if_match=True, initiative_id=from_path("initiative_id")),
    summary="Record a supplier's bid on a lot (lead nation)",
)
async def record_bid(
    initiative_id: str,
    body: BidIn,
    uow: UnitOfWorkDep,
    response: Response,
    who: ActorDep,
    expected: IfMatch,
) -> InitiativeOut:
    """The lead nation records a registered supplier's bid on a lot of the tender. Bids are read by the lead
    nation alone. Only the lead nation's procurement staff (role `procurement`) may do this (403 otherwise).
    Requires `If-Match` with the initiative's `ETag` (428 without, 412 when stale). Raises
    `icep.procurement.bid.recorded.v1`, marked for the lead nation only. 409 when not tendering; 422 for an
    unknown lot, a quantity beyond the lot, or a supplier not released as widely as the initiative."""
    i = await use_cases.record_bid(
        uow,
        who,
        initiative_id,
        expected,
        body.lot_id,
        body.supplier_id,
        body.quantity,
        body.value,
        body.currency,
    )
    return initiative_answer(response, i, who)


@router.post(
    "/{initiative_id}/award",
    operation_id="award",
    openapi_extra=links(
        "getInitiative", "signContract", if_match=True, initiative_id=from_path("initiative_id")
    ),
    summary="Award lots to suppliers (lead nation)",
)
async def award(
    initiative_id: str,
    body: AwardIn,
    uow: UnitOfWorkDep,
    response: Response,
    who: ActorDep,
    expected: IfMatch,
) -> InitiativeOut:
    """The lead nation awards lots to one or more suppliers: `tendering` -> `awarded`. Refused (422, saying
    why) for a supplier whose screening is not `clear` or `cleared`, one not released as widely as the
    initiative, or a `product_code` without verified conformance with every required standard edition. Only
    the lead nation's procurement staff (role `procurement`) may do this (403 otherwise). Requires `If-Match`
    with the initiative's `ETag` (428 without, 412 when stale). Raises `icep.procurement.award.made.v1`. 409
    when not tendering."""
    awards = [
        AwardInput(
            lot_id=a.lot_id,
            supplier_id=a.supplier_id,
            quantity=a.quantity,
            value=a.value,
            currency=a.currency,
            product_code=a.product_code,
        )
        for a in body.awards
    ]
    i = await use_cases.award(uow, who, initiative_id, expected, awards)
    return initiative_answer(response, i, who)


@router.post(
    "/{initiative_id}/contracts",
    status_code=201,
    operation_id="signContract",
    summary="Sign the contract of an award (lead nation)",
)
async def sign_contract(
    initiative_id: str,
    body: ContractIn,
    uow: UnitOfWorkDep,
    response: Response,
    who: ActorDep,
    expected: IfMatch,
) -> ContractSignedOut:
    """The lead nation signs the contract of an award (a framework agreement or not) with its delivery
    milestones: `awarded` -> `contracted` (one contract per award). 201 with the contract; `Location` names
    it. Only the lead nation's procurement staff (role `procurement`) may do this (403 otherwise). Requires
    `If-Match` with the initiative's `ETag` (428 without, 412 when stale). Raises
    `icep.procurement.contract.signed.v1`. 409 when the award already has a contract; 422 for an unknown award
    or a period that ends before it starts."""
    i, contract = await use_cases.sign_contract(
        uow,
        who,
        initiative_id,
        expected,
        use_cases.NewContract(
            award_id=body.award_id,
            framework=body.framework,
            value=body.value,
            currency=body.currency,
            period_start=body.period_start,
            period_end=body.period_end,
            milestones=tuple(
                Milestone(id=m.id, title=m.title.strip(), due=m.due, quantity=m.quantity)
                for m in body.milestones
            ),
        ),
    )
    response.headers["Location"] = f"/v1/initiatives/{i.id}/contracts/{contract.id}"
    response.headers["ETag"] = etag(i.version)
    return ContractSignedOut(**InitiativeOut.fields_of(i, who.nation), contract_id=contract.id)


@router.get("/{initiative_id}/contracts/{contract_id}", operation_id="getContract", summary="One contract")
async def get_contract(
    initiative_id: str, contract_id: str, db: DatabaseDep, response: Response, who: ActorDep
) -> ContractOut:
    """One contract of the initiative, with its milestones. Read by whoever reads the initiative (404
    otherwise)."""
    i = await use_cases.get_initiative(db, who, initiative_id)
    found = next((c for c in i.contracts if c.id == contract_id), None)
    if found is None:
        raise NotFound(f"no contract {contract_id} in initiative {initiative_id}")
    # A contract changes as part of its initiative: a milestone record names the initiative's ETag.
    response.headers["ETag"] = etag(i.version)
    return ContractOut.of(found)


@router.post(
    "/{initiative_id}/contracts/{contract_id}/milestones/{milestone_id}",
    operation_id="recordMilestone",
    summary="Record a delivery milestone met or missed (lead nation)",
)
async def record_milestone(
    initiative_id: str,
    contract_id: str,
    milestone_id: str,
    body: MilestoneRecordIn,
    uow: UnitOfWorkDep,
    response: Response,
    who: ActorDep,
    expected: IfMatch,
) -> InitiativeOut:
    """The lead nation records a delivery milestone as met (on a date that has come) or missed (with a
    reason), while contracted or delivering. Only the lead nation's procurement staff (role `procurement`) may
    do this (403 otherwise). Requires `If-Match` with the initiative's `ETag` (428 without, 412 when stale).
    Raises `icep.procurement.milestone.met.v1` or `icep.procurement.milestone.missed.v1`. 404 for an unknown
    contract or milestone; 409 when already recorded."""
    i = await use_cases.record_milestone(
        uow,
        who,
        initiative_id,
        expected,
        contract_id,
        milestone_id,
        body.met_on,
        body.reason,
    )
    return initiative_answer(response, i, who)


@router.post(
    "/{initiative_id}/call-offs",
    status_code=201,
    operation_id="placeCallOff",
    summary="Place a call-off under a framework contract (lead nation)",
)
async def place_call_off(
    initiative_id: str,
    body: CallOffIn,
    uow: UnitOfWorkDep,
    response: Response,
    who: ActorDep,
    expected: IfMatch,
) -> CallOffPlacedOut:
    """The lead nation places a call-off under a framework contract for a nation with a firm commitment: a new
    OCDS process linked to the framework's. 201 with the call-off; `Location` names it. Only the lead nation's
    procurement staff (role `procurement`) may do this (403 otherwise). Requires `If-Match` with the
    initiative's `ETag` (428 without, 412 when stale). Raises `icep.procurement.call_off.placed.v1`. 422 when
    the contract is not a framework, the buyer has no firm commitment, or the quantity, date or currency do
    not fit."""
    i, call_off = await use_cases.place_call_off(
        uow,
        who,
        initiative_id,
        expected,
        use_cases.NewCallOff(
            contract_id=body.contract_id,
            buyer=body.buyer,
            quantity=body.quantity,
            value=body.value,
            currency=body.currency,
            delivery_by=body.delivery_by,
        ),
    )
    response.headers["Location"] = f"/v1/initiatives/{i.id}/call-offs/{call_off.id}"
    response.headers["ETag"] = etag(i.version)
    return CallOffPlacedOut(
        **InitiativeOut.fields_of(i, who.nation), call_off_id=call_off.id, call_off_ocid=call_off.ocid
    )


@router.get("/{initiative_id}/call-offs/{call_off_id}", operation_id="getCallOff", summary="One call-off")
async def get_call_off(
    initiative_id: str, call_off_id: str, db: DatabaseDep, response: Response, who: ActorDep
) -> CallOffOut:
    """One call-off under a framework contract of the initiative. Read by whoever reads the initiative (404
    otherwise)."""
    i = await use_cases.get_initiative(db, who, initiative_id)
    found = next((c for c in i.call_offs if c.id == call_off_id), None)
    if found is None:
        raise NotFound(f"no call-off {call_off_id} in initiative {initiative_id}")
    response.headers["ETag"] = etag(i.version)
    return CallOffOut.of(found)


@router.post(
    "/{initiative_id}/start-delivery",
    operation_id="startDelivery",
    openapi_extra=links(
        "getInitiative", "closeInitiative", if_match=True, initiative_id=from_path("initiative_id")
    ),
    summary="Start delivery (lead nation)",
)
async def start_delivery(
    initiative_id: str, uow: UnitOfWorkDep, response: Response, who: ActorDep, expected: IfMatch
) -> InitiativeOut:
    """The lead nation records that delivery started: `contracted` -> `delivering`. Only the lead nation's
    procurement staff (role `procurement`) may do this (403 otherwise). Requires `If-Match` with the
    initiative's `ETag` (428 without, 412 when stale). Raises `icep.procurement.initiative.delivering.v1`. 409
    when not contracted."""
    i = await use_cases.start_delivery(uow, who, initiative_id, expected)
    return initiative_answer(response, i, who)


@router.post(
    "/{initiative_id}/close",
    operation_id="closeInitiative",
    summary="Close a delivered initiative (lead nation)",
)
async def close_initiative(
    initiative_id: str, uow: UnitOfWorkDep, response: Response, who: ActorDep, expected: IfMatch
) -> InitiativeOut:
    """The lead nation closes a delivering initiative once every milestone is met or missed: `delivering` ->
    `closed`. Only the lead nation's procurement staff (role `procurement`) may do this (403 otherwise).
    Requires `If-Match` with the initiative's `ETag` (428 without, 412 when stale). Raises
    `icep.procurement.initiative.closed.v1`. 409 when not delivering or milestones are still scheduled."""
    i = await use_cases.close_initiative(uow, who, initiative_id, expected)
    return initiative_answer(response, i, who)

"""HTTP routes of initiatives: parse, call one use case, shape the answer. Quantities per year are objects
keyed by the year as a string (`{"2026": 120000}`), as JSON requires."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from icep.platform.app import DatabaseDep, UnitOfWorkDep
from icep.platform.auth import ActorDep
from icep.platform.domain import Actor
from icep.platform.errors import NotFound
from icep.platform.http import IfMatch, etag, next_link
from icep.platform.openapi import CREATED_ID, from_path, links
from icep.procurement.initiatives import use_cases
from icep.procurement.initiatives.model import Initiative
from icep.procurement.initiatives.parts import (
    AwardInput,
    InitiativeStatus,
    Item,
    Lot,
    Milestone,
    RequiredStandard,
)
from icep.procurement.initiatives.schemas import (
    AwardIn,
    BidIn,
    CallOffIn,
    CallOffOut,
    CallOffPlacedOut,
    CommitIn,
    ContractIn,
    ContractOut,
    ContractSignedOut,
    InitiativeCreate,
    InitiativeOut,
    InitiativePage,
    JoinIn,
    MilestoneRecordIn,
    ReasonIn,
    TenderIn,
)
from icep.procurement.schema_types import (
    Cursor,
    Limit,
    Nation,
    owned,
    per_year,
)

router = APIRouter(prefix="/v1/initiatives", tags=["initiatives"])


def _initiative(response: Response, i: Initiative, who: Actor) -> InitiativeOut:
    response.headers["ETag"] = etag(i.version)
    return InitiativeOut.of(i, who.nation)


@router.post(
    "",
    status_code=201,
    operation_id="proposeInitiative",
    openapi_extra=links(
        "getInitiative",
        "openInitiative",
        "cancelInitiative",
        "ocdsReleasePackage",
        "ocdsRecordPackage",
        status=201,
        if_match=True,
        initiative_id=CREATED_ID,
    ),
    summary="Propose a joint procurement initiative",
)
async def propose_initiative(
    body: InitiativeCreate, uow: UnitOfWorkDep, response: Response, who: ActorDep
) -> InitiativeOut:
    """Procurement staff (role `procurement`) of an Ally, or NATO staff (then NSPA is the procuring entity),
    propose a joint procurement initiative, which they lead: status `proposed`, an OCDS contracting process
    (`ocid`). Read by its `releasability` (default: all Allies, plus the partners in `open_to_partners`).
    Raises `icep.procurement.initiative.proposed.v1` for those readers.

    Errors: 403 without the role or for a partner; 422 for an empty title, product or unit."""
    initiative = await use_cases.propose_initiative(
        uow,
        who,
        use_cases.NewInitiative(
            title=body.title,
            description=body.description,
            item=Item(
                product=body.item.product.strip(),
                unit=body.item.unit.strip(),
                classification_scheme=body.item.classification_scheme.strip(),
                classification_id=body.item.classification_id.strip(),
                description=body.item.description.strip(),
            ),
            capability_area=body.capability_area.strip(),
            participation_deadline=body.participation_deadline,
            procuring_entity=body.procuring_entity,
            required_standards=tuple(
                RequiredStandard(s.number.strip(), s.edition) for s in body.required_standards
            ),
            open_to_partners=tuple(body.open_to_partners),
            releasability=owned(body.releasability, who.nation),
        ),
    )
    response.headers["Location"] = f"/v1/initiatives/{initiative.id}"
    return _initiative(response, initiative, who)


@router.get("", operation_id="listInitiatives", summary="Initiatives the caller may see")
async def list_initiatives(
    request: Request,
    db: DatabaseDep,
    who: ActorDep,
    product: Annotated[str | None, Query(max_length=200)] = None,
    status: InitiativeStatus | None = None,
    lead_nation: Annotated[str | None, Query(pattern=r"^[A-Z]{3,4}$")] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> InitiativePage:
    """The initiatives the caller's nation may read, in pages (`limit`, `cursor`, `next`), narrowed by
    product, status or lead nation. Each shows the participations and the demand the caller may see (see the
    table in this tag: other nations' quantities and the demand as it stands only to the lead nation and NATO
    staff)."""
    found, after = await use_cases.list_initiatives(
        db,
        who,
        product=product,
        status=status,
        lead_nation=lead_nation,
        limit=limit,
        after=cursor,
    )
    return InitiativePage(
        items=[InitiativeOut.of(i, who.nation) for i in found], next=next_link(request, after)
    )


@router.get(
    "/{initiative_id}",
    operation_id="getInitiative",
    openapi_extra=links(
        "openInitiative",
        "joinInitiative",
        "commitToInitiative",
        "withdrawFromInitiative",
        "closeParticipation",
        "publishTender",
        "cancelInitiative",
        if_match=True,
        initiative_id=from_path("initiative_id"),
    ),
    summary="One initiative",
)
async def get_initiative(
    initiative_id: str, db: DatabaseDep, response: Response, who: ActorDep
) -> InitiativeOut:
    """One initiative with its `ETag`: status, participations, tender, bids (lead nation only), awards,
    contracts, call-offs and flags. Other nations' quantities appear only to the lead nation and NATO staff;
    the aggregated `demand` as it stands only to them, others see it once published (see the disclosure rule
    in this tag's description). 404 when the caller's nation may not read it."""
    return _initiative(response, await use_cases.get_initiative(db, who, initiative_id), who)


@router.post(
    "/{initiative_id}/open",
    operation_id="openInitiative",
    openapi_extra=links(
        "getInitiative",
        "joinInitiative",
        "closeParticipation",
        "cancelInitiative",
        if_match=True,
        initiative_id=from_path("initiative_id"),
    ),
    summary="Open for participation (lead nation)",
)
async def open_initiative(
    initiative_id: str, uow: UnitOfWorkDep, response: Response, who: ActorDep, expected: IfMatch
) -> InitiativeOut:
    """The lead nation opens a proposed initiative for participation: `proposed` -> `open`. Only the lead
    nation's procurement staff (role `procurement`) may do this (403 otherwise). Requires `If-Match` with the
    initiative's `ETag` (428 without, 412 when stale). Raises `icep.procurement.initiative.opened.v1`. 409
    when not proposed."""
    i = await use_cases.open_initiative(uow, who, initiative_id, expected)
    return _initiative(response, i, who)


@router.post(
    "/{initiative_id}/join",
    operation_id="joinInitiative",
    openapi_extra=links(
        "getInitiative",
        "commitToInitiative",
        "withdrawFromInitiative",
        if_match=True,
        initiative_id=from_path("initiative_id"),
    ),
    summary="Join with indicative quantities per year",
)
async def join_initiative(
    initiative_id: str, body: JoinIn, uow: UnitOfWorkDep, response: Response, who: ActorDep, expected: IfMatch
) -> InitiativeOut:
    """A nation joins an open initiative before its `participation_deadline` with an indicative quantity per
    year, or revises it while only joined. The caller acts for its own nation: procurement staff (role
    `procurement`) of an Ally, or of a partner the initiative is open to (403 for NATO staff and other
    partners). Requires `If-Match` with the initiative's `ETag` (428 without, 412 when stale). Raises
    `icep.procurement.initiative.joined.v1` (to the lead nation, that nation and NATO staff) and
    `icep.procurement.initiative.demand_aggregated.v1` with the demand as it stands (lead nation and NATO
    staff). 409 when not open, past the deadline, or the nation has committed."""
    i = await use_cases.join_initiative(uow, who, initiative_id, expected, per_year(body.indicative))
    return _initiative(response, i, who)


@router.post(
    "/{initiative_id}/commit",
    operation_id="commitToInitiative",
    openapi_extra=links(
        "getInitiative",
        "withdrawFromInitiative",
        "closeParticipation",
        if_match=True,
        initiative_id=from_path("initiative_id"),
    ),
    summary="Commit firm (and funded) quantities per year",
)
async def commit_to_initiative(
    initiative_id: str,
    body: CommitIn,
    uow: UnitOfWorkDep,
    response: Response,
    who: ActorDep,
    expected: IfMatch,
) -> InitiativeOut:
    """A nation that joined commits firm quantities per year, and says how much of each year is funded
    (`funded`, default none; never more than `firm`). It may revise them until the tender is published. The
    caller acts for its own nation: procurement staff (role `procurement`) of an Ally, or of a partner the
    initiative is open to (403 for NATO staff and other partners). Requires `If-Match` with the initiative's
    `ETag` (428 without, 412 when stale). Raises `icep.procurement.initiative.committed.v1` (lead nation, that
    nation, NATO staff) and `demand_aggregated` as it stands. 409 when the initiative is not open or
    participation-closed, or the nation has not joined; 422 when funded exceeds firm."""
    i = await use_cases.commit_to_initiative(
        uow, who, initiative_id, expected, per_year(body.firm), per_year(body.funded)
    )
    return _initiative(response, i, who)


@router.post(
    "/{initiative_id}/withdraw",
    operation_id="withdrawFromInitiative",
    openapi_extra=links("getInitiative", if_match=True, initiative_id=from_path("initiative_id")),
    summary="Withdraw from an initiative",
)
async def withdraw_from_initiative(
    initiative_id: str,
    body: ReasonIn,
    uow: UnitOfWorkDep,
    response: Response,
    who: ActorDep,
    expected: IfMatch,
) -> InitiativeOut:
    """A participating nation withdraws, with a reason. Only joined (or the lead nation itself): at once,
    raising `icep.procurement.initiative.participant_withdrawn.v1`. After a firm commitment: a request
    (`icep.procurement.initiative.withdrawal_requested.v1`) the lead nation approves or refuses; its
    quantities still count until then. The caller acts for its own nation: procurement staff (role
    `procurement`) of an Ally, or of a partner the initiative is open to (403 for NATO staff and other
    partners). Requires `If-Match` with the initiative's `ETag` (428 without, 412 when stale). 409 when the
    initiative is past participation or the nation takes no part."""
    i = await use_cases.withdraw_from_initiative(uow, who, initiative_id, expected, body.reason)
    return _initiative(response, i, who)


@router.post(
    "/{initiative_id}/withdrawals/{nation}/approve",
    operation_id="approveWithdrawal",
    summary="Approve a committed nation's withdrawal (lead nation)",
)
async def approve_withdrawal(
    initiative_id: str,
    nation: Nation,
    uow: UnitOfWorkDep,
    response: Response,
    who: ActorDep,
    expected: IfMatch,
) -> InitiativeOut:
    """The lead nation approves a committed nation's withdrawal request, as an amendment: the nation is
    withdrawn and its quantities leave the demand. Only the lead nation's procurement staff (role
    `procurement`) may do this (403 otherwise). Requires `If-Match` with the initiative's `ETag` (428 without,
    412 when stale). Raises `icep.procurement.initiative.participant_withdrawn.v1` and `demand_aggregated` as
    it stands. 409 when that nation has no pending request or the demand is closed."""
    i = await use_cases.decide_withdrawal(uow, who, initiative_id, expected, nation, True)
    return _initiative(response, i, who)


@router.post(
    "/{initiative_id}/withdrawals/{nation}/refuse",
    operation_id="refuseWithdrawal",
    summary="Refuse a committed nation's withdrawal (lead nation)",
)
async def refuse_withdrawal(
    initiative_id: str,
    nation: Nation,
    uow: UnitOfWorkDep,
    response: Response,
    who: ActorDep,
    expected: IfMatch,
) -> InitiativeOut:
    """The lead nation refuses a committed nation's withdrawal request: it stays committed. Only the lead
    nation's procurement staff (role `procurement`) may do this (403 otherwise). Requires `If-Match` with the
    initiative's `ETag` (428 without, 412 when stale). Raises
    `icep.procurement.initiative.withdrawal_refused.v1`. 409 when that nation has no pending request."""
    i = await use_cases.decide_withdrawal(uow, who, initiative_id, expected, nation, False)
    return _initiative(response, i, who)


@router.post(
    "/{initiative_id}/close-participation",
    operation_id="closeParticipation",
    openapi_extra=links(
        "getInitiative",
        "publishTender",
        "cancelInitiative",
        if_match=True,
        initiative_id=from_path("initiative_id"),
    ),
    summary="Close participation (lead nation)",
)
async def close_participation(
    initiative_id: str, uow: UnitOfWorkDep, response: Response, who: ActorDep, expected: IfMatch
) -> InitiativeOut:
    """The lead nation closes participation: `open` -> `participation_closed`; nations may still revise their
    firm commitments until the tender. Only the lead nation's procurement staff (role `procurement`) may do
    this (403 otherwise). Requires `If-Match` with the initiative's `ETag` (428 without, 412 when stale).
    Raises `icep.procurement.initiative.participation_closed.v1`. 409 when not open, nobody joined, or
    withdrawal requests are pending."""
    i = await use_cases.close_participation(uow, who, initiative_id, expected)
    return _initiative(response, i, who)


@router.post(
    "/{initiative_id}/cancel",
    operation_id="cancelInitiative",
    summary="Cancel an initiative (lead nation)",
)
async def cancel_initiative(
    initiative_id: str,
    body: ReasonIn,
    uow: UnitOfWorkDep,
    response: Response,
    who: ActorDep,
    expected: IfMatch,
) -> InitiativeOut:
    """The lead nation cancels the initiative, with a reason, in any state before a contract is signed
    (`proposed` to `awarded`) -> `cancelled`. Only the lead nation's procurement staff (role `procurement`)
    may do this (403 otherwise). Requires `If-Match` with the initiative's `ETag` (428 without, 412 when
    stale). Raises `icep.procurement.initiative.cancelled.v1`; its demand leaves the demand picture. 409 once
    contracted."""
    i = await use_cases.cancel_initiative(uow, who, initiative_id, expected, body.reason)
    return _initiative(response, i, who)


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
    return _initiative(response, i, who)


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
    return _initiative(response, i, who)


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
    return _initiative(response, i, who)


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
    return _initiative(response, i, who)


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
    return _initiative(response, i, who)


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
    return _initiative(response, i, who)

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
    "", status_code=201, operation_id="proposeInitiative", summary="Propose a joint procurement initiative"
)
async def propose_initiative(
    body: InitiativeCreate, uow: UnitOfWorkDep, response: Response, who: ActorDep
) -> InitiativeOut:
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


@router.get("/{initiative_id}", operation_id="getInitiative", summary="One initiative")
async def get_initiative(
    initiative_id: str, db: DatabaseDep, response: Response, who: ActorDep
) -> InitiativeOut:
    return _initiative(response, await use_cases.get_initiative(db, who, initiative_id), who)


@router.post(
    "/{initiative_id}/open", operation_id="openInitiative", summary="Open for participation (lead nation)"
)
async def open_initiative(
    initiative_id: str, uow: UnitOfWorkDep, response: Response, who: ActorDep, expected: IfMatch
) -> InitiativeOut:
    i = await use_cases.open_initiative(uow, who, initiative_id, expected)
    return _initiative(response, i, who)


@router.post(
    "/{initiative_id}/join",
    operation_id="joinInitiative",
    summary="Join with indicative quantities per year (or revise them)",
)
async def join_initiative(
    initiative_id: str, body: JoinIn, uow: UnitOfWorkDep, response: Response, who: ActorDep, expected: IfMatch
) -> InitiativeOut:
    i = await use_cases.join_initiative(uow, who, initiative_id, expected, per_year(body.indicative))
    return _initiative(response, i, who)


@router.post(
    "/{initiative_id}/commit",
    operation_id="commitToInitiative",
    summary="Commit firm quantities per year, and how much of them is funded",
)
async def commit_to_initiative(
    initiative_id: str,
    body: CommitIn,
    uow: UnitOfWorkDep,
    response: Response,
    who: ActorDep,
    expected: IfMatch,
) -> InitiativeOut:
    i = await use_cases.commit_to_initiative(
        uow, who, initiative_id, expected, per_year(body.firm), per_year(body.funded)
    )
    return _initiative(response, i, who)


@router.post(
    "/{initiative_id}/withdraw",
    operation_id="withdrawFromInitiative",
    summary="Withdraw (after a firm commitment: a request the lead nation decides on)",
)
async def withdraw_from_initiative(
    initiative_id: str,
    body: ReasonIn,
    uow: UnitOfWorkDep,
    response: Response,
    who: ActorDep,
    expected: IfMatch,
) -> InitiativeOut:
    i = await use_cases.withdraw_from_initiative(uow, who, initiative_id, expected, body.reason)
    return _initiative(response, i, who)


@router.post(
    "/{initiative_id}/withdrawals/{nation}/approve",
    operation_id="approveWithdrawal",
    summary="Approve a committed nation's withdrawal, as an amendment (lead nation)",
)
async def approve_withdrawal(
    initiative_id: str,
    nation: Nation,
    uow: UnitOfWorkDep,
    response: Response,
    who: ActorDep,
    expected: IfMatch,
) -> InitiativeOut:
    i = await use_cases.decide_withdrawal(uow, who, initiative_id, expected, nation, True)
    return _initiative(response, i, who)


@router.post(
    "/{initiative_id}/withdrawals/{nation}/refuse",
    operation_id="refuseWithdrawal",
    summary="Refuse a committed nation's withdrawal: it stays committed (lead nation)",
)
async def refuse_withdrawal(
    initiative_id: str,
    nation: Nation,
    uow: UnitOfWorkDep,
    response: Response,
    who: ActorDep,
    expected: IfMatch,
) -> InitiativeOut:
    i = await use_cases.decide_withdrawal(uow, who, initiative_id, expected, nation, False)
    return _initiative(response, i, who)


@router.post(
    "/{initiative_id}/close-participation",
    operation_id="closeParticipation",
    summary="Close participation (lead nation)",
)
async def close_participation(
    initiative_id: str, uow: UnitOfWorkDep, response: Response, who: ActorDep, expected: IfMatch
) -> InitiativeOut:
    i = await use_cases.close_participation(uow, who, initiative_id, expected)
    return _initiative(response, i, who)


@router.post(
    "/{initiative_id}/cancel",
    operation_id="cancelInitiative",
    summary="Cancel, with a reason, before a contract is signed (lead nation)",
)
async def cancel_initiative(
    initiative_id: str,
    body: ReasonIn,
    uow: UnitOfWorkDep,
    response: Response,
    who: ActorDep,
    expected: IfMatch,
) -> InitiativeOut:
    i = await use_cases.cancel_initiative(uow, who, initiative_id, expected, body.reason)
    return _initiative(response, i, who)


@router.post(
    "/{initiative_id}/tender",
    operation_id="publishTender",
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
    summary="Award lots to one or more suppliers (lead nation; refused, saying why, for a supplier not "
    "clear or cleared, or without verified conformance with a required standard edition)",
)
async def award(
    initiative_id: str,
    body: AwardIn,
    uow: UnitOfWorkDep,
    response: Response,
    who: ActorDep,
    expected: IfMatch,
) -> InitiativeOut:
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
    summary="Sign the contract of an award (a framework agreement or not), with delivery milestones",
)
async def sign_contract(
    initiative_id: str,
    body: ContractIn,
    uow: UnitOfWorkDep,
    response: Response,
    who: ActorDep,
    expected: IfMatch,
) -> ContractSignedOut:
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
    summary="A delivery milestone met (on a date) or missed (with a reason) (lead nation)",
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
    summary="A call-off under a framework contract: a new OCDS process linked to it (lead nation)",
)
async def place_call_off(
    initiative_id: str,
    body: CallOffIn,
    uow: UnitOfWorkDep,
    response: Response,
    who: ActorDep,
    expected: IfMatch,
) -> CallOffPlacedOut:
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
    i = await use_cases.get_initiative(db, who, initiative_id)
    found = next((c for c in i.call_offs if c.id == call_off_id), None)
    if found is None:
        raise NotFound(f"no call-off {call_off_id} in initiative {initiative_id}")
    response.headers["ETag"] = etag(i.version)
    return CallOffOut.of(found)


@router.post(
    "/{initiative_id}/start-delivery", operation_id="startDelivery", summary="Delivery started (lead nation)"
)
async def start_delivery(
    initiative_id: str, uow: UnitOfWorkDep, response: Response, who: ActorDep, expected: IfMatch
) -> InitiativeOut:
    i = await use_cases.start_delivery(uow, who, initiative_id, expected)
    return _initiative(response, i, who)


@router.post(
    "/{initiative_id}/close",
    operation_id="closeInitiative",
    summary="Close, once every milestone is met or missed (lead nation)",
)
async def close_initiative(
    initiative_id: str, uow: UnitOfWorkDep, response: Response, who: ActorDep, expected: IfMatch
) -> InitiativeOut:
    i = await use_cases.close_initiative(uow, who, initiative_id, expected)
    return _initiative(response, i, who)

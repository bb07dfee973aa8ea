"""HTTP routes of initiatives up to their tender: proposal, reads, participation, closing it, cancelling
(the tender and what follows are in `tender_routes.py`). Parse, call one use case, shape the answer.
Quantities per year are objects keyed by the year as a string (`{"2026": 120000}`), as JSON requires."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from icep.platform.app import DatabaseDep, UnitOfWorkDep
from icep.platform.auth import ActorDep
from icep.platform.domain import Actor
from icep.platform.http import IfMatch, etag, next_link
from icep.platform.openapi import CREATED_ID, from_path, links
from icep.procurement.initiatives import use_cases
from icep.procurement.initiatives.model import Initiative
from icep.procurement.initiatives.parts import (
    InitiativeStatus,
    Item,
    RequiredStandard,
)
from icep.procurement.initiatives.schemas import (
    CommitIn,
    InitiativeCreate,
    InitiativeOut,
    InitiativePage,
    JoinIn,
    ReasonIn,
)
from icep.procurement.schema_types import (
    Cursor,
    Limit,
    Nation,
    owned,
    per_year,
)

router = APIRouter(prefix="/v1/initiatives", tags=["initiatives"])


def initiative_answer(response: Response, i: Initiative, who: Actor) -> InitiativeOut:
    """The initiative as the caller may see it, with its ETag."""
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
    return initiative_answer(response, initiative, who)


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
    return initiative_answer(response, await use_cases.get_initiative(db, who, initiative_id), who)


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
    return initiative_answer(response, i, who)


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
    return initiative_answer(response, i, who)


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
    return initiative_answer(response, i, who)


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
    return initiative_answer(response, i, who)


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
    return initiative_answer(response, i, who)


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
    return initiative_answer(response, i, who)


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
    return initiative_answer(response, i, who)


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
    return initiative_answer(response, i, who)

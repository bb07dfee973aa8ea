"""HTTP routes of interchangeability: parse, call one use case, shape the answer."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from icep.platform.app import DatabaseDep, UnitOfWorkDep
from icep.platform.auth import ActorDep
from icep.platform.domain import invalid
from icep.platform.errors import PreconditionRequired
from icep.platform.http import IfMatch, etag, next_link
from icep.standards.interchangeability import use_cases
from icep.standards.interchangeability.model import Interchangeability
from icep.standards.interchangeability.schemas import (
    AnswerOut,
    ClearanceChange,
    ClearanceIn,
    ClearanceOut,
    ClearancesOut,
)
from icep.standards.records import RESPONDING_NATIONS
from icep.standards.schemas import owned_release

router = APIRouter(prefix="/v1/interchangeability", tags=["interchangeability"])


def _clearance(response: Response, c: Interchangeability) -> ClearanceOut:
    response.headers["ETag"] = etag(c.version)
    return ClearanceOut.of(c)


@router.get(
    "", operation_id="canFire", summary="Can this nation use this item on that platform, and why or why not"
)
async def can_fire(
    db: DatabaseDep,
    who: ActorDep,
    item: Annotated[str, Query(min_length=1, max_length=200)],
    platform: Annotated[str, Query(min_length=1, max_length=200)],
    nation: Annotated[
        str | None, Query(pattern=r"^[A-Z]{3}$", description="Default: the caller's nation")
    ] = None,
) -> AnswerOut:
    asked = nation or who.nation
    if asked not in RESPONDING_NATIONS:
        raise invalid("query.nation", f"{asked} is not a nation; name one with `nation`")
    found = await use_cases.can_fire(db, who, item=item.strip(), platform=platform.strip(), nation=asked)
    return AnswerOut(
        nation=found.nation,
        item=found.item,
        platform=found.platform,
        answer=found.answer,
        reasons=list(found.reasons),
        clearance_id=found.clearance_id,
    )


@router.post(
    "/clearances",
    status_code=201,
    operation_id="recordClearance",
    summary="Record an item's clearance for a platform",
)
async def record_clearance(
    body: ClearanceIn, uow: UnitOfWorkDep, response: Response, who: ActorDep
) -> ClearanceOut:
    clearance = await use_cases.record_clearance(
        uow,
        who,
        item=body.item,
        platform=body.platform,
        given=body.to_input(),
        releasability=owned_release(body.releasability, who.nation),
    )
    response.headers["Location"] = f"/v1/interchangeability/clearances/{clearance.id}"
    return _clearance(response, clearance)


@router.get("/clearances", operation_id="listClearances", summary="Clearances the caller may see")
async def list_clearances(
    request: Request,
    db: DatabaseDep,
    who: ActorDep,
    item: Annotated[str | None, Query(max_length=200)] = None,
    platform: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
) -> ClearancesOut:
    found, after = await use_cases.list_clearances(
        db, who, item=item, platform=platform, limit=limit, after=cursor
    )
    return ClearancesOut(items=[ClearanceOut.of(c) for c in found], next=next_link(request, after))


@router.get("/clearances/{clearance_id}", operation_id="getClearance", summary="One clearance")
async def get_clearance(
    clearance_id: str, db: DatabaseDep, response: Response, who: ActorDep
) -> ClearanceOut:
    return _clearance(response, await use_cases.get_clearance(db, who, clearance_id))


@router.put(
    "/clearances/{clearance_id}",
    operation_id="updateClearance",
    summary="Change a clearance's status, basis, nations or restrictions (If-Match required)",
)
async def update_clearance(
    clearance_id: str,
    body: ClearanceChange,
    uow: UnitOfWorkDep,
    response: Response,
    who: ActorDep,
    expected: IfMatch,
) -> ClearanceOut:
    if expected is None:
        raise PreconditionRequired(
            "changing a clearance needs If-Match with the ETag of the version you read"
        )
    clearance = await use_cases.update_clearance(uow, who, clearance_id, expected, body.to_input())
    return _clearance(response, clearance)

"""HTTP routes of interchangeability: parse, call one use case, shape the answer."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from icep.platform.app import DatabaseDep, UnitOfWorkDep
from icep.platform.auth import ActorDep
from icep.platform.domain import invalid
from icep.platform.errors import PreconditionRequired
from icep.platform.http import IfMatch, etag, next_link
from icep.platform.openapi import CREATED_ID, links
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


@router.get("", operation_id="canFire", summary="Can a nation use an item on a platform, and why")
async def can_fire(
    db: DatabaseDep,
    who: ActorDep,
    item: Annotated[str, Query(min_length=1, max_length=200)],
    platform: Annotated[str, Query(min_length=1, max_length=200)],
    nation: Annotated[
        str | None, Query(pattern=r"^[A-Z]{3}$", description="Default: the caller's nation")
    ] = None,
) -> AnswerOut:
    """Can this nation (default: the caller's) use this item on that platform: `yes`, `yes_with_restrictions`
    or `no`, with the reasons and the clearance that decides. The latest clearance covering the nation
    decides; one that rests on a standard edition is only as good as the nation's standing on it (a
    reservation, not ratifying, or a cancelled edition restricts it, and the reasons say so). Only clearances
    the caller may read count."""
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
    openapi_extra=links(
        "getClearance", "updateClearance", status=201, if_match=True, clearance_id=CREATED_ID
    ),
    summary="Record an item's clearance for a platform",
)
async def record_clearance(
    body: ClearanceIn, uow: UnitOfWorkDep, response: Response, who: ActorDep
) -> ClearanceOut:
    """Standards staff (role `standards`) record an item's clearance for a platform (`verified`, `restricted`
    with its restrictions, or `not_interchangeable`) on a basis (a standard edition or a trial). A nation
    records clearances for itself only; NATO staff record those agreed among several nations. Read by its
    `releasability` (default: all Allies) and always by the nations cleared. Raises
    `icep.standards.interchangeability.updated.v1`."""
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
    """The clearances the caller's nation may read, in pages, narrowed by item or platform."""
    found, after = await use_cases.list_clearances(
        db, who, item=item, platform=platform, limit=limit, after=cursor
    )
    return ClearancesOut(items=[ClearanceOut.of(c) for c in found], next=next_link(request, after))


@router.get("/clearances/{clearance_id}", operation_id="getClearance", summary="One clearance")
async def get_clearance(
    clearance_id: str, db: DatabaseDep, response: Response, who: ActorDep
) -> ClearanceOut:
    """One clearance with its `ETag`; 404 when the caller's nation may not read it."""
    return _clearance(response, await use_cases.get_clearance(db, who, clearance_id))


@router.put(
    "/clearances/{clearance_id}",
    operation_id="updateClearance",
    summary="Change a clearance",
)
async def update_clearance(
    clearance_id: str,
    body: ClearanceChange,
    uow: UnitOfWorkDep,
    response: Response,
    who: ActorDep,
    expected: IfMatch,
) -> ClearanceOut:
    """The nation (or NATO) that recorded a clearance changes its status, basis, nations or restrictions; the
    nations cleared always read it. Requires `If-Match` with the clearance's `ETag` (428 without, 412 when
    stale). Raises `icep.standards.interchangeability.updated.v1`. 403 for anyone else."""
    if expected is None:
        raise PreconditionRequired(
            "changing a clearance needs If-Match with the ETag of the version you read"
        )
    clearance = await use_cases.update_clearance(uow, who, clearance_id, expected, body.to_input())
    return _clearance(response, clearance)

"""HTTP routes of the catalogue: parse, call one use case, shape the answer. Two routers, so that the
routes under /v1/standards/{standard_id} come after the fixed paths other aggregates add there.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from icep.contracts import Releasability
from icep.contracts.nations import NATO
from icep.platform.app import DatabaseDep, UnitOfWorkDep
from icep.platform.auth import ActorDep
from icep.platform.http import IfMatch, etag, next_link
from icep.platform.openapi import CREATED_ID, from_path, links
from icep.standards.schemas import CancelIn
from icep.standards.standards import use_cases
from icep.standards.standards.model import Standard, StandardStatus
from icep.standards.standards.schemas import StandardCreate, StandardOut, StandardPage

catalogue_router = APIRouter(prefix="/v1/standards", tags=["standards"])
router = APIRouter(prefix="/v1/standards", tags=["standards"])


def _standard(response: Response, s: Standard) -> StandardOut:
    response.headers["ETag"] = etag(s.version)
    return StandardOut.of(s)


@catalogue_router.post(
    "",
    status_code=201,
    operation_id="draftStandard",
    openapi_extra=links(
        "getStandard",
        "circulateStandard",
        "cancelStandard",
        "listResponses",
        status=201,
        if_match=True,
        standard_id=CREATED_ID,
    ),
    summary="Draft a standard edition (NATO)",
)
async def draft_standard(
    body: StandardCreate, uow: UnitOfWorkDep, response: Response, who: ActorDep
) -> StandardOut:
    """NATO's standardization staff draft an edition of a standard (STANAG or AP): status `study`. Read by its
    `releasability` (default: all Allies; NATO staff always), which may add partners. Only NATO's
    standardization staff (nation `NATO`, role `standards`) may do this (403 otherwise). Raises
    `icep.standards.standard.drafted.v1`. 409 when that edition exists."""
    standard = await use_cases.draft_standard(
        uow,
        who,
        use_cases.DraftStandard(
            kind=body.kind,
            number=body.number,
            edition=body.edition,
            title=body.title,
            domain=body.domain,
            covering_publications=tuple(body.covering_publications),
            capability_areas=tuple(body.capability_areas),
            levels=tuple(body.levels),
            supersedes=body.supersedes,
            releasability=Releasability(
                owner=NATO, scope=body.releasability.scope, nations=tuple(body.releasability.nations)
            ),
        ),
    )
    response.headers["Location"] = f"/v1/standards/{standard.id}"
    return _standard(response, standard)


@catalogue_router.get("", operation_id="searchStandards", summary="Search the catalogue")
async def search_standards(
    request: Request,
    db: DatabaseDep,
    who: ActorDep,
    number: Annotated[str | None, Query(max_length=40, examples=["4569"])] = None,
    q: Annotated[
        str | None, Query(max_length=200, description="Text in the title, reference or publications")
    ] = None,
    capability_area: Annotated[str | None, Query(max_length=100)] = None,
    status: StandardStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
) -> StandardPage:
    """The catalogue of editions the caller's nation may read, in pages: by number, text in the title,
    reference or publications, capability area or status."""
    found, after = await use_cases.search_standards(
        db,
        who,
        number=number,
        text=q,
        capability_area=capability_area,
        status=status,
        limit=limit,
        after=cursor,
    )
    return StandardPage(items=[StandardOut.of(s) for s in found], next=next_link(request, after))


@router.get(
    "/{standard_id}",
    operation_id="getStandard",
    openapi_extra=links(
        "circulateStandard",
        "promulgateStandard",
        "cancelStandard",
        "listResponses",
        if_match=True,
        standard_id=from_path("standard_id"),
    ),
    summary="One standard edition",
)
async def get_standard(standard_id: str, db: DatabaseDep, response: Response, who: ActorDep) -> StandardOut:
    """One edition with its `ETag`; 404 when the caller's nation may not read it."""
    return _standard(response, await use_cases.get_standard(db, who, standard_id))


@router.post(
    "/{standard_id}/circulate",
    operation_id="circulateStandard",
    openapi_extra=links(
        "getStandard",
        "promulgateStandard",
        "cancelStandard",
        "listResponses",
        if_match=True,
        standard_id=from_path("standard_id"),
    ),
    summary="Circulate a study for ratification",
)
async def circulate_standard(
    standard_id: str, uow: UnitOfWorkDep, response: Response, who: ActorDep, expected: IfMatch
) -> StandardOut:
    """Circulate a study to nations for ratification: `study` -> `ratification_draft`; nations may now ratify,
    decline and reserve. Only NATO's standardization staff (nation `NATO`, role `standards`) may do this (403
    otherwise). Requires `If-Match` with the edition's `ETag` (428 without, 412 when stale). Raises
    `icep.standards.standard.circulated.v1`."""
    return _standard(response, await use_cases.circulate_standard(uow, who, standard_id, expected))


@router.post(
    "/{standard_id}/promulgate",
    operation_id="promulgateStandard",
    openapi_extra=links(
        "getStandard", "listResponses", "cancelStandard", if_match=True, standard_id=from_path("standard_id")
    ),
    summary="Promulgate an edition",
)
async def promulgate_standard(
    standard_id: str, uow: UnitOfWorkDep, response: Response, who: ActorDep, expected: IfMatch
) -> StandardOut:
    """Promulgate a ratification draft: -> `promulgated` (in force). The edition it supersedes, if in force,
    becomes `superseded` (`icep.standards.standard.superseded.v1`; initiatives requiring it are flagged). Only
    NATO's standardization staff (nation `NATO`, role `standards`) may do this (403 otherwise). Requires
    `If-Match` with the edition's `ETag` (428 without, 412 when stale). Raises
    `icep.standards.standard.promulgated.v1`."""
    return _standard(response, await use_cases.promulgate_standard(uow, who, standard_id, expected))


@router.post("/{standard_id}/cancel", operation_id="cancelStandard", summary="Cancel an edition")
async def cancel_standard(
    standard_id: str, body: CancelIn, uow: UnitOfWorkDep, response: Response, who: ActorDep, expected: IfMatch
) -> StandardOut:
    """Cancel an edition (study, ratification draft or promulgated), with a reason: -> `cancelled`;
    interoperability on it becomes `not_interoperable` and initiatives requiring it are flagged. Only NATO's
    standardization staff (nation `NATO`, role `standards`) may do this (403 otherwise). Requires `If-Match`
    with the edition's `ETag` (428 without, 412 when stale). Raises `icep.standards.standard.cancelled.v1`."""
    standard = await use_cases.cancel_standard(uow, who, standard_id, expected, body.reason)
    return _standard(response, standard)

"""HTTP routes of national answers: parse, call one use case, shape the answer."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response

from icep.platform.app import DatabaseDep, UnitOfWorkDep
from icep.platform.auth import ActorDep
from icep.platform.http import IfMatch, etag
from icep.platform.openapi import from_body, from_path, links, merge_links
from icep.standards.answers import use_cases
from icep.standards.answers.schemas import (
    CLAUSE,
    ForecastIn,
    ImplementedIn,
    RatifyIn,
    ReservationIn,
    ResponseOut,
    ResponsesOut,
)
from icep.standards.answers.use_cases import ResponseView

router = APIRouter(prefix="/v1/standards", tags=["standards"])
Nation = Annotated[str, Path(pattern=r"^[A-Z]{3}$", description="ISO 3166-1 alpha-3 of the answering nation")]


def _response(response: Response, view: ResponseView) -> ResponseOut:
    response.headers["ETag"] = etag(view.response.version)
    return ResponseOut.of(view)


@router.get(
    "/{standard_id}/responses",
    operation_id="listResponses",
    openapi_extra=links(
        "getResponse",
        standard_id=from_path("standard_id"),
        nation=from_body("items/0/nation"),
    ),
    summary="Every nation's answer",
)
async def list_responses(standard_id: str, db: DatabaseDep, who: ActorDep) -> ResponsesOut:
    """Every responding nation's answer to the edition the caller may read (a nation that has not answered
    shows as `pending`). Each answer is the answering nation's own record, read by whoever reads the edition.
    404 when the caller may not read the edition."""
    views = await use_cases.list_responses(db, who, standard_id)
    return ResponsesOut(items=[ResponseOut.of(v) for v in views])


@router.get(
    "/{standard_id}/responses/{nation}",
    operation_id="getResponse",
    openapi_extra=links(
        "ratifyStandard",
        "declineStandard",
        "recordReservation",
        "forecastImplementation",
        "recordImplementation",
        if_match=True,
        standard_id=from_path("standard_id"),
        nation=from_path("nation"),
    ),
    summary="One nation's answer, with history",
)
async def get_response(
    standard_id: str, nation: Nation, db: DatabaseDep, response: Response, who: ActorDep
) -> ResponseOut:
    """One nation's answer to the edition, with its reservations, implementation forecast and date, its
    history and its `ETag`. An answer has no id of its own: the edition's id and the nation name it (its
    events have the subject `<standard_id>:<nation>`). 404 when the caller may not read the edition; 422 for a
    nation that does not answer NATO standards or to which the edition is not released."""
    return _response(response, await use_cases.get_response(db, who, standard_id, nation))


@router.post(
    "/{standard_id}/responses/{nation}/ratify",
    operation_id="ratifyStandard",
    openapi_extra=links(
        "getResponse",
        "declineStandard",
        "recordReservation",
        "forecastImplementation",
        "recordImplementation",
        if_match=True,
        standard_id=from_path("standard_id"),
        nation=from_path("nation"),
    ),
    summary="Ratify an edition, with reservations if any",
)
async def ratify(
    standard_id: str,
    nation: Nation,
    uow: UnitOfWorkDep,
    response: Response,
    who: ActorDep,
    expected: IfMatch,
    body: RatifyIn | None = None,
) -> ResponseOut:
    """The nation ratifies the edition (ratification draft or promulgated), with reservations if any:
    `pending` or `not_ratifying` -> `ratified` or `ratified_with_reservations`. The nation's own standards
    staff (role `standards`) answer for it; NATO's standards staff may record it too (the ratification record
    of a promulgation). Requires `If-Match` with the answer's `ETag` (428 without, 412 when stale). Raises
    `icep.standards.response.ratified.v1`. The event's subject is `<standard_id>:<nation>` and it is marked
    for the edition's readers. 403 for another nation's staff; 409 when the edition or the answer is in
    another state."""
    reservations = [r.to_domain() for r in body.reservations] if body else []
    view = await use_cases.ratify(uow, who, standard_id, nation, expected, reservations)
    return _response(response, view)


@router.post(
    "/{standard_id}/responses/{nation}/decline",
    operation_id="declineStandard",
    openapi_extra=links(
        "getResponse",
        "ratifyStandard",
        if_match=True,
        standard_id=from_path("standard_id"),
        nation=from_path("nation"),
    ),
    summary="Decline to ratify an edition",
)
async def decline(
    standard_id: str, nation: Nation, uow: UnitOfWorkDep, response: Response, who: ActorDep, expected: IfMatch
) -> ResponseOut:
    """The nation does not ratify (or no longer): -> `not_ratifying`; its reservations and implementation no
    longer apply. The nation's own standards staff (role `standards`) answer for it; NATO's standards staff
    may record it too (the ratification record of a promulgation). Requires `If-Match` with the answer's
    `ETag` (428 without, 412 when stale). Raises `icep.standards.response.recorded.v1`. The event's subject is
    `<standard_id>:<nation>` and it is marked for the edition's readers. 409 when the edition is not a
    ratification draft or promulgated, or the nation already declined."""
    return _response(response, await use_cases.decline(uow, who, standard_id, nation, expected))


@router.post(
    "/{standard_id}/responses/{nation}/reservations",
    operation_id="recordReservation",
    openapi_extra=merge_links(
        links(
            "getResponse",
            "recordImplementation",
            if_match=True,
            standard_id=from_path("standard_id"),
            nation=from_path("nation"),
        ),
        links(
            "withdrawReservation",
            if_match=True,
            standard_id=from_path("standard_id"),
            nation=from_path("nation"),
            clause=from_body("reservations/0/clause"),
        ),
    ),
    summary="Add or replace a reservation on a clause",
)
async def record_reservation(
    standard_id: str,
    nation: Nation,
    body: ReservationIn,
    uow: UnitOfWorkDep,
    response: Response,
    who: ActorDep,
    expected: IfMatch,
) -> ResponseOut:
    """A ratifying nation adds a reservation on a clause (or replaces the one on the same clause): ->
    `ratified_with_reservations`. A reservation limits interoperability (`limited` at best, see `GET
    /v1/interoperability`). The nation's own standards staff (role `standards`) answer for it; NATO's
    standards staff may record it too (the ratification record of a promulgation). Requires `If-Match` with
    the answer's `ETag` (428 without, 412 when stale). Raises
    `icep.standards.response.reservation_recorded.v1`. The event's subject is `<standard_id>:<nation>` and it
    is marked for the edition's readers. 409 when the nation has not ratified."""
    view = await use_cases.record_reservation(uow, who, standard_id, nation, expected, body.to_domain())
    return _response(response, view)


@router.delete(
    "/{standard_id}/responses/{nation}/reservations/{clause}",
    operation_id="withdrawReservation",
    summary="Withdraw the reservation on a clause",
)
async def withdraw_reservation(
    standard_id: str,
    nation: Nation,
    clause: Annotated[str, Path(pattern=CLAUSE)],
    uow: UnitOfWorkDep,
    response: Response,
    who: ActorDep,
    expected: IfMatch,
) -> ResponseOut:
    """The nation withdraws its reservation on a clause; with none left the answer is `ratified`. The nation's
    own standards staff (role `standards`) answer for it; NATO's standards staff may record it too (the
    ratification record of a promulgation). Requires `If-Match` with the answer's `ETag` (428 without, 412
    when stale). Raises `icep.standards.response.reservation_withdrawn.v1`. The event's subject is
    `<standard_id>:<nation>` and it is marked for the edition's readers. 404 when there is no reservation on
    that clause."""
    view = await use_cases.withdraw_reservation(uow, who, standard_id, nation, expected, clause)
    return _response(response, view)


@router.post(
    "/{standard_id}/responses/{nation}/implementation-forecast",
    operation_id="forecastImplementation",
    openapi_extra=links(
        "getResponse",
        "recordImplementation",
        if_match=True,
        standard_id=from_path("standard_id"),
        nation=from_path("nation"),
    ),
    summary="Forecast when the nation implements",
)
async def forecast_implementation(
    standard_id: str,
    nation: Nation,
    body: ForecastIn,
    uow: UnitOfWorkDep,
    response: Response,
    who: ActorDep,
    expected: IfMatch,
) -> ResponseOut:
    """A ratifying nation states when it expects to implement the edition; a forecast date that passes without
    an implementation shows as overdue in `GET /v1/standards/progress`. Only the nation's own standards staff
    (not NATO). Requires `If-Match` with the answer's `ETag` (428 without, 412 when stale). Raises
    `icep.standards.response.implementation_forecast.v1`. The event's subject is `<standard_id>:<nation>` and
    it is marked for the edition's readers. 409 when the nation has not ratified or already implemented."""
    view = await use_cases.forecast_implementation(
        uow, who, standard_id, nation, expected, body.implementation_forecast
    )
    return _response(response, view)


@router.post(
    "/{standard_id}/responses/{nation}/implementation",
    operation_id="recordImplementation",
    summary="Record the date the nation implemented",
)
async def record_implementation(
    standard_id: str,
    nation: Nation,
    body: ImplementedIn,
    uow: UnitOfWorkDep,
    response: Response,
    who: ActorDep,
    expected: IfMatch,
) -> ResponseOut:
    """A ratifying nation records the date it actually implemented a promulgated edition (not in the future,
    not before promulgation): its own statement, so only its own standards staff (not NATO). Until both
    nations of a pair implemented, their verdict is `not_implemented` at best. Requires `If-Match` with the
    answer's `ETag` (428 without, 412 when stale). Raises `icep.standards.response.implemented.v1`. The
    event's subject is `<standard_id>:<nation>` and it is marked for the edition's readers. 409 when the
    edition is not promulgated or the nation has not ratified."""
    view = await use_cases.record_implementation(uow, who, standard_id, nation, expected, body.implemented_on)
    return _response(response, view)

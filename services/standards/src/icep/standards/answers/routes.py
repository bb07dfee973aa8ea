"""HTTP routes of national answers: parse, call one use case, shape the answer."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response

from icep.platform.app import DatabaseDep, UnitOfWorkDep
from icep.platform.auth import ActorDep
from icep.platform.http import IfMatch, etag
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


@router.get("/{standard_id}/responses", operation_id="listResponses", summary="Every nation's answer")
async def list_responses(standard_id: str, db: DatabaseDep, who: ActorDep) -> ResponsesOut:
    views = await use_cases.list_responses(db, who, standard_id)
    return ResponsesOut(items=[ResponseOut.of(v) for v in views])


@router.get(
    "/{standard_id}/responses/{nation}",
    operation_id="getResponse",
    summary="One nation's answer, with history",
)
async def get_response(
    standard_id: str, nation: Nation, db: DatabaseDep, response: Response, who: ActorDep
) -> ResponseOut:
    return _response(response, await use_cases.get_response(db, who, standard_id, nation))


@router.post(
    "/{standard_id}/responses/{nation}/ratify",
    operation_id="ratifyStandard",
    summary="Ratify, with reservations if any (the nation's standards staff, or NATO for the record)",
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
    reservations = [r.to_domain() for r in body.reservations] if body else []
    view = await use_cases.ratify(uow, who, standard_id, nation, expected, reservations)
    return _response(response, view)


@router.post(
    "/{standard_id}/responses/{nation}/decline", operation_id="declineStandard", summary="Not ratifying"
)
async def decline(
    standard_id: str, nation: Nation, uow: UnitOfWorkDep, response: Response, who: ActorDep, expected: IfMatch
) -> ResponseOut:
    return _response(response, await use_cases.decline(uow, who, standard_id, nation, expected))


@router.post(
    "/{standard_id}/responses/{nation}/reservations",
    operation_id="recordReservation",
    summary="Add a reservation (or replace the one on the same clause)",
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
    view = await use_cases.withdraw_reservation(uow, who, standard_id, nation, expected, clause)
    return _response(response, view)


@router.post(
    "/{standard_id}/responses/{nation}/implementation-forecast",
    operation_id="forecastImplementation",
    summary="When the nation expects to implement",
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
    view = await use_cases.forecast_implementation(
        uow, who, standard_id, nation, expected, body.implementation_forecast
    )
    return _response(response, view)


@router.post(
    "/{standard_id}/responses/{nation}/implementation",
    operation_id="recordImplementation",
    summary="The date the nation actually implemented (its own statement)",
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
    view = await use_cases.record_implementation(uow, who, standard_id, nation, expected, body.implemented_on)
    return _response(response, view)

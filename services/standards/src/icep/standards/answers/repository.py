"""National answers in the database: rows <-> `NationalResponse`."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from icep.standards.answers.model import (
    NationalResponse,
    Reservation,
    ReservationKind,
    ResponseStatus,
)
from icep.standards.answers.rows import ResponseRow
from icep.standards.records import history_json, history_of


def reservation_json(r: Reservation) -> dict[str, str]:
    return {"clause": r.clause, "kind": r.kind.value, "detail": r.detail}


def to_response(row: ResponseRow) -> NationalResponse:
    return NationalResponse(
        standard_id=row.standard_id,
        nation=row.nation,
        status=ResponseStatus(row.status),
        reservations=tuple(
            Reservation(r["clause"], ReservationKind(r["kind"]), r["detail"]) for r in row.reservations
        ),
        implementation_forecast=row.implementation_forecast,
        implemented_on=row.implemented_on,
        version=row.version,
        history=history_of(row.history),
    )


def store_response(row: ResponseRow, r: NationalResponse) -> None:
    row.status = r.status.value
    row.reservations = [reservation_json(x) for x in r.reservations]
    row.implementation_forecast = r.implementation_forecast
    row.implemented_on = r.implemented_on
    row.version = r.version
    row.history = history_json(r.history)


async def responses_to(session: AsyncSession, standard_ids: Sequence[str]) -> list[NationalResponse]:
    if not standard_ids:
        return []
    rows = (
        await session.execute(select(ResponseRow).where(col(ResponseRow.standard_id).in_(standard_ids)))
    ).scalars()
    return [to_response(r) for r in rows]

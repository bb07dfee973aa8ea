"""National answers in the database: rows <-> `NationalResponse`, and the repository a change loads and
saves them through."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from icep.contracts.releasability import encode_tokens
from icep.platform.domain import check_version
from icep.platform.outbox import UnitOfWork
from icep.standards.answers.model import (
    NationalResponse,
    Reservation,
    ReservationKind,
    ResponseStatus,
)
from icep.standards.answers.rows import ResponseRow
from icep.standards.records import history_json, history_of, readers
from icep.standards.standards.model import Standard


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


async def find_response(session: AsyncSession, standard_id: str, nation: str) -> NationalResponse | None:
    """The nation's recorded answer, or None while it is pending."""
    row = await session.get(ResponseRow, (standard_id, nation))
    return None if row is None else to_response(row)


class AnswerRepository:
    """National answers for a change, in one unit of work. An answer not recorded yet is pending: its row
    is added when it is first saved, readable by whoever may read the edition."""

    def __init__(self, tx: UnitOfWork) -> None:
        self.tx = tx
        self.session = tx.session
        self._loaded: dict[tuple[str, str], tuple[ResponseRow | None, Standard]] = {}

    async def get_for_update(
        self, standard: Standard, nation: str, expected_version: int | None
    ) -> NationalResponse:
        row = (
            await self.session.execute(
                select(ResponseRow)
                .where(col(ResponseRow.standard_id) == standard.id, col(ResponseRow.nation) == nation)
                .with_for_update()
            )
        ).scalar_one_or_none()
        answer = NationalResponse.pending(standard, nation) if row is None else to_response(row)
        check_version("response", answer.version, expected_version)
        self._loaded[(standard.id, nation)] = (row, standard)
        return answer

    async def save(self, answer: NationalResponse) -> None:
        row, standard = self._loaded[(answer.standard_id, answer.nation)]
        if row is None:
            row = ResponseRow(
                standard_id=answer.standard_id,
                nation=answer.nation,
                status=answer.status.value,
                version=answer.version,
                readers=encode_tokens(readers(NationalResponse.releasability_for(standard, answer.nation))),
            )
            self.session.add(row)
            self._loaded[(answer.standard_id, answer.nation)] = (row, standard)
        store_response(row, answer)
        self.tx.collect(answer)

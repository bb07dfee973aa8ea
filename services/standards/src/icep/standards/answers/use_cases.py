"""Use cases of national answers: read them, and record a ratification, a refusal, reservations, a
forecast or an implementation, each in one unit of work with its event.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import select
from sqlmodel import col

from icep.contracts import EventPayload, Releasability
from icep.contracts.releasability import encode_tokens
from icep.contracts.standards import (
    ImplementationForecast,
    ReservationFigure,
    ReservationRecorded,
    ReservationWithdrawn,
    ResponseImplemented,
    ResponseRatified,
    ResponseRecorded,
)
from icep.platform import audit
from icep.platform.db import Database
from icep.platform.domain import Actor, check_version
from icep.platform.events import OutgoingEvent, utcnow
from icep.platform.outbox import UnitOfWork, UnitOfWorkFactory
from icep.standards.answers.model import (
    NationalResponse,
    Reservation,
)
from icep.standards.answers.repository import responses_to, store_response, to_response
from icep.standards.answers.rows import ResponseRow
from icep.standards.records import readers
from icep.standards.standards.model import Standard
from icep.standards.standards.repository import (
    standard_row,
    to_standard,
)

log = logging.getLogger("icep.standards")


def _publish(tx: UnitOfWork, subject: str, release: Releasability, payload: EventPayload) -> None:
    tx.publish(OutgoingEvent(payload=payload, subject=subject, releasability=release))


def _reservation_figure(r: Reservation) -> ReservationFigure:
    return ReservationFigure(clause=r.clause, kind=r.kind.value, detail=r.detail)


@dataclass(frozen=True)
class ResponseView:
    standard: Standard
    response: NationalResponse


async def list_responses(db: Database, actor: Actor, standard_id: str) -> list[ResponseView]:
    """Every nation's recorded answer to one edition (nations not listed are pending)."""
    async with db.sessions() as session:
        standard = to_standard(await standard_row(session, actor, standard_id, lock=False))
        responses = await responses_to(session, [standard.id])
    return [ResponseView(standard, r) for r in sorted(responses, key=lambda r: r.nation)]


async def get_response(db: Database, actor: Actor, standard_id: str, nation: str) -> ResponseView:
    async with db.sessions() as session:
        standard = to_standard(await standard_row(session, actor, standard_id, lock=False))
        row = await session.get(ResponseRow, (standard_id, nation))
    if row is None:
        return ResponseView(standard, NationalResponse.pending(standard, nation))
    audit.read("national_response", f"{standard_id}/{nation}", nation)
    return ResponseView(standard, to_response(row))


ResponseChange = Callable[[NationalResponse, Standard, datetime], NationalResponse]
ResponseAnnounce = Callable[[NationalResponse, dict[str, Any]], EventPayload]


async def _change_response(
    uow: UnitOfWorkFactory,
    actor: Actor,
    standard_id: str,
    nation: str,
    expected: int | None,
    change: ResponseChange,
    announce: ResponseAnnounce,
) -> ResponseView:
    async with uow() as tx:
        audit.subject("national_response", f"{standard_id}/{nation}", nation)
        standard = to_standard(await standard_row(tx.session, actor, standard_id, lock=False, share=True))
        row = (
            await tx.session.execute(
                select(ResponseRow)
                .where(col(ResponseRow.standard_id) == standard_id, col(ResponseRow.nation) == nation)
                .with_for_update()
            )
        ).scalar_one_or_none()
        current = NationalResponse.pending(standard, nation) if row is None else to_response(row)
        check_version("response", current.version, expected)
        now = utcnow()
        changed = change(current, standard, now)
        if row is None:
            row = ResponseRow(
                standard_id=standard_id,
                nation=nation,
                status=changed.status.value,
                version=changed.version,
                readers=encode_tokens(readers(NationalResponse.releasability_for(standard, nation))),
            )
            tx.session.add(row)
        store_response(row, changed)
        fields = {
            "standard_id": standard.id,
            "standard_reference": standard.reference,
            "nation": nation,
            "status": changed.status.value,
            "version": changed.version,
            "recorded_by": actor.id,
            "recorded_by_nation": actor.nation,
            "recorded_at": now,
        }
        _publish(
            tx,
            f"{standard.id}:{nation}",
            NationalResponse.releasability_for(standard, nation),
            announce(changed, fields),
        )
    log.info("%s answered %s: %s (by %s)", nation, standard.reference, changed.status.value, actor.id)
    return ResponseView(standard, changed)


async def ratify(
    uow: UnitOfWorkFactory,
    actor: Actor,
    standard_id: str,
    nation: str,
    expected: int | None,
    reservations: Sequence[Reservation],
) -> ResponseView:
    return await _change_response(
        uow,
        actor,
        standard_id,
        nation,
        expected,
        lambda r, s, now: r.ratify(actor, s, now, reservations),
        lambda r, f: ResponseRatified(**f, reservations=[_reservation_figure(x) for x in r.reservations]),
    )


async def decline(
    uow: UnitOfWorkFactory, actor: Actor, standard_id: str, nation: str, expected: int | None
) -> ResponseView:
    return await _change_response(
        uow,
        actor,
        standard_id,
        nation,
        expected,
        lambda r, s, now: r.decline(actor, s, now),
        lambda r, f: ResponseRecorded(**f),
    )


async def record_reservation(
    uow: UnitOfWorkFactory,
    actor: Actor,
    standard_id: str,
    nation: str,
    expected: int | None,
    reservation: Reservation,
) -> ResponseView:
    return await _change_response(
        uow,
        actor,
        standard_id,
        nation,
        expected,
        lambda r, s, now: r.record_reservation(actor, s, reservation, now),
        lambda r, f: ReservationRecorded(**f, reservation=_reservation_figure(reservation)),
    )


async def withdraw_reservation(
    uow: UnitOfWorkFactory, actor: Actor, standard_id: str, nation: str, expected: int | None, clause: str
) -> ResponseView:
    return await _change_response(
        uow,
        actor,
        standard_id,
        nation,
        expected,
        lambda r, s, now: r.withdraw_reservation(actor, s, clause, now),
        lambda r, f: ReservationWithdrawn(**f, clause=clause),
    )


async def forecast_implementation(
    uow: UnitOfWorkFactory, actor: Actor, standard_id: str, nation: str, expected: int | None, by: date
) -> ResponseView:
    return await _change_response(
        uow,
        actor,
        standard_id,
        nation,
        expected,
        lambda r, s, now: r.forecast_implementation(actor, s, by, now),
        lambda r, f: ImplementationForecast(**f, implementation_forecast=by),
    )


async def record_implementation(
    uow: UnitOfWorkFactory, actor: Actor, standard_id: str, nation: str, expected: int | None, on: date
) -> ResponseView:
    return await _change_response(
        uow,
        actor,
        standard_id,
        nation,
        expected,
        lambda r, s, now: r.record_implementation(actor, s, on, now),
        lambda r, f: ResponseImplemented(**f, implemented_on=on),
    )

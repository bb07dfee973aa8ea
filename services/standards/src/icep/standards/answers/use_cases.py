"""Use cases of national answers: read them, and record a ratification, a refusal, reservations, a
forecast or an implementation, each in one unit of work with its event.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from icep.platform import audit
from icep.platform.db import Database
from icep.platform.domain import Actor
from icep.platform.events import utcnow
from icep.platform.outbox import UnitOfWorkFactory
from icep.standards.answers.model import NationalResponse, Reservation
from icep.standards.answers.repository import AnswerRepository, find_response, responses_to
from icep.standards.standards.model import Standard
from icep.standards.standards.repository import StandardRepository, standard_row, to_standard

log = logging.getLogger("icep.standards")


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
        answer = await find_response(session, standard_id, nation)
    if answer is None:
        return ResponseView(standard, NationalResponse.pending(standard, nation))
    audit.read("national_response", f"{standard_id}/{nation}", nation)
    return ResponseView(standard, answer)


def _logged(view: ResponseView, actor: Actor) -> ResponseView:
    log.info(
        "%s answered %s: %s (by %s)",
        view.response.nation,
        view.standard.reference,
        view.response.status.value,
        actor.id,
    )
    return view


async def ratify(
    uow: UnitOfWorkFactory,
    actor: Actor,
    standard_id: str,
    nation: str,
    expected: int | None,
    reservations: Sequence[Reservation],
) -> ResponseView:
    async with uow() as tx:
        audit.subject("national_response", f"{standard_id}/{nation}", nation)
        # Held (shared) until the commit: the answer depends on the edition's state.
        standard = await StandardRepository(tx).get(actor, standard_id, share=True)
        answers = AnswerRepository(tx)
        answer = await answers.get_for_update(standard, nation, expected)
        answer = answer.ratify(actor, standard, utcnow(), reservations)
        await answers.save(answer)
    return _logged(ResponseView(standard, answer), actor)


async def decline(
    uow: UnitOfWorkFactory,
    actor: Actor,
    standard_id: str,
    nation: str,
    expected: int | None,
) -> ResponseView:
    async with uow() as tx:
        audit.subject("national_response", f"{standard_id}/{nation}", nation)
        standard = await StandardRepository(tx).get(actor, standard_id, share=True)
        answers = AnswerRepository(tx)
        answer = await answers.get_for_update(standard, nation, expected)
        answer = answer.decline(actor, standard, utcnow())
        await answers.save(answer)
    return _logged(ResponseView(standard, answer), actor)


async def record_reservation(
    uow: UnitOfWorkFactory,
    actor: Actor,
    standard_id: str,
    nation: str,
    expected: int | None,
    reservation: Reservation,
) -> ResponseView:
    async with uow() as tx:
        audit.subject("national_response", f"{standard_id}/{nation}", nation)
        standard = await StandardRepository(tx).get(actor, standard_id, share=True)
        answers = AnswerRepository(tx)
        answer = await answers.get_for_update(standard, nation, expected)
        answer = answer.record_reservation(actor, standard, reservation, utcnow())
        await answers.save(answer)
    return _logged(ResponseView(standard, answer), actor)


async def withdraw_reservation(
    uow: UnitOfWorkFactory,
    actor: Actor,
    standard_id: str,
    nation: str,
    expected: int | None,
    clause: str,
) -> ResponseView:
    async with uow() as tx:
        audit.subject("national_response", f"{standard_id}/{nation}", nation)
        standard = await StandardRepository(tx).get(actor, standard_id, share=True)
        answers = AnswerRepository(tx)
        answer = await answers.get_for_update(standard, nation, expected)
        answer = answer.withdraw_reservation(actor, standard, clause, utcnow())
        await answers.save(answer)
    return _logged(ResponseView(standard, answer), actor)


async def forecast_implementation(
    uow: UnitOfWorkFactory,
    actor: Actor,
    standard_id: str,
    nation: str,
    expected: int | None,
    by: date,
) -> ResponseView:
    async with uow() as tx:
        audit.subject("national_response", f"{standard_id}/{nation}", nation)
        standard = await StandardRepository(tx).get(actor, standard_id, share=True)
        answers = AnswerRepository(tx)
        answer = await answers.get_for_update(standard, nation, expected)
        answer = answer.forecast_implementation(actor, standard, by, utcnow())
        await answers.save(answer)
    return _logged(ResponseView(standard, answer), actor)


async def record_implementation(
    uow: UnitOfWorkFactory,
    actor: Actor,
    standard_id: str,
    nation: str,
    expected: int | None,
    on: date,
) -> ResponseView:
    async with uow() as tx:
        audit.subject("national_response", f"{standard_id}/{nation}", nation)
        standard = await StandardRepository(tx).get(actor, standard_id, share=True)
        answers = AnswerRepository(tx)
        answer = await answers.get_for_update(standard, nation, expected)
        answer = answer.record_implementation(actor, standard, on, utcnow())
        await answers.save(answer)
    return _logged(ResponseView(standard, answer), actor)

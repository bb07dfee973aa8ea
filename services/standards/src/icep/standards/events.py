"""The standards service's one mapper: what its aggregates record (domain events) -> the `icep.contracts`
payloads it publishes, with their subject and releasability (the record's own, so who may read a record
and who receives its events are one set).

Subjects: a standard's, claim's or clearance's id; `<standard_id>:<nation>` for a nation's answer.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from icep.contracts import EventPayload
from icep.contracts import standards as contracts
from icep.platform.domain import Aggregate, DomainEvent
from icep.platform.events import OutgoingEvent
from icep.standards.answers import model as answers
from icep.standards.conformance import model as conformance
from icep.standards.interchangeability import model as interchangeability
from icep.standards.standards import model as standards


def standards_events(aggregate: Aggregate, event: DomainEvent) -> Iterable[OutgoingEvent]:
    match aggregate:
        case standards.Standard():
            payload = _standard_payload(aggregate, event)
            return [
                OutgoingEvent(payload=payload, subject=aggregate.id, releasability=aggregate.releasability)
            ]
        case answers.NationalResponse():
            if not isinstance(event, answers.AnswerEvent):
                raise _unmapped(event)
            return [
                OutgoingEvent(
                    payload=_answer_payload(aggregate, event),
                    subject=f"{event.standard.id}:{aggregate.nation}",
                    releasability=answers.NationalResponse.releasability_for(
                        event.standard, aggregate.nation
                    ),
                )
            ]
        case conformance.ConformanceClaim():
            payload = _claim_payload(aggregate, event)
            return [OutgoingEvent(payload=payload, subject=aggregate.id, releasability=aggregate.release)]
        case interchangeability.Interchangeability():
            payload = _clearance_payload(aggregate, event)
            return [OutgoingEvent(payload=payload, subject=aggregate.id, releasability=aggregate.release)]
    raise TypeError(f"the standards service publishes nothing for {type(aggregate).__name__}")


def _unmapped(event: DomainEvent) -> TypeError:
    return TypeError(f"{type(event).__name__} has no published event")


# --- standard -------------------------------------------------------------------------------------------


def _standard_payload(s: standards.Standard, event: DomainEvent) -> EventPayload:
    fields: dict[str, Any] = {
        "standard_id": s.id,
        "kind": s.kind.value,
        "number": s.number,
        "edition": s.edition,
        "title": s.title,
        "version": s.version,
    }
    match event:
        case standards.StandardDrafted():
            return contracts.StandardDrafted(
                **fields,
                covering_publications=list(s.covering_publications),
                domain=s.domain,
                capability_areas=list(s.capability_areas),
                levels=list(s.levels),
                supersedes=s.supersedes,
                drafted_by=event.by,
                drafted_at=event.at,
            )
        case standards.StandardCirculated():
            return contracts.StandardCirculated(**fields, circulated_by=event.by, circulated_at=event.at)
        case standards.StandardPromulgated():
            return contracts.StandardPromulgated(
                **fields,
                promulgated_by=event.by,
                promulgated_at=event.at,
                promulgated_on=s.promulgated_on or event.at.date(),
                supersedes=s.supersedes,
            )
        case standards.StandardSuperseded():
            return contracts.StandardSuperseded(
                **fields, superseded_by=event.superseded_by, superseded_at=event.at
            )
        case standards.StandardCancelled():
            return contracts.StandardCancelled(
                **fields, reason=event.reason, cancelled_by=event.by, cancelled_at=event.at
            )
    raise _unmapped(event)


# --- national answers -----------------------------------------------------------------------------------


def _reservation(r: answers.Reservation) -> contracts.ReservationFigure:
    return contracts.ReservationFigure(clause=r.clause, kind=r.kind.value, detail=r.detail)


def _answer_payload(r: answers.NationalResponse, event: answers.AnswerEvent) -> EventPayload:
    fields: dict[str, Any] = {
        "standard_id": event.standard.id,
        "standard_reference": event.standard.reference,
        "nation": r.nation,
        "status": r.status.value,
        "version": r.version,
        "recorded_by": event.by,
        "recorded_by_nation": event.by_nation,
        "recorded_at": event.at,
    }
    match event:
        case answers.Ratified():
            return contracts.ResponseRatified(
                **fields, reservations=[_reservation(x) for x in r.reservations]
            )
        case answers.Declined():
            return contracts.ResponseRecorded(**fields)
        case answers.ReservationRecorded():
            return contracts.ReservationRecorded(**fields, reservation=_reservation(event.reservation))
        case answers.ReservationWithdrawn():
            return contracts.ReservationWithdrawn(**fields, clause=event.clause)
        case answers.ImplementationForecast():
            return contracts.ImplementationForecast(**fields, implementation_forecast=event.forecast)
        case answers.Implemented():
            return contracts.ResponseImplemented(**fields, implemented_on=event.on)
    raise _unmapped(event)


# --- conformance ----------------------------------------------------------------------------------------


def _claim_payload(c: conformance.ConformanceClaim, event: DomainEvent) -> EventPayload:
    fields: dict[str, Any] = {
        "claim_id": c.id,
        "nation": c.nation,
        "manufacturer": c.product.manufacturer,
        "product_code": c.product.product_code,
        "product_name": c.product.name,
        "standard_id": c.standard_id,
        # A claim whose edition is no longer in the catalogue cites it by id.
        "standard_reference": c.standard_reference or c.standard_id,
        "level": c.level,
        "version": c.version,
    }
    match event:
        case conformance.Claimed():
            return contracts.ConformanceClaimed(
                **fields, evidence=list(c.evidence), claimed_by=event.by, claimed_at=event.at
            )
        case conformance.TestingStarted():
            return contracts.ConformanceTestStarted(
                **fields, evidence=list(c.evidence), started_by=event.by, started_at=event.at
            )
        case conformance.Verified():
            return contracts.ConformanceVerified(
                **fields,
                evidence=list(c.evidence),
                expires_on=event.expires_on,
                verified_by=event.by,
                verified_at=event.at,
            )
        case conformance.Rejected():
            return contracts.ConformanceRejected(
                **fields, reason=event.reason, rejected_by=event.by, rejected_at=event.at
            )
        case conformance.Expired():
            return contracts.ConformanceExpired(
                **fields, expires_on=c.expires_on or event.at.date(), expired_at=event.at
            )
    raise _unmapped(event)


# --- interchangeability ---------------------------------------------------------------------------------


def _clearance_payload(c: interchangeability.Interchangeability, event: DomainEvent) -> EventPayload:
    match event:
        case interchangeability.ClearanceRecorded() | interchangeability.ClearanceUpdated():
            return contracts.InterchangeabilityUpdated(
                clearance_id=c.id,
                item=c.item,
                platform=c.platform,
                nations=list(c.nations),
                status=c.status.value,
                basis_kind=c.basis.kind.value,
                basis_reference=c.basis.reference,
                restrictions=list(c.restrictions),
                version=c.version,
                updated_by=event.by,
                updated_at=c.updated_at,
            )
    raise _unmapped(event)

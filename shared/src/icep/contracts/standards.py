"""Events published by the standards service on `icep.standards.events`.

Aggregates: `standard` (one edition of a NATO standard), `response` (a nation's answer to one edition,
subject `<standard_id>:<nation>`), `conformance` (a product's claim) and `interchangeability` (a clearance
of an item for a platform).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import ClassVar

from pydantic import Field

from icep.contracts.base import EventPayload, Subject

# --- standard -------------------------------------------------------------------------------------------


class _StandardEvent(EventPayload):
    aggregate: ClassVar[str] = "standard"
    subject: ClassVar[Subject] = Subject("{standard_id}", "/v1/standards/{standard_id}")

    standard_id: str
    kind: str  # STANAG, STANREC, AP
    number: str
    edition: int
    title: str
    version: int


class StandardDrafted(_StandardEvent):
    event_type: ClassVar[str] = "icep.standards.standard.drafted.v1"

    covering_publications: list[str]
    domain: str
    capability_areas: list[str]
    levels: list[str]
    supersedes: str | None
    drafted_by: str
    drafted_at: datetime


class StandardCirculated(_StandardEvent):
    """Sent to nations for ratification (study -> ratification_draft)."""

    event_type: ClassVar[str] = "icep.standards.standard.circulated.v1"

    circulated_by: str
    circulated_at: datetime


class StandardPromulgated(_StandardEvent):
    event_type: ClassVar[str] = "icep.standards.standard.promulgated.v1"

    promulgated_by: str
    promulgated_at: datetime
    promulgated_on: date
    supersedes: str | None


class StandardSuperseded(_StandardEvent):
    event_type: ClassVar[str] = "icep.standards.standard.superseded.v1"

    superseded_by: str
    superseded_at: datetime


class StandardCancelled(_StandardEvent):
    event_type: ClassVar[str] = "icep.standards.standard.cancelled.v1"

    reason: str
    cancelled_by: str
    cancelled_at: datetime


# --- national responses ---------------------------------------------------------------------------------


class ReservationFigure(EventPayload):
    clause: str
    kind: str  # will_not_implement, limited
    detail: str


class _ResponseEvent(EventPayload):
    aggregate: ClassVar[str] = "response"
    subject: ClassVar[Subject] = Subject(
        "{standard_id}:{nation}",
        "/v1/standards/{standard_id}/responses/{nation}",
        note="The answer has no id of its own: the edition's id and the answering nation name it.",
    )

    standard_id: str
    standard_reference: str  # e.g. "STANAG 4569 Ed. 3"
    nation: str
    #: pending, ratified, ratified_with_reservations, not_ratifying: the state after the change.
    status: str
    version: int
    recorded_by: str
    #: The nation that recorded it: the nation itself, or NATO for the record of a promulgation.
    recorded_by_nation: str
    recorded_at: datetime


class ResponseRecorded(_ResponseEvent):
    """The nation's answer changed to pending or not ratifying."""

    event_type: ClassVar[str] = "icep.standards.response.recorded.v1"


class ResponseRatified(_ResponseEvent):
    event_type: ClassVar[str] = "icep.standards.response.ratified.v1"

    reservations: list[ReservationFigure]


class ReservationRecorded(_ResponseEvent):
    event_type: ClassVar[str] = "icep.standards.response.reservation_recorded.v1"

    reservation: ReservationFigure


class ReservationWithdrawn(_ResponseEvent):
    event_type: ClassVar[str] = "icep.standards.response.reservation_withdrawn.v1"

    clause: str


class ImplementationForecast(_ResponseEvent):
    event_type: ClassVar[str] = "icep.standards.response.implementation_forecast.v1"

    implementation_forecast: date


class ResponseImplemented(_ResponseEvent):
    event_type: ClassVar[str] = "icep.standards.response.implemented.v1"

    implemented_on: date


# --- conformance ----------------------------------------------------------------------------------------


class _ConformanceEvent(EventPayload):
    aggregate: ClassVar[str] = "conformance"
    subject: ClassVar[Subject] = Subject(
        "{claim_id}", "/v1/standards/conformance/{claim_id}", noun="conformance claim"
    )

    claim_id: str
    nation: str
    manufacturer: str
    product_code: str
    product_name: str
    standard_id: str
    standard_reference: str
    level: str | None
    version: int


class ConformanceClaimed(_ConformanceEvent):
    event_type: ClassVar[str] = "icep.standards.conformance.claimed.v1"

    evidence: list[str]
    claimed_by: str
    claimed_at: datetime


class ConformanceTestStarted(_ConformanceEvent):
    event_type: ClassVar[str] = "icep.standards.conformance.test_started.v1"

    #: Every evidence reference so far, including what was added when testing started.
    evidence: list[str] = Field(default_factory=list)
    started_by: str
    started_at: datetime


class ConformanceVerified(_ConformanceEvent):
    event_type: ClassVar[str] = "icep.standards.conformance.verified.v1"

    evidence: list[str]
    expires_on: date
    verified_by: str
    verified_at: datetime


class ConformanceRejected(_ConformanceEvent):
    event_type: ClassVar[str] = "icep.standards.conformance.rejected.v1"

    reason: str
    rejected_by: str
    rejected_at: datetime


class ConformanceExpired(_ConformanceEvent):
    """Emitted once by the service's expiry schedule when a verification reaches its date."""

    event_type: ClassVar[str] = "icep.standards.conformance.expired.v1"

    expires_on: date
    expired_at: datetime


# --- interchangeability ---------------------------------------------------------------------------------


class InterchangeabilityUpdated(EventPayload):
    """A clearance of an item for a platform was recorded or changed."""

    event_type: ClassVar[str] = "icep.standards.interchangeability.updated.v1"
    aggregate: ClassVar[str] = "interchangeability"
    subject: ClassVar[Subject] = Subject(
        "{clearance_id}", "/v1/interchangeability/clearances/{clearance_id}", noun="clearance"
    )

    clearance_id: str
    item: str
    platform: str
    nations: list[str]
    status: str  # verified, restricted, not_interchangeable
    basis_kind: str  # standard, trial
    basis_reference: str
    restrictions: list[str]
    version: int
    updated_by: str
    updated_at: datetime

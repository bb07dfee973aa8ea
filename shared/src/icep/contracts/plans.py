"""Events published by the plans service on `icep.plans.events`."""

from __future__ import annotations

from datetime import date, datetime
from typing import ClassVar

from icep.contracts.base import EventPayload


class _PlanEvent(EventPayload):
    aggregate: ClassVar[str] = "plan"

    plan_id: str
    nation: str
    title: str
    period_start: date
    period_end: date
    version: int


class PlanCreated(_PlanEvent):
    event_type: ClassVar[str] = "icep.plans.plan.created.v1"

    created_by: str
    created_at: datetime


class PlanSubmitted(_PlanEvent):
    event_type: ClassVar[str] = "icep.plans.plan.submitted.v1"

    submitted_by: str
    submitted_at: datetime

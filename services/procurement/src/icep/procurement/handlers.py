"""The events the procurement service consumes, and the handler of each: local read models of other
services' facts (`read_models/`). The platform finds `SUBSCRIBED_TOPICS` and `HANDLERS` here (the consumer,
the AsyncAPI document and the dead-letter tools), so this module stays at the service's top level.

Every handler runs in the consumer's transaction with the inbox row (a duplicate is skipped)."""

from __future__ import annotations

from icep.contracts.plans import (
    CapacityCommitted,
    PlanReleased,
    PlanSuperseded,
    PlanWithdrawn,
    ShortfallDetected,
)
from icep.platform.consumer import Handler
from icep.procurement.read_models.capacity import (
    capacity_committed,
    plan_ended,
    plan_released,
    shortfall_detected,
)
from icep.procurement.read_models.standards import (
    CONFORMANCE_EVENTS,
    STANDARD_EVENTS,
    conformance_changed,
    standard_changed,
)

SUBSCRIBED_TOPICS: list[str] = ["icep.plans.events", "icep.standards.events"]


HANDLERS: dict[str, Handler] = {
    CapacityCommitted.event_type: capacity_committed,
    PlanSuperseded.event_type: plan_ended,
    PlanWithdrawn.event_type: plan_ended,
    PlanReleased.event_type: plan_released,
    ShortfallDetected.event_type: shortfall_detected,
    **dict.fromkeys(STANDARD_EVENTS, standard_changed),
    **dict.fromkeys(CONFORMANCE_EVENTS, conformance_changed),
}

"""What the plans service publishes: the `icep.contracts.plans` payloads of its plans' changes."""

from __future__ import annotations

from typing import Any

from icep.contracts import EventPayload
from icep.contracts.plans import CapacityCommitted, RampStepFigure
from icep.plans.plans.model import CapacityCommitment, NationalPlan
from icep.platform.events import OutgoingEvent
from icep.platform.outbox import UnitOfWork


def event_fields(plan: NationalPlan) -> dict[str, Any]:
    return {
        "plan_id": plan.id,
        "nation": plan.nation,
        "title": plan.title,
        "period_start": plan.period_start,
        "period_end": plan.period_end,
        "version": plan.version,
    }


def capacity_fields(plan: NationalPlan) -> dict[str, Any]:
    fields = event_fields(plan)
    del fields["title"]
    return fields


def publish(tx: UnitOfWork, plan: NationalPlan, payload: EventPayload, *, capacity: bool = False) -> None:
    tx.publish(
        OutgoingEvent(
            payload=payload,
            subject=plan.id,
            releasability=plan.capacity_event_releasability() if capacity else plan.event_releasability(),
        )
    )


def committed(plan: NationalPlan, c: CapacityCommitment) -> CapacityCommitted:
    return CapacityCommitted(
        **capacity_fields(plan),
        commitment_key=c.key,
        product=c.product,
        capability_area=c.capability_area,
        site=c.site,
        site_country=c.site_country,
        unit=c.unit,
        baseline_per_month=c.baseline_per_month,
        current_per_month=c.current_per_month,
        target_per_month=c.target_per_month,
        ramp=[RampStepFigure(on=s.on, output_per_month=s.output_per_month) for s in c.ramp],
        surge_per_month=c.surge_per_month,
        surge_days=c.surge_days,
        lead_time_days=c.lead_time_days,
        operator=c.operator.company,
        operator_is_sme=c.operator.sme,
        investment_amount=c.investment.amount if c.investment else None,
        investment_currency=c.investment.currency if c.investment else None,
    )

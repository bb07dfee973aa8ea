"""The plans service's one mapper: the domain events its aggregates record -> the `icep.contracts.plans`
payloads published for them, with subject and releasability (`ServiceSpec(events=plans_events)`).

A plan's events are marked for exactly its readers after the change; the capacity events (commitments,
progress, shortfalls) for the readers of its capacity figures, who may be more. Editing and redrafting a
draft are the owner's business alone: they publish nothing."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from icep.contracts import EventPayload
from icep.contracts import plans as published
from icep.plans.plans import model as plans
from icep.plans.progress import model as progress
from icep.plans.targets import model as targets
from icep.platform.domain import DomainEvent
from icep.platform.events import OutgoingEvent


def plans_events(aggregate: Any, event: DomainEvent) -> Iterable[OutgoingEvent]:
    if isinstance(aggregate, plans.NationalPlan):
        return _plan_events(aggregate, event)
    if isinstance(aggregate, progress.ProgressReport):
        return _progress_events(aggregate, event)
    if isinstance(aggregate, targets.CapabilityTarget):
        return _target_events(aggregate, event)
    raise TypeError(f"the plans service maps no events of {type(aggregate).__name__}")


def _plan_fields(plan: plans.NationalPlan) -> dict[str, Any]:
    return {
        "plan_id": plan.id,
        "nation": plan.nation,
        "title": plan.title,
        "period_start": plan.period_start,
        "period_end": plan.period_end,
        "version": plan.version,
    }


def _capacity_fields(plan: plans.NationalPlan) -> dict[str, Any]:
    fields = _plan_fields(plan)
    del fields["title"]  # capacity events may go wider than the plan: no title or other content
    return fields


def _of_plan(plan: plans.NationalPlan, payload: EventPayload) -> OutgoingEvent:
    return OutgoingEvent(payload=payload, subject=plan.id, releasability=plan.event_releasability())


def _of_capacity(plan: plans.NationalPlan, payload: EventPayload) -> OutgoingEvent:
    return OutgoingEvent(payload=payload, subject=plan.id, releasability=plan.capacity_event_releasability())


def _plan_events(plan: plans.NationalPlan, event: DomainEvent) -> Iterator[OutgoingEvent]:
    fields = _plan_fields(plan)
    match event:
        case plans.PlanDrafted(by=by, at=at):
            yield _of_plan(plan, published.PlanCreated(**fields, created_by=by, created_at=at))
        case plans.PlanSubmitted(by=by, at=at):
            yield _of_plan(plan, published.PlanSubmitted(**fields, submitted_by=by, submitted_at=at))
        case plans.ReviewStarted(by=by, at=at):
            yield _of_plan(plan, published.PlanReviewStarted(**fields, reviewer=by, started_at=at))
        case plans.PlanReturned(by=by, at=at):
            yield _of_plan(
                plan,
                published.PlanReturned(
                    **fields, returned_by=by, returned_at=at, reasons=list(plan.returned_reasons)
                ),
            )
        case plans.PlanWithdrawn(by=by, at=at):
            yield _of_plan(plan, published.PlanWithdrawn(**fields, withdrawn_by=by, withdrawn_at=at))
        case plans.PlanAccepted(by=by, at=at):
            # The acceptance first, then each commitment it makes: subscribers see them in this order.
            yield _of_plan(
                plan,
                published.PlanAccepted(
                    **fields, accepted_by=by, accepted_at=at, commitments=len(plan.content.commitments)
                ),
            )
            for commitment in plan.content.commitments:
                yield _of_capacity(plan, _committed(plan, commitment))
        case plans.PlanSuperseded(by_plan=by_plan, successor_named=named, at=at):
            yield _of_plan(
                plan,
                published.PlanSuperseded(
                    **fields, superseded_by=by_plan if named else None, superseded_at=at
                ),
            )
        case plans.PlanReleased(by=by, at=at):
            yield _of_plan(
                plan,
                published.PlanReleased(
                    **fields,
                    released_by=by,
                    released_at=at,
                    # Who may read the plan and its figures now: the marking of its events from here on.
                    releasable_to=plan.event_releasability().marking(),
                    capacity_releasable_to=plan.capacity_event_releasability().marking(),
                ),
            )
        case plans.PlanEdited() | plans.PlanRedrafted():
            return  # the owner's business alone
        case _:
            raise TypeError(f"no published event for {type(event).__name__}")


def _committed(plan: plans.NationalPlan, c: plans.CapacityCommitment) -> published.CapacityCommitted:
    return published.CapacityCommitted(
        **_capacity_fields(plan),
        commitment_key=c.key,
        product=c.product,
        capability_area=c.capability_area,
        site=c.site,
        site_country=c.site_country,
        unit=c.unit,
        baseline_per_month=c.baseline_per_month,
        current_per_month=c.current_per_month,
        target_per_month=c.target_per_month,
        ramp=[published.RampStepFigure(on=s.on, output_per_month=s.output_per_month) for s in c.ramp],
        surge_per_month=c.surge_per_month,
        surge_days=c.surge_days,
        lead_time_days=c.lead_time_days,
        operator=c.operator.company,
        operator_is_sme=c.operator.sme,
        investment_amount=c.investment.amount if c.investment else None,
        investment_currency=c.investment.currency if c.investment else None,
    )


def _progress_events(report: progress.ProgressReport, event: DomainEvent) -> Iterator[OutgoingEvent]:
    common = {
        **_capacity_fields(report.plan),
        "commitment_key": report.commitment_key,
        "product": report.commitment.product,
        "month": report.month,
        "actual_output": report.actual_output,
        "planned_output": report.expected_output,
    }
    match event:
        case progress.ProgressReported(by=by, at=at, previous_output=previous, revision=revision):
            yield _of_capacity(
                report.plan,
                published.ProgressReported(
                    **common,
                    reported_by=by,
                    reported_at=at,
                    lineage=report.lineage,
                    revision=revision,
                    previous_output=previous,
                ),
            )
        case progress.ShortfallDetected(threshold=threshold):
            yield _of_capacity(
                report.plan,
                published.ShortfallDetected(
                    **common, shortfall=report.expected_output - report.actual_output, threshold=threshold
                ),
            )
        case _:
            raise TypeError(f"no published event for {type(event).__name__}")


def _target_events(target: targets.CapabilityTarget, event: DomainEvent) -> Iterator[OutgoingEvent]:
    match event:
        case targets.TargetSet(by=by, at=at):
            yield OutgoingEvent(
                payload=published.CapabilityTargetSet(
                    target_id=target.id,
                    capability_area=target.capability_area,
                    product=target.product,
                    year=target.year,
                    required_quantity=target.required_quantity,
                    unit=target.unit,
                    set_by=by,
                    set_at=at,
                ),
                subject=target.id,
                releasability=targets.TARGET_RELEASABILITY,
            )
        case _:
            raise TypeError(f"no published event for {type(event).__name__}")

"""Use cases of the plans service: each is one unit of work (domain rows and events in one transaction)."""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any, Literal

from sqlalchemy import Row, Table, func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from icep.contracts import EventPayload, Releasability, ReleasabilityScope
from icep.contracts.plans import (
    CapabilityTargetSet,
    CapacityCommitted,
    PlanAccepted,
    PlanCreated,
    PlanReleased,
    PlanReturned,
    PlanReviewStarted,
    PlanSubmitted,
    PlanSuperseded,
    PlanWithdrawn,
    ProgressReported,
    RampStepFigure,
    ShortfallDetected,
)
from icep.plans.domain import (
    TARGET_RELEASABILITY,
    Actor,
    BottleneckInput,
    CapacityCommitment,
    Investment,
    Measure,
    MeasureKind,
    NationalPlan,
    Operator,
    PlanContent,
    PlanStatus,
    RampStep,
    caller_tokens,
    check_target_setter,
    encode_tokens,
    report_progress,
)
from icep.plans.models import CapabilityTargetRow, PlanRow, PlanVersionRow, ProgressRow
from icep.platform import audit, visibility
from icep.platform.db import Database, advisory_key
from icep.platform.errors import Conflict, NotFound, PreconditionFailed, PreconditionRequired
from icep.platform.events import OutgoingEvent, utcnow
from icep.platform.ids import new_id
from icep.platform.outbox import UnitOfWork, UnitOfWorkFactory

log = logging.getLogger("icep.plans")


@dataclass(frozen=True)
class DraftPlan:
    title: str
    period_start: date
    period_end: date
    capability_areas: tuple[str, ...]
    release_scope: ReleasabilityScope
    release_nations: tuple[str, ...]
    content: PlanContent | None = None
    capacity_release: tuple[ReleasabilityScope, tuple[str, ...]] | None = None


@dataclass(frozen=True)
class PlanChanges:
    title: str | None = None
    period_start: date | None = None
    period_end: date | None = None
    capability_areas: tuple[str, ...] | None = None
    content: PlanContent | None = None


# --- storage codec ---------------------------------------------------------------------------------------


def content_to_json(content: PlanContent) -> dict[str, Any]:
    return {
        "commitments": [
            {
                "key": c.key,
                "product": c.product,
                "capability_area": c.capability_area,
                "site": c.site,
                "site_country": c.site_country,
                "unit": c.unit,
                "baseline_per_month": c.baseline_per_month,
                "current_per_month": c.current_per_month,
                "target_per_month": c.target_per_month,
                "ramp": [{"on": s.on.isoformat(), "output_per_month": s.output_per_month} for s in c.ramp],
                "surge_per_month": c.surge_per_month,
                "surge_days": c.surge_days,
                "lead_time_days": c.lead_time_days,
                "operator": {"company": c.operator.company, "sme": c.operator.sme},
                "investment": (
                    None
                    if c.investment is None
                    else {"amount": c.investment.amount, "currency": c.investment.currency}
                ),
                "bottlenecks": [
                    {
                        "input": b.input,
                        "category": b.category,
                        "source_countries": list(b.source_countries),
                        "single_source": b.single_source,
                        "stock_cover_days": b.stock_cover_days,
                    }
                    for b in c.bottlenecks
                ],
            }
            for c in content.commitments
        ],
        "measures": [
            {
                "kind": m.kind.value,
                "description": m.description,
                "starts": m.starts.isoformat() if m.starts else None,
                "completes": m.completes.isoformat() if m.completes else None,
            }
            for m in content.measures
        ],
    }


def _day(value: str | None) -> date | None:
    return date.fromisoformat(value) if value else None


def content_from_json(data: dict[str, Any]) -> PlanContent:
    return PlanContent(
        commitments=tuple(
            CapacityCommitment(
                key=c["key"],
                product=c["product"],
                capability_area=c["capability_area"],
                site=c["site"],
                site_country=c["site_country"],
                unit=c["unit"],
                baseline_per_month=c["baseline_per_month"],
                current_per_month=c["current_per_month"],
                target_per_month=c["target_per_month"],
                ramp=tuple(RampStep(date.fromisoformat(s["on"]), s["output_per_month"]) for s in c["ramp"]),
                surge_per_month=c["surge_per_month"],
                surge_days=c["surge_days"],
                lead_time_days=c["lead_time_days"],
                operator=Operator(c["operator"]["company"], c["operator"]["sme"]),
                investment=(
                    None
                    if c["investment"] is None
                    else Investment(c["investment"]["amount"], c["investment"]["currency"])
                ),
                bottlenecks=tuple(
                    BottleneckInput(
                        input=b["input"],
                        category=b["category"],
                        source_countries=tuple(b["source_countries"]),
                        single_source=b["single_source"],
                        stock_cover_days=b["stock_cover_days"],
                    )
                    for b in c["bottlenecks"]
                ),
            )
            for c in data.get("commitments", [])
        ),
        measures=tuple(
            Measure(MeasureKind(m["kind"]), m["description"], _day(m["starts"]), _day(m["completes"]))
            for m in data.get("measures", [])
        ),
    )


def _release_json(r: Releasability | None) -> dict[str, Any] | None:
    return None if r is None else {"scope": r.scope.value, "nations": list(r.nations)}


def plan_document(plan: NationalPlan) -> dict[str, Any]:
    """The plan as the API shows it (JSON types): what every stored version holds."""
    return {
        "id": plan.id,
        "nation": plan.nation,
        "title": plan.title,
        "period_start": plan.period_start.isoformat(),
        "period_end": plan.period_end.isoformat(),
        "capability_areas": list(plan.capability_areas),
        "releasability": _release_json(plan.releasability),
        "capacity_releasability": _release_json(plan.capacity_releasability),
        "status": plan.status.value,
        "version": plan.version,
        "created_by": plan.created_by,
        "created_at": plan.created_at.isoformat(),
        "submitted_at": plan.submitted_at.isoformat() if plan.submitted_at else None,
        "returned_reasons": list(plan.returned_reasons),
        "superseded_by": plan.superseded_by,
        "content": content_to_json(plan.content),
    }


#: The plans table, for reads that need no ORM objects (`get_plan`).
_PLANS: Table = PlanRow.__table__  # type: ignore[attr-defined]


def _to_domain(row: PlanRow | Row[Any]) -> NationalPlan:
    """The domain plan of a stored row: an ORM `PlanRow` or a Core row of the plans table."""
    return NationalPlan(
        id=row.id,
        nation=row.nation,
        title=row.title,
        period_start=row.period_start,
        period_end=row.period_end,
        capability_areas=tuple(row.capability_areas),
        releasability=Releasability(
            owner=row.nation, scope=ReleasabilityScope(row.release_scope), nations=tuple(row.release_nations)
        ),
        status=PlanStatus(row.status),
        version=row.version,
        created_by=row.created_by,
        created_at=row.created_at,
        submitted_at=row.submitted_at,
        history=tuple((h[0], h[1], datetime.fromisoformat(h[2])) for h in row.history),
        content=content_from_json(row.content or {}),
        capacity_releasability=(
            None
            if row.capacity_scope is None
            else Releasability(
                owner=row.nation,
                scope=ReleasabilityScope(row.capacity_scope),
                nations=tuple(row.capacity_nations),
            )
        ),
        returned_reasons=tuple(row.returned_reasons or ()),
        superseded_by=row.superseded_by,
    )


def _stored(plan: NationalPlan) -> dict[str, Any]:
    """The plan row's columns a change may touch, from the domain plan."""
    cap = plan.capacity_releasability
    return {
        "title": plan.title,
        "period_start": plan.period_start,
        "period_end": plan.period_end,
        "capability_areas": list(plan.capability_areas),
        "release_scope": plan.releasability.scope.value,
        "release_nations": list(plan.releasability.nations),
        "status": plan.status.value,
        "version": plan.version,
        "submitted_at": plan.submitted_at,
        "history": [[s, who, at.isoformat()] for s, who, at in plan.history],
        "content": content_to_json(plan.content),
        "capacity_scope": None if cap is None else cap.scope.value,
        "capacity_nations": [] if cap is None else list(cap.nations),
        "returned_reasons": list(plan.returned_reasons),
        "superseded_by": plan.superseded_by,
        "readers": encode_tokens(plan.readers()),
        "capacity_readers": encode_tokens(plan.capacity_readers()),
    }


def _store(row: PlanRow, plan: NationalPlan) -> None:
    for name, value in _stored(plan).items():
        setattr(row, name, value)


async def _insert_new(session: AsyncSession, plan: NationalPlan) -> None:
    """A new plan's row, by SQLAlchemy Core: no SQLModel object is built for a row written once here."""
    await session.execute(
        insert(PlanRow.__table__),  # type: ignore[attr-defined]
        [
            {
                "id": plan.id,
                "nation": plan.nation,
                "created_by": plan.created_by,
                "created_at": plan.created_at,
                **_stored(plan),
            }
        ],
    )


async def _keep_version(session: AsyncSession, plan: NationalPlan, now: datetime) -> None:
    await session.execute(
        insert(PlanVersionRow.__table__),  # type: ignore[attr-defined]
        [{"plan_id": plan.id, "version": plan.version, "snapshot": plan_document(plan), "recorded_at": now}],
    )


def _readable_by(column: Any, actor: Actor) -> Any:
    """SQL: the reader tokens in `column` share one with the caller's (the plan's `readers` rule)."""
    return visibility.readable_by(column, actor.nation)


def _event_fields(plan: NationalPlan) -> dict[str, Any]:
    return {
        "plan_id": plan.id,
        "nation": plan.nation,
        "title": plan.title,
        "period_start": plan.period_start,
        "period_end": plan.period_end,
        "version": plan.version,
    }


def _capacity_fields(plan: NationalPlan) -> dict[str, Any]:
    fields = _event_fields(plan)
    del fields["title"]
    return fields


def _publish(tx: UnitOfWork, plan: NationalPlan, payload: EventPayload, *, capacity: bool = False) -> None:
    tx.publish(
        OutgoingEvent(
            payload=payload,
            subject=plan.id,
            releasability=plan.capacity_event_releasability() if capacity else plan.event_releasability(),
        )
    )


# --- commands ----------------------------------------------------------------------------------------------


async def create_plan(uow: UnitOfWorkFactory, actor: Actor, draft: DraftPlan) -> NationalPlan:
    now = utcnow()
    plan = NationalPlan.draft(
        id=new_id(),
        actor=actor,
        title=draft.title,
        period_start=draft.period_start,
        period_end=draft.period_end,
        capability_areas=draft.capability_areas,
        release_scope=draft.release_scope,
        release_nations=draft.release_nations,
        now=now,
        content=draft.content,
        capacity_releasability=draft.capacity_release,
    )
    async with uow() as tx:
        await _insert_new(tx.session, plan)
        await _keep_version(tx.session, plan, now)
        _publish(tx, plan, PlanCreated(**_event_fields(plan), created_by=actor.id, created_at=now))
    return plan


async def _load_for_update(session: AsyncSession, actor: Actor, plan_id: str) -> PlanRow:
    row = (
        await session.execute(select(PlanRow).where(col(PlanRow.id) == plan_id).with_for_update())
    ).scalar_one_or_none()
    if row is not None:
        audit.subject("plan", row.id, row.nation)  # a refused attempt is the owner's to see too
    if row is None or not _to_domain(row).visible_to(actor.nation, actor.roles):
        raise NotFound(f"no plan {plan_id}")
    return row


def _check_version(plan: NationalPlan, expected_version: int | None) -> None:
    if expected_version is not None and expected_version != plan.version:
        raise PreconditionFailed(
            f"the plan is at version {plan.version}, not {expected_version}", current_version=plan.version
        )


Change = Callable[[NationalPlan, datetime], NationalPlan]
Announce = Callable[[NationalPlan, datetime], EventPayload]


async def _change(
    uow: UnitOfWorkFactory,
    actor: Actor,
    plan_id: str,
    expected_version: int | None,
    change: Change,
    announce: Announce | None,
    after: Callable[[UnitOfWork, NationalPlan, datetime], Any] | None = None,
) -> NationalPlan:
    async with uow() as tx:
        row = await _load_for_update(tx.session, actor, plan_id)
        plan = _to_domain(row)
        _check_version(plan, expected_version)
        now = utcnow()
        changed = change(plan, now)
        _store(row, changed)
        await _keep_version(tx.session, changed, now)
        if announce is not None:  # editing and redrafting a draft are the owner's business alone
            _publish(tx, changed, announce(changed, now))
        if after is not None:
            await after(tx, changed, now)
    log.info(
        "plan %s of %s is %s (version %d) after %s",
        changed.id,
        changed.nation,
        changed.status.value,
        changed.version,
        actor.id,
    )
    return changed


async def edit_plan(
    uow: UnitOfWorkFactory, actor: Actor, plan_id: str, expected_version: int | None, changes: PlanChanges
) -> NationalPlan:
    if expected_version is None:
        raise PreconditionRequired("editing a draft needs If-Match with the ETag of the version you read")

    return await _change(
        uow,
        actor,
        plan_id,
        expected_version,
        lambda p, _now: p.edit(
            actor,
            title=changes.title,
            period_start=changes.period_start,
            period_end=changes.period_end,
            capability_areas=changes.capability_areas,
            content=changes.content,
        ),
        None,
    )


async def submit_plan(
    uow: UnitOfWorkFactory, actor: Actor, plan_id: str, expected_version: int | None
) -> NationalPlan:
    return await _change(
        uow,
        actor,
        plan_id,
        expected_version,
        lambda p, now: p.submit(actor, now),
        lambda p, now: PlanSubmitted(**_event_fields(p), submitted_by=actor.id, submitted_at=now),
    )


async def start_review(
    uow: UnitOfWorkFactory, actor: Actor, plan_id: str, expected_version: int | None
) -> NationalPlan:
    return await _change(
        uow,
        actor,
        plan_id,
        expected_version,
        lambda p, now: p.start_review(actor, now),
        lambda p, now: PlanReviewStarted(**_event_fields(p), reviewer=actor.id, started_at=now),
    )


async def return_plan(
    uow: UnitOfWorkFactory, actor: Actor, plan_id: str, expected_version: int | None, reasons: Sequence[str]
) -> NationalPlan:
    return await _change(
        uow,
        actor,
        plan_id,
        expected_version,
        lambda p, now: p.return_(actor, tuple(reasons), now),
        lambda p, now: PlanReturned(
            **_event_fields(p), returned_by=actor.id, returned_at=now, reasons=list(p.returned_reasons)
        ),
    )


async def redraft_plan(
    uow: UnitOfWorkFactory, actor: Actor, plan_id: str, expected_version: int | None
) -> NationalPlan:
    """A returned plan goes back to draft to be edited; the redraft is the owner's business alone."""
    return await _change(uow, actor, plan_id, expected_version, lambda p, now: p.redraft(actor, now), None)


async def withdraw_plan(
    uow: UnitOfWorkFactory, actor: Actor, plan_id: str, expected_version: int | None
) -> NationalPlan:
    return await _change(
        uow,
        actor,
        plan_id,
        expected_version,
        lambda p, now: p.withdraw(actor, now),
        lambda p, now: PlanWithdrawn(**_event_fields(p), withdrawn_by=actor.id, withdrawn_at=now),
    )


def _committed(plan: NationalPlan, c: CapacityCommitment) -> CapacityCommitted:
    return CapacityCommitted(
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
        ramp=[RampStepFigure(on=s.on, output_per_month=s.output_per_month) for s in c.ramp],
        surge_per_month=c.surge_per_month,
        surge_days=c.surge_days,
        lead_time_days=c.lead_time_days,
        operator=c.operator.company,
        operator_is_sme=c.operator.sme,
        investment_amount=c.investment.amount if c.investment else None,
        investment_currency=c.investment.currency if c.investment else None,
    )


async def accept_plan(
    uow: UnitOfWorkFactory, actor: Actor, plan_id: str, expected_version: int | None
) -> NationalPlan:
    async def commit_and_supersede(tx: UnitOfWork, plan: NationalPlan, now: datetime) -> None:
        if tx.session.bind is not None and tx.session.bind.dialect.name == "postgresql":
            # Two accepts for one nation and period must see each other: one at a time.
            lineage = f"icep-plans-{plan.nation}-{plan.period_start}-{plan.period_end}"
            await tx.session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": advisory_key(lineage)})
        for commitment in plan.content.commitments:
            _publish(tx, plan, _committed(plan, commitment), capacity=True)
        older = (
            (
                await tx.session.execute(
                    select(PlanRow)
                    .where(
                        col(PlanRow.nation) == plan.nation,
                        col(PlanRow.status) == PlanStatus.ACCEPTED.value,
                        col(PlanRow.period_start) == plan.period_start,
                        col(PlanRow.period_end) == plan.period_end,
                        col(PlanRow.id) != plan.id,
                    )
                    .with_for_update()
                )
            )
            .scalars()
            .all()
        )
        for row in older:
            previous = _to_domain(row)
            if previous.created_at > plan.created_at:
                raise Conflict(
                    f"a newer version of {plan.nation}'s plan for this period ({previous.id}) is accepted;"
                    " accept or supersede from the newest version",
                    newer_plan_id=previous.id,
                )
            if not plan.supersedes(previous):
                continue
            superseded = previous.supersede(plan, now)
            _store(row, superseded)
            await _keep_version(tx.session, superseded, now)
            _publish(
                tx,
                superseded,
                PlanSuperseded(
                    **_event_fields(superseded),
                    # Named only when everyone told of the old plan may also see the new one.
                    superseded_by=plan.id if superseded.readers() <= plan.readers() else None,
                    superseded_at=now,
                ),
            )

    return await _change(
        uow,
        actor,
        plan_id,
        expected_version,
        lambda p, now: p.accept(actor, now),
        lambda p, now: PlanAccepted(
            **_event_fields(p), accepted_by=actor.id, accepted_at=now, commitments=len(p.content.commitments)
        ),
        commit_and_supersede,
    )


async def release_plan(
    uow: UnitOfWorkFactory,
    actor: Actor,
    plan_id: str,
    expected_version: int | None,
    releasability: tuple[ReleasabilityScope, tuple[str, ...]],
    capacity: tuple[ReleasabilityScope, tuple[str, ...]] | None,
) -> NationalPlan:
    def change(p: NationalPlan, now: datetime) -> NationalPlan:
        whole = Releasability(owner=p.nation, scope=releasability[0], nations=releasability[1])
        part = (
            None
            if capacity is None
            else Releasability(owner=p.nation, scope=capacity[0], nations=capacity[1])
        )
        return p.release(actor, whole, part)

    def announce(p: NationalPlan, now: datetime) -> PlanReleased:
        return PlanReleased(
            **_event_fields(p),
            released_by=actor.id,
            released_at=now,
            # Who may read the plan and its figures now: the marking of its events from here on.
            releasable_to=p.event_releasability().marking(),
            capacity_releasable_to=p.capacity_event_releasability().marking(),
        )

    return await _change(uow, actor, plan_id, expected_version, change, announce)


@dataclass(frozen=True)
class Progress:
    plan: NationalPlan
    commitment_key: str
    month: date
    actual_output: int
    planned_output: int
    shortfall: bool


async def record_progress(
    uow: UnitOfWorkFactory,
    actor: Actor,
    plan_id: str,
    commitment_key: str,
    month: date,
    actual_output: int,
    threshold: float,
    expected_version: int | None = None,
) -> Progress:
    """Report a month's output against a commitment of the plan at `expected_version` (the plan the
    reporter read: its commitment sets the planned output the report is measured against)."""
    async with uow() as tx:
        row = await _load_for_update(tx.session, actor, plan_id)
        plan = _to_domain(row)
        _check_version(plan, expected_version)
        report = report_progress(plan, actor, commitment_key, month, actual_output, threshold)
        now = utcnow()
        existing = await tx.session.get(ProgressRow, (plan.id, commitment_key, report.month))
        if existing is None:
            tx.session.add(
                ProgressRow(
                    plan_id=plan.id,
                    commitment_key=commitment_key,
                    month=report.month,
                    actual_output=report.actual_output,
                    planned_output=report.expected_output,
                    shortfall=report.shortfall,
                    reported_by=actor.id,
                    reported_at=now,
                )
            )
        else:
            existing.actual_output = report.actual_output
            existing.planned_output = report.expected_output
            existing.shortfall = report.shortfall
            existing.reported_by = actor.id
            existing.reported_at = now
        commitment = plan.content.commitment(commitment_key)
        assert commitment is not None  # report_progress checked it
        common = {
            **_capacity_fields(plan),
            "commitment_key": commitment_key,
            "product": commitment.product,
            "month": report.month,
            "actual_output": report.actual_output,
            "planned_output": report.expected_output,
        }
        _publish(tx, plan, ProgressReported(**common, reported_by=actor.id, reported_at=now), capacity=True)
        if report.shortfall:
            _publish(
                tx,
                plan,
                ShortfallDetected(
                    **common, shortfall=report.expected_output - report.actual_output, threshold=threshold
                ),
                capacity=True,
            )
    return Progress(
        plan, commitment_key, report.month, report.actual_output, report.expected_output, report.shortfall
    )


@dataclass(frozen=True)
class CapabilityTarget:
    id: str
    capability_area: str
    product: str
    year: int
    required_quantity: int
    unit: str
    set_by: str
    set_at: datetime
    version: int


def _target(row: CapabilityTargetRow) -> CapabilityTarget:
    return CapabilityTarget(
        row.id,
        row.capability_area,
        row.product,
        row.year,
        row.required_quantity,
        row.unit,
        row.set_by,
        row.set_at,
        row.version,
    )


async def set_capability_target(
    uow: UnitOfWorkFactory,
    actor: Actor,
    *,
    capability_area: str,
    product: str,
    year: int,
    required_quantity: int,
    unit: str,
    expected: int | Literal["*"] | None = None,
) -> tuple[CapabilityTarget, bool]:
    """Record (or correct) the requirement for a product in a year; True when it was new.

    `expected` is the caller's `If-Match`: nothing for a new target; a correction names the version it
    read (or `*`), so that two staff correcting one target at once do not overwrite each other unseen."""
    check_target_setter(actor)
    async with uow() as tx:
        row = (
            await tx.session.execute(
                select(CapabilityTargetRow)
                .where(
                    col(CapabilityTargetRow.capability_area) == capability_area,
                    col(CapabilityTargetRow.product) == product,
                    col(CapabilityTargetRow.year) == year,
                )
                .with_for_update()
            )
        ).scalar_one_or_none()
        created = row is None
        if row is None and isinstance(expected, int):
            raise PreconditionFailed(
                f"there is no target for {product} in {year} yet; leave If-Match out to record one"
            )
        if row is not None and expected is None:
            raise PreconditionRequired(
                f"a target for {product} in {year} exists; correcting it needs If-Match with its ETag",
                current_version=row.version,
            )
        if row is not None and isinstance(expected, int) and expected != row.version:
            raise PreconditionFailed(
                f"the target is at version {row.version}, not {expected}", current_version=row.version
            )
        now = utcnow()
        if row is None:
            row = CapabilityTargetRow(
                id=new_id(),
                capability_area=capability_area,
                product=product,
                year=year,
                required_quantity=required_quantity,
                unit=unit,
                set_by=actor.id,
                set_at=now,
                version=1,
            )
            tx.session.add(row)
        else:
            row.required_quantity = required_quantity
            row.unit = unit
            row.set_by = actor.id
            row.set_at = now
            row.version += 1
        target = _target(row)
        tx.publish(
            OutgoingEvent(
                payload=CapabilityTargetSet(
                    target_id=target.id,
                    capability_area=capability_area,
                    product=product,
                    year=year,
                    required_quantity=required_quantity,
                    unit=unit,
                    set_by=actor.id,
                    set_at=now,
                ),
                subject=target.id,
                releasability=TARGET_RELEASABILITY,
            )
        )
    return target, created


# --- queries ------------------------------------------------------------------------------------------------


async def get_plan(db: Database, actor: Actor, plan_id: str) -> NationalPlan:
    # A Core read on a connection: the same columns and types as `PlanRow`, without a session, its identity
    # map or the ORM object (a read changes nothing, so it needs none of them).
    async with db.reading() as conn:
        row = (await conn.execute(select(_PLANS).where(_PLANS.c.id == plan_id))).one_or_none()
    if row is None:
        raise NotFound(f"no plan {plan_id}")
    plan = _to_domain(row)
    if not plan.visible_to(actor.nation, actor.roles):
        raise NotFound(f"no plan {plan_id}")
    audit.read("plan", plan.id, plan.nation)
    [shown] = await _hide_unseen_successors(db, actor, [plan])
    return shown


async def _hide_unseen_successors(
    db: Database, actor: Actor, plans: list[NationalPlan]
) -> list[NationalPlan]:
    """A superseded plan names its successor only to callers who may see the successor."""
    ids = {p.superseded_by for p in plans if p.superseded_by}
    if not ids:
        return plans
    async with db.sessions() as session:
        rows = (await session.execute(select(PlanRow).where(col(PlanRow.id).in_(ids)))).scalars().all()
    seen = {r.id for r in rows if _to_domain(r).visible_to(actor.nation, actor.roles)}
    return [
        p if not p.superseded_by or p.superseded_by in seen else replace(p, superseded_by=None) for p in plans
    ]


async def list_plans(
    db: Database,
    actor: Actor,
    *,
    limit: int,
    after: str | None,
    nation: str | None = None,
    status: str | None = None,
) -> tuple[list[NationalPlan], str | None]:
    """Plans the caller may see, oldest first (ids are UUIDv7, so id order is creation order)."""
    query = select(PlanRow).where(_readable_by(col(PlanRow.readers), actor))
    if after:
        query = query.where(col(PlanRow.id) > after)
    if nation:
        query = query.where(col(PlanRow.nation) == nation)
    if status:
        query = query.where(col(PlanRow.status) == status)
    async with db.sessions() as session:
        rows = (await session.execute(query.order_by(col(PlanRow.id)).limit(limit + 1))).scalars().all()
    plans = [_to_domain(r) for r in rows[:limit]]
    # The SQL filter and the domain rule are one rule; the check keeps them honest.
    plans = [p for p in plans if p.visible_to(actor.nation, actor.roles)]
    return await _hide_unseen_successors(db, actor, plans), (
        rows[limit - 1].id if len(rows) > limit else None
    )


async def plan_versions(db: Database, actor: Actor, plan_id: str) -> list[dict[str, Any]]:
    """The versions the caller may read (drafts stay the owner's even after acceptance)."""
    plan = await get_plan(db, actor, plan_id)
    async with db.sessions() as session:
        rows = (
            await session.execute(
                select(PlanVersionRow)
                .where(col(PlanVersionRow.plan_id) == plan_id)
                .order_by(col(PlanVersionRow.version))
            )
        ).scalars()
        return [
            _version_answer(r, plan)
            for r in rows
            if plan.version_visible_to(str(r.snapshot.get("status")), actor.nation, actor.roles)
        ]


async def plan_version(db: Database, actor: Actor, plan_id: str, version: int) -> dict[str, Any]:
    plan = await get_plan(db, actor, plan_id)
    async with db.sessions() as session:
        row = await session.get(PlanVersionRow, (plan_id, version))
    if row is None or not plan.version_visible_to(str(row.snapshot.get("status")), actor.nation, actor.roles):
        raise NotFound(f"plan {plan_id} has no version {version}")
    return _version_answer(row, plan)


def _version_answer(row: PlanVersionRow, plan: NationalPlan) -> dict[str, Any]:
    answer = {**row.snapshot, "recorded_at": row.recorded_at.isoformat()}
    if answer.get("superseded_by") and answer["superseded_by"] != plan.superseded_by:
        answer["superseded_by"] = None  # the caller may not see the successor
    return answer


async def get_capability_target(db: Database, actor: Actor, target_id: str) -> CapabilityTarget:
    if TARGET_RELEASABILITY.allows(actor.nation):
        async with db.sessions() as session:
            row = await session.get(CapabilityTargetRow, target_id)
        if row is not None:
            return _target(row)
    raise NotFound(f"no capability target {target_id}")


async def list_capability_targets(
    db: Database,
    actor: Actor,
    *,
    capability_area: str | None = None,
    product: str | None = None,
    year: int | None = None,
) -> list[CapabilityTarget]:
    if not TARGET_RELEASABILITY.allows(actor.nation):
        return []
    query = select(CapabilityTargetRow)
    if capability_area:
        query = query.where(col(CapabilityTargetRow.capability_area) == capability_area)
    if product:
        query = query.where(col(CapabilityTargetRow.product) == product)
    if year:
        query = query.where(col(CapabilityTargetRow.year) == year)
    query = query.order_by(
        col(CapabilityTargetRow.capability_area),
        col(CapabilityTargetRow.product),
        col(CapabilityTargetRow.year),
    )
    async with db.sessions() as session:
        return [_target(r) for r in (await session.execute(query)).scalars()]


@dataclass(frozen=True)
class SummaryFilter:
    capability_area: str | None = None
    product: str | None = None
    year: int | None = None
    nation: str | None = None


@dataclass
class SummaryLine:
    capability_area: str
    product: str
    unit: str
    year: int
    requirement: int | None = None
    committed: int = 0
    actual: int | None = None
    actual_through: date | None = None
    nations: set[str] | None = None
    commitments: int = 0

    @property
    def gap(self) -> int | None:
        """Requirement not covered by committed capacity (negative: more committed than required)."""
        return None if self.requirement is None else self.requirement - self.committed


async def _accepted_plans(db: Database, actor: Actor, readers: Any, nation: str | None) -> list[NationalPlan]:
    query = select(PlanRow).where(
        col(PlanRow.status) == PlanStatus.ACCEPTED.value, _readable_by(readers, actor)
    )
    if nation:
        query = query.where(col(PlanRow.nation) == nation)
    async with db.sessions() as session:
        return [_to_domain(r) for r in (await session.execute(query)).scalars()]


@dataclass(frozen=True)
class _CapacityView:
    """What the summary needs of an accepted plan: no history, no releasability objects to build."""

    id: str
    nation: str
    period_start: date
    period_end: date
    content: PlanContent


#: Parsed content per (plan id, version): a version never changes, so this can never be stale. Bounded.
_CONTENT_CACHE: OrderedDict[tuple[str, int], PlanContent] = OrderedDict()
_CONTENT_CACHE_SIZE = 4096


async def _visible_capacity(db: Database, actor: Actor, nation: str | None) -> list[_CapacityView]:
    query = select(
        col(PlanRow.id),
        col(PlanRow.version),
        col(PlanRow.nation),
        col(PlanRow.period_start),
        col(PlanRow.period_end),
        col(PlanRow.capacity_readers),
    ).where(
        col(PlanRow.status) == PlanStatus.ACCEPTED.value,
        _readable_by(col(PlanRow.capacity_readers), actor),
    )
    if nation:
        query = query.where(col(PlanRow.nation) == nation)
    mine = caller_tokens(actor.nation)
    async with db.sessions() as session:
        rows = [
            r
            for r in (await session.execute(query)).all()
            # The SQL filter and the domain's tokens are one rule; the check keeps them honest.
            if not mine.isdisjoint(t for t in r[5].split(",") if t)
        ]
        missing = [r[0] for r in rows if (r[0], r[1]) not in _CONTENT_CACHE]
        if missing:
            loaded = await session.execute(
                select(col(PlanRow.id), col(PlanRow.version), col(PlanRow.content)).where(
                    col(PlanRow.id).in_(missing)
                )
            )
            for plan_id, version, content in loaded.all():
                _CONTENT_CACHE[(plan_id, version)] = content_from_json(content or {})
    views = []
    for plan_id, version, owner, start, end, _ in rows:
        content = _CONTENT_CACHE.get((plan_id, version))
        if content is None:  # changed between the two reads: the next request sees the new version
            continue
        _CONTENT_CACHE.move_to_end((plan_id, version))
        views.append(_CapacityView(plan_id, owner, start, end, content))
    while len(_CONTENT_CACHE) > _CONTENT_CACHE_SIZE:
        _CONTENT_CACHE.popitem(last=False)
    return views


async def capacity_summary(db: Database, actor: Actor, f: SummaryFilter) -> list[SummaryLine]:
    """Per product and year: requirement, committed capacity of accepted plans, actuals, and the gap,
    computed only from what the caller may see."""
    plans = await _visible_capacity(db, actor, f.nation)
    lines: dict[tuple[str, int], SummaryLine] = {}

    def line(area: str, product: str, unit: str, year: int) -> SummaryLine:
        if (product, year) not in lines:
            lines[(product, year)] = SummaryLine(area, product, unit, year, nations=set())
        return lines[(product, year)]

    keys: dict[str, tuple[_CapacityView, CapacityCommitment]] = {}
    for plan in plans:
        years = range(plan.period_start.year, plan.period_end.year + 1)
        for c in plan.content.commitments:
            if (f.capability_area and c.capability_area != f.capability_area) or (
                f.product and c.product != f.product
            ):
                continue
            keys[f"{plan.id}/{c.key}"] = (plan, c)
            for year in years:
                if f.year and year != f.year:
                    continue
                entry = line(c.capability_area, c.product, c.unit, year)
                entry.committed += c.planned_in_year(year, plan.period_start, plan.period_end)
                entry.commitments += 1
                assert entry.nations is not None
                entry.nations.add(plan.nation)
    for target in await list_capability_targets(
        db, actor, capability_area=f.capability_area, product=f.product, year=f.year
    ):
        entry = line(target.capability_area, target.product, target.unit, target.year)
        entry.requirement = (entry.requirement or 0) + target.required_quantity
    if keys:
        # Summed in the database per commitment and year: one row each, however many months reported.
        year_of = func.extract("year", col(ProgressRow.month))
        query = (
            select(
                col(ProgressRow.plan_id),
                col(ProgressRow.commitment_key),
                year_of,
                func.sum(col(ProgressRow.actual_output)),
                func.max(col(ProgressRow.month)),
            )
            .where(col(ProgressRow.plan_id).in_({p.id for p, _ in keys.values()}))
            .group_by(col(ProgressRow.plan_id), col(ProgressRow.commitment_key), year_of)
        )
        async with db.sessions() as session:
            sums = (await session.execute(query)).all()
        for plan_id, commitment_key, year, actual, through in sums:
            found = keys.get(f"{plan_id}/{commitment_key}")
            hit = lines.get((found[1].product, int(year))) if found is not None else None
            if hit is None:
                continue
            hit.actual = (hit.actual or 0) + int(actual)
            if isinstance(through, str):  # SQLite hands back MAX() of a date as text
                through = date.fromisoformat(through)
            if hit.actual_through is None or through > hit.actual_through:
                hit.actual_through = through
    return sorted(lines.values(), key=lambda e: (e.capability_area, e.product, e.year))


@dataclass
class Dependency:
    input: str
    category: str
    commitments: int = 0
    single_sourced: int = 0
    by_country: dict[str, int] | None = None
    dependents: list[dict[str, str]] | None = None


async def capacity_dependencies(db: Database, actor: Actor, f: SummaryFilter) -> list[Dependency]:
    """Bottleneck inputs across the accepted plans the caller may see (supply-chain facts follow the
    whole plan's releasability, not the wider release of capacity figures)."""
    plans = [
        p
        for p in await _accepted_plans(db, actor, col(PlanRow.readers), f.nation)
        if p.visible_to(actor.nation, actor.roles)
    ]
    found: dict[str, Dependency] = {}
    for plan in sorted(plans, key=lambda p: p.id):
        for c in plan.content.commitments:
            if (f.capability_area and c.capability_area != f.capability_area) or (
                f.product and c.product != f.product
            ):
                continue
            for b in c.bottlenecks:
                dep = found.setdefault(b.input, Dependency(b.input, b.category, by_country={}, dependents=[]))
                assert dep.by_country is not None and dep.dependents is not None
                dep.commitments += 1
                dep.single_sourced += int(b.single_source)
                for country in b.source_countries:
                    dep.by_country[country] = dep.by_country.get(country, 0) + 1
                dep.dependents.append(
                    {"plan_id": plan.id, "nation": plan.nation, "commitment_key": c.key, "product": c.product}
                )
    return sorted(found.values(), key=lambda d: (-d.commitments, d.input))

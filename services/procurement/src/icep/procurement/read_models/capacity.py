"""National capacity, from the plans service's events: each accepted plan's capacity commitments (planned
output per year, by the ramp) and the shortfalls reported against them (one per commitment and month: a
later report replaces it), with who may see them; dropped when the plan is superseded or withdrawn and
re-marked when the owner releases it anew. An ended plan leaves a tombstone (`ended_plans`), so a
commitment or shortfall of it arriving late (a redriven dead letter, a replay under a new event id) is not
counted again. Demand against capacity counts only the rows a caller may read.

Every handler runs in the consumer's transaction with the inbox row (a duplicate is skipped), and applies
an event only if it is not older than what the read model holds (its aggregate `version`), so a replay or
a late copy never rolls a row back."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from icep.contracts import Releasability
from icep.contracts.plans import (
    CapacityCommitted,
    PlanReleased,
    PlanSuperseded,
    PlanWithdrawn,
    ShortfallDetected,
    planned_in_year,
)
from icep.contracts.releasability import encode_tokens, reader_tokens
from icep.platform import visibility
from icep.platform.events import ReceivedEvent, as_utc, utcnow
from icep.procurement.read_models.rows import (
    CapacityRow,
    EndedPlanRow,
    ShortfallRow,
)


def yearly_output(c: CapacityCommitted) -> dict[str, int]:
    """Planned output in each year of the plan's period, by the one shared reading of the ramp."""
    ramp = sorted((s.on, s.output_per_month) for s in c.ramp)
    return {
        str(year): planned_in_year(c.current_per_month, ramp, c.period_start, c.period_end, year)
        for year in range(c.period_start.year, c.period_end.year + 1)
    }


async def has_ended(session: AsyncSession, plan_id: str) -> bool:
    """The plan was superseded or withdrawn (both for good): nothing of it counts any more."""
    return await session.get(EndedPlanRow, plan_id) is not None


async def capacity_committed(session: AsyncSession, event: ReceivedEvent) -> None:
    c = event.payload(CapacityCommitted)
    if await has_ended(session, c.plan_id):
        return
    row = await session.get(CapacityRow, (c.plan_id, c.commitment_key), with_for_update=True)
    if row is not None and row.plan_version > c.version:
        return
    if row is None:
        row = CapacityRow(
            plan_id=c.plan_id,
            commitment_key=c.commitment_key,
            nation=c.nation,
            product=c.product,
            unit=c.unit,
            plan_version=c.version,
            releasable_to=event.releasable_to,
            updated_at=utcnow(),
        )
        session.add(row)
    release = Releasability.from_marking(event.nation or c.nation, event.releasable_to)
    row.nation = c.nation
    row.product = c.product
    row.unit = c.unit
    row.plan_version = c.version
    row.yearly = yearly_output(c)
    row.releasable_to = event.releasable_to
    row.readers = encode_tokens(reader_tokens(release))
    row.updated_at = utcnow()


async def shortfall_detected(session: AsyncSession, event: ReceivedEvent) -> None:
    """A month's output fell short of the ramp: kept per commitment and month, a later report replacing an
    earlier one (an older copy arriving late changes nothing)."""
    s = event.payload(ShortfallDetected)
    if await has_ended(session, s.plan_id):
        return
    month = s.month.replace(day=1)
    reported = as_utc(event.time)
    row = await session.get(ShortfallRow, (s.plan_id, s.commitment_key, month), with_for_update=True)
    if row is not None and (
        row.plan_version > s.version or (row.plan_version == s.version and as_utc(row.reported_at) > reported)
    ):
        return
    capacity = await session.get(CapacityRow, (s.plan_id, s.commitment_key))
    release = Releasability.from_marking(event.nation or s.nation, event.releasable_to)
    if row is None:
        row = ShortfallRow(
            plan_id=s.plan_id,
            commitment_key=s.commitment_key,
            month=month,
            nation=s.nation,
            product=s.product,
            planned_output=s.planned_output,
            actual_output=s.actual_output,
            shortfall=s.shortfall,
            plan_version=s.version,
            reported_at=reported,
            releasable_to=event.releasable_to,
            updated_at=utcnow(),
        )
        session.add(row)
    row.nation = s.nation
    row.product = s.product
    row.unit = capacity.unit if capacity is not None else row.unit
    row.planned_output = s.planned_output
    row.actual_output = s.actual_output
    row.shortfall = max(s.shortfall, 0)
    row.plan_version = s.version
    row.reported_at = reported
    row.releasable_to = event.releasable_to
    row.readers = encode_tokens(reader_tokens(release))
    row.updated_at = utcnow()


async def plan_ended(session: AsyncSession, event: ReceivedEvent) -> None:
    """Superseded or withdrawn: its commitments and shortfalls no longer count, and a tombstone keeps them
    from coming back with a late event."""
    model = PlanSuperseded if event.type == PlanSuperseded.event_type else PlanWithdrawn
    p = event.payload(model)
    tombstone = await session.get(EndedPlanRow, p.plan_id, with_for_update=True)
    if tombstone is None:
        session.add(EndedPlanRow(plan_id=p.plan_id, version=p.version, ended_at=as_utc(event.time)))
    elif tombstone.version < p.version:
        tombstone.version = p.version
    await session.execute(sa.delete(CapacityRow).where(col(CapacityRow.plan_id) == p.plan_id))
    await session.execute(sa.delete(ShortfallRow).where(col(ShortfallRow.plan_id) == p.plan_id))


async def plan_released(session: AsyncSession, event: ReceivedEvent) -> None:
    """The owner changed who may see the plan or its capacity: the figures go to the plan's readers and
    the capacity release, as the capacity events of the plan do."""
    p = event.payload(PlanReleased)
    # The plan's readers and the wider release of its capacity figures, as its capacity events are marked.
    release = visibility.union_of_markings(p.nation, p.releasable_to, p.capacity_releasable_to)
    for table in (CapacityRow, ShortfallRow):
        await session.execute(
            sa.update(table)
            .where(col(table.plan_id) == p.plan_id, col(table.plan_version) <= p.version)
            .values(
                releasable_to=release.marking(),
                readers=encode_tokens(reader_tokens(release)),
                plan_version=p.version,
                updated_at=utcnow(),
            )
        )

"""HTTP routes of progress reports: parse, authorize, call the use case, shape the answer."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from icep.plans.progress import use_cases
from icep.plans.progress.schemas import MonthProgressOut, ProgressHistoryOut, ProgressIn, ProgressOut
from icep.plans.settings import PlansSettings
from icep.platform.app import DatabaseDep, UnitOfWorkDep, runtime_of
from icep.platform.auth import ActorDep
from icep.platform.http import IfMatch, etag

#: Progress is reported on a plan's commitment: its routes sit under the plans' paths and tag.
router = APIRouter(prefix="/v1/plans", tags=["plans"])


@router.post(
    "/{plan_id}/commitments/{commitment_key}/progress",
    operation_id="reportProgress",
    summary="Report actual output of a month against a commitment of an accepted plan (If-Match: the "
    "plan's ETag, whose commitment the report is measured against)",
    description="The owner nation's planners report a month's actual output. Actuals belong to the plan's "
    "lineage (the plans of one nation for one period), so accepting a newer version keeps them. Reporting "
    "a month again corrects it: the answer's `revision` and `previous_output` say so, and the month's "
    "history (`GET` on the same path) keeps who corrected it, when, and the figure before. Each report "
    "publishes `icep.plans.progress.reported.v1` (with `previous_output` on a correction), and a shortfall "
    "beyond the configured threshold `icep.plans.shortfall.detected.v1`.",
)
async def report_progress(
    plan_id: str,
    commitment_key: str,
    body: ProgressIn,
    request: Request,
    uow: UnitOfWorkDep,
    response: Response,
    who: ActorDep,
    expected: IfMatch,
) -> ProgressOut:
    threshold = runtime_of(request).settings_as(PlansSettings).shortfall_threshold
    p = await use_cases.record_progress(
        uow,
        who,
        plan_id,
        commitment_key,
        body.month,
        body.actual_output,
        threshold,
        expected,
    )
    # A progress report does not change the plan: its ETag stays the one the next report names.
    response.headers["ETag"] = etag(p.plan.version)
    return ProgressOut.of(p)


@router.get(
    "/{plan_id}/commitments/{commitment_key}/progress",
    operation_id="listProgress",
    summary="The months reported on a commitment, each with its standing figure and its corrections",
    description="Every month reported on the commitment in the plan's lineage (any version of the plan "
    "may be named: actuals reported under an earlier version stay), oldest first. Each month gives the "
    "figure as it stands and who first reported it; each correction gives who made it, when, the figure "
    "before and the figure after. Actuals are capacity figures: readable by whoever may read the capacity "
    "figures of the named plan and of its lineage's accepted version (otherwise 404, as for a plan that "
    "does not exist).",
)
async def list_progress(
    plan_id: str, commitment_key: str, db: DatabaseDep, who: ActorDep
) -> ProgressHistoryOut:
    lineage, months = await use_cases.progress_history(db, who, plan_id, commitment_key)
    return ProgressHistoryOut(
        plan_id=plan_id,
        lineage=lineage,
        commitment_key=commitment_key,
        items=[MonthProgressOut.of(m) for m in months],
    )

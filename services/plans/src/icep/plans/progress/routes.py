"""HTTP routes of progress reports: parse, authorize, call the use case, shape the answer."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from icep.plans.progress import use_cases
from icep.plans.progress.schemas import MonthProgressOut, ProgressHistoryOut, ProgressIn, ProgressOut
from icep.plans.settings import PlansSettings
from icep.platform.app import DatabaseDep, UnitOfWorkDep, runtime_of
from icep.platform.auth import ActorDep
from icep.platform.http import IfMatch, etag
from icep.platform.openapi import from_body, links, merge_links

#: Progress is reported on a plan's commitment: its routes sit under the plans' paths and tag.
router = APIRouter(prefix="/v1/plans", tags=["plans"])


@router.post(
    "/{plan_id}/commitments/{commitment_key}/progress",
    operation_id="reportProgress",
    # The month's history (with this report, and any correction of it) and the plan measured against.
    openapi_extra=merge_links(
        links("listProgress", plan_id=from_body("plan_id"), commitment_key=from_body("commitment_key")),
        links("getPlan", plan_id=from_body("plan_id")),
    ),
    summary="Report a month's actual output against a commitment",
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
    """The owner's planners report the actual output of one month against a commitment of an accepted plan.
    The month must lie in the plan's period; it is measured against the output the commitment's ramp plans for
    that month. Actuals belong to the plan's lineage (the plans of one nation for one period), so accepting a
    newer version keeps them. Reporting a month again corrects it: the answer's `revision` and
    `previous_output` say so, and the month's history (`GET` on the same path) keeps who corrected it, when,
    and the figure before. `If-Match` names the plan's `ETag` (the version the report is measured against;
    428 without, 412 when stale); the answer's ETag is the plan's, unchanged. Raises
    `icep.plans.progress.reported.v1` (with `previous_output` on a correction) and, when the actual output is
    below the planned output by more than the shortfall threshold (`ICEP_PLANS_SHORTFALL_THRESHOLD`),
    `icep.plans.shortfall.detected.v1`; both are marked for the readers of the plan's capacity figures.

    Errors: 403 for another nation or without `planner`; 409 when the plan is not accepted; 422 for an unknown
    commitment, a negative figure or a month outside the period."""
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
    summary="A commitment's reported months, each with its standing figure and corrections",
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

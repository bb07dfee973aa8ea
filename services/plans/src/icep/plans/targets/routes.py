"""HTTP routes of capability targets: parse, authorize, call one use case, shape the answer."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from icep.plans.targets import repository, use_cases
from icep.plans.targets.model import CapabilityTarget
from icep.plans.targets.schemas import TargetIn, TargetList, TargetOut
from icep.platform.app import DatabaseDep, UnitOfWorkDep
from icep.platform.auth import ActorDep
from icep.platform.http import IfMatchCondition, etag, optional_if_match

router = APIRouter(prefix="/v1/capacity", tags=["capacity"])


def _target_out(t: CapabilityTarget) -> TargetOut:
    return TargetOut(
        id=t.id,
        capability_area=t.capability_area,
        product=t.product,
        year=t.year,
        required_quantity=t.required_quantity,
        unit=t.unit,
        set_by=t.set_by,
        set_at=t.set_at,
        version=t.version,
    )


@router.put(
    "/targets",
    operation_id="setCapabilityTarget",
    summary="Record the Alliance requirement for a product in a year (NATO)",
    responses={201: {"model": TargetOut, "description": "The target was new"}},
)
async def set_target(
    body: TargetIn,
    uow: UnitOfWorkDep,
    response: Response,
    who: ActorDep,
    expected: Annotated[IfMatchCondition, Depends(optional_if_match)],
) -> TargetOut:
    """NATO staff (nation `NATO`, role `reviewer` or `planner`) record the Alliance requirement (capability
    target) for a product in a year. Idempotent upsert keyed by product and year: 201 when new, 200 when it
    corrects an existing target, which needs `If-Match` with that target's `ETag` (428 without, 412 when
    stale). Targets are read by all Allies and NATO staff. Raises `icep.plans.capability_target.set.v1`,
    marked `ALLIES`.

    Errors: 403 for anyone but NATO staff."""
    target, created = await use_cases.set_capability_target(uow, who, **body.model_dump(), expected=expected)
    response.status_code = 201 if created else 200
    response.headers["ETag"] = etag(target.version)
    response.headers["Content-Location"] = f"/v1/capacity/targets/{target.id}"
    return _target_out(target)


@router.get("/targets/{target_id}", operation_id="getCapabilityTarget", summary="One capability target")
async def get_target(target_id: str, db: DatabaseDep, response: Response, who: ActorDep) -> TargetOut:
    """One capability target with its `ETag`. Targets are read by all Allies and NATO staff (partners get
    404)."""
    target = await repository.get_capability_target(db, who, target_id)
    response.headers["ETag"] = etag(target.version)
    return _target_out(target)


@router.get("/targets", operation_id="listCapabilityTargets", summary="Capability targets")
async def list_targets(
    db: DatabaseDep,
    who: ActorDep,
    capability_area: Annotated[str | None, Query(max_length=100)] = None,
    product: Annotated[str | None, Query(max_length=200)] = None,
    year: Annotated[int | None, Query(ge=2000, le=2100)] = None,
) -> TargetList:
    """The capability targets, narrowed by capability area, product or year. Read by all Allies and NATO
    staff; a partner gets an empty list."""
    targets = await repository.list_capability_targets(
        db, who, capability_area=capability_area, product=product, year=year
    )
    return TargetList(items=[_target_out(t) for t in targets])

"""HTTP routes of the read side: each nation's progress (under /v1/standards, before /{standard_id}, which
would otherwise match it) and the interoperability verdicts.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from icep.contracts.nations import ALLIES
from icep.platform.app import DatabaseDep
from icep.platform.auth import ActorDep
from icep.platform.domain import invalid
from icep.platform.events import utcnow
from icep.standards.answers.schemas import ReservationOut
from icep.standards.interoperability import use_cases
from icep.standards.interoperability.schemas import (
    InteroperabilityOut,
    NationProgressOut,
    PositionOut,
    ProgressOut,
    StandardInteroperabilityOut,
    pair_out,
)
from icep.standards.records import RESPONDING_NATIONS

progress_router = APIRouter(prefix="/v1/standards", tags=["standards"])
router = APIRouter(prefix="/v1/interoperability", tags=["interoperability"])


def nation_list(value: str | None, location: str, *, minimum: int = 1) -> list[str] | None:
    """`DEU,FRA,POL` -> the nations, each one that answers NATO standards."""
    if value is None:
        return None
    nations = list(dict.fromkeys(n.strip().upper() for n in value.split(",") if n.strip()))
    unknown = [n for n in nations if n not in RESPONDING_NATIONS]
    if unknown:
        raise invalid(location, f"not nations that answer NATO standards: {unknown}")
    if len(nations) < minimum:
        raise invalid(location, f"name at least {minimum} nation{'s' if minimum > 1 else ''}")
    return nations


NationsQuery = Annotated[str | None, Query(max_length=400, description="Comma-separated, e.g. DEU,FRA,POL")]


@progress_router.get(
    "/progress", operation_id="standardsProgress", summary="Per nation: ratified vs implemented vs pending"
)
async def standards_progress(db: DatabaseDep, who: ActorDep, nations: NationsQuery = None) -> ProgressOut:
    chosen = nation_list(nations, "query.nations") or sorted(ALLIES)
    found = await use_cases.progress(db, who, chosen)
    return ProgressOut(
        on=utcnow().date(),
        nations=[
            NationProgressOut(
                nation=p.nation,
                in_force=p.in_force,
                ratified=list(p.ratified),
                with_reservations=list(p.with_reservations),
                implemented=list(p.implemented),
                implementation_overdue=list(p.implementation_overdue),
                pending=list(p.pending),
                not_ratifying=list(p.not_ratifying),
                ratification_rate=round(p.ratification_rate, 4),
                implementation_rate=round(p.implementation_rate, 4),
            )
            for p in found
        ],
    )


@router.get(
    "", operation_id="interoperability", summary="Who ratified and implemented what, and a verdict per pair"
)
async def interoperability(
    db: DatabaseDep,
    who: ActorDep,
    nations: Annotated[str, Query(max_length=400, description="Comma-separated, e.g. DEU,FRA,POL")],
    standards: Annotated[
        str,
        Query(
            max_length=2000,
            description="Comma-separated standard ids or numbers (a number means its edition in force)",
        ),
    ],
) -> InteroperabilityOut:
    chosen = nation_list(nations, "query.nations", minimum=2) or []
    refs = list(dict.fromkeys(s.strip() for s in standards.split(",") if s.strip()))
    if not refs or len(refs) > 50:
        raise invalid("query.standards", "name between 1 and 50 standards")
    report = await use_cases.interoperability(db, who, nations=chosen, standards=refs)
    return InteroperabilityOut(
        on=utcnow().date(),
        standards=[
            StandardInteroperabilityOut(
                standard_id=s.standard_id,
                reference=s.reference,
                status=s.status.value,
                positions=[
                    PositionOut(
                        nation=p.nation,
                        status=p.status.value,
                        reservations=[ReservationOut.of(r) for r in p.reservations],
                        implemented_on=p.implemented_on,
                    )
                    for p in s.positions
                ],
                pairs=[pair_out(p) for p in s.pairs],
            )
            for s in report.standards
        ],
        pairs=[pair_out(p) for p in report.pairs],
    )

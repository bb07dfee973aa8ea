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
    "/progress",
    operation_id="standardsProgress",
    summary="Per nation: ratified, implemented and pending editions",
)
async def standards_progress(db: DatabaseDep, who: ActorDep, nations: NationsQuery = None) -> ProgressOut:
    """Per nation (default: every Ally), for the ministers' review: the promulgated editions released to it,
    and which it ratified (with reservations or not), implemented, has overdue (a forecast date passed without
    implementation), has not answered, or does not ratify, with the ratification and implementation rates.
    Superseded and cancelled editions are no longer counted."""
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
    "", operation_id="interoperability", summary="Interoperability verdicts between nations on standards"
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
    """For two or more nations and one or more standards (ids, or numbers meaning the edition in force): each
    nation's position on each edition, a verdict per pair of nations per edition, and per pair the worst
    verdict across the editions, with every reason.

    Verdicts, worst first: `not_interoperable`, `unknown`, `not_implemented`, `limited`, `interoperable`. Per
    edition and pair:
    - a cancelled edition: `not_interoperable`; one not promulgated yet (study, ratification draft):
      `unknown`;
    - otherwise each nation can only lower the verdict: one that does not ratify makes it `not_interoperable`;
      one that has not answered `unknown`; one that ratified but has not implemented (no implementation date,
      or a date after today) `not_implemented`; each reservation `limited`;
    - so a reservation gives `not_implemented` until both nations implemented, and `limited` after;
      `interoperable` needs both nations to have implemented without reservations. A superseded edition keeps
      its verdict, with a reason saying it is superseded.

    Only editions and answers the caller may read count. 422 for fewer than two nations, nations that do not
    answer NATO standards, or no (or more than 50) standards."""
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

"""What an initiative's changes publish: the contract payloads' common fields and the releasability of the
events that carry one nation's figures or the bids (the lead nation, that nation and NATO staff)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from icep.contracts import EventPayload, Releasability, ReleasabilityScope
from icep.contracts.nations import NATO
from icep.contracts.procurement import (
    DemandAggregated,
    InitiativeFlagged,
)
from icep.platform.domain import Actor
from icep.procurement.initiatives.model import Initiative
from icep.procurement.initiatives.parts import (
    Demand,
    InitiativeStatus,
)
from icep.procurement.settings import min_aggregate_participants

#: An event, published under the initiative's releasability, or under its own (one nation's figures).
Announcement = EventPayload | tuple[EventPayload, Releasability]


def initiative_fields(i: Initiative) -> dict[str, Any]:
    return {
        "initiative_id": i.id,
        "ocid": i.ocid,
        "lead_nation": i.lead_nation,
        "product": i.item.product,
        "status": i.status.value,
        "version": i.version,
    }


def year_keys(q: Mapping[int, int]) -> dict[str, int]:
    return {str(y): v for y, v in sorted(q.items())}


def _demand_figures(
    i: Initiative, d: Demand, release: Releasability, *, published: bool = False
) -> tuple[DemandAggregated, Releasability]:
    """The demand `d` of the initiative as an event released as `release`; a cancelled one's demand leaves
    the picture: zeros for every year it had."""
    if i.status is InitiativeStatus.CANCELLED:
        gone = dict.fromkeys(sorted(set(d.indicative) | set(d.firm) | set(d.funded)), 0)
        d = Demand(0, gone, gone, gone)
    event = DemandAggregated(
        **initiative_fields(i),
        unit=i.item.unit,
        participants=d.participants,
        indicative=year_keys(d.indicative),
        firm=year_keys(d.firm),
        funded=year_keys(d.funded),
        disclosure="published" if published else "full",
    )
    return event, release


def demand_release(i: Initiative) -> Releasability:
    """Who receives the aggregate as it stands: the lead nation and NATO staff (when the initiative is
    released to NATO staff), never the wider audience (disclosure control, `parts.Disclosure`)."""
    return lead_and(i, *((NATO,) if i.visible_to(NATO) else ()))


def demand_events(i: Initiative, *, published: bool = False) -> list[Announcement]:
    """The aggregate as it stands, to the lead nation and NATO staff; and, when `published` (the demand is
    settled: the tender is published, or a published demand leaves the picture at cancellation), the
    aggregate as published (`Initiative.demand_for(None, k)`) to every reader of the initiative."""
    out: list[Announcement] = [_demand_figures(i, i.demand, demand_release(i))]
    if published and i.demand_settled:
        shown = i.demand_for(None, min_aggregate_participants()).demand
        out.append(_demand_figures(i, shown, i.releasability, published=True))
    return out


def flag_event(i: Initiative, now: datetime) -> InitiativeFlagged:
    flag = i.flags[-1]
    return InitiativeFlagged(
        **initiative_fields(i),
        standard_number=flag.standard.number,
        standard_edition=flag.standard.edition,
        standard_status=flag.standard_status,
        reason=flag.reason,
        flagged_at=now,
    )


def lead_and(i: Initiative, *nations: str) -> Releasability:
    """Only the lead nation and `nations` (an event about one nation's quantities or the bids)."""
    others = tuple(n for n in dict.fromkeys(nations) if n != i.lead_nation)
    if not others:
        return Releasability(owner=i.lead_nation, scope=ReleasabilityScope.NATIONAL)
    return Releasability(owner=i.lead_nation, scope=ReleasabilityScope.NATIONS, nations=others)


def participant_release(i: Initiative, nation: str) -> Releasability:
    """Who reads one nation's participation (its quantities, its reason to withdraw), in the initiative's
    answer and in the events about it: the lead nation, that nation and NATO staff, when the initiative is
    released to NATO staff (an event never reaches who may not read the initiative)."""
    return lead_and(i, nation, *((NATO,) if i.visible_to(NATO) else ()))


def participation_fields(i: Initiative, nation: str, actor: Actor, now: datetime) -> dict[str, Any]:
    p = i.participation(nation)
    return {
        **initiative_fields(i),
        "nation": nation,
        "participation_status": p.status.value if p else "absent",
        "by": actor.id,
        "at": now,
    }

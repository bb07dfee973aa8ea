"""Who reads what of an initiative beyond the initiative itself, in plain Python: one nation's
participation, the aggregate demand as it stands, and the bids. Used alike for the initiative's answer
and for the marking of the events about it (`events.py`)."""

from __future__ import annotations

from icep.contracts import Releasability, ReleasabilityScope
from icep.contracts.nations import NATO
from icep.procurement.initiatives.model import Initiative


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


def demand_release(i: Initiative) -> Releasability:
    """Who receives the aggregate as it stands: the lead nation and NATO staff (when the initiative is
    released to NATO staff), never the wider audience (disclosure control, `parts.Disclosure`)."""
    return lead_and(i, *((NATO,) if i.visible_to(NATO) else ()))

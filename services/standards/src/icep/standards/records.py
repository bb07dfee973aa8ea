"""What every record of the standards service shares, in plain Python: the history of its changes, who
may read it, and the roles and nations the rules speak of.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from icep.contracts import Releasability, ReleasabilityScope
from icep.contracts.nations import ALLIES, NATO, PARTNERS
from icep.platform import visibility
from icep.platform.domain import invalid

STANDARDS_ROLE = "standards"
#: Nations that answer standards: Allies and partners (the EU is an organisation and does not ratify).
RESPONDING_NATIONS: frozenset[str] = ALLIES | (PARTNERS - {"EU"})


@dataclass(frozen=True)
class Change:
    """One entry of a record's history: nothing is overwritten silently."""

    action: str
    status: str
    by: str
    at: datetime
    note: str = ""


def including(r: Releasability, *nations: str) -> Releasability:
    """`r` widened so that `nations` may also read (NATO staff assess every claim; a clearance's nations
    see it). Allies already include NATO staff."""
    missing = [n for n in dict.fromkeys(nations) if not r.allows(n)]
    if not missing:
        return r
    match r.scope:
        case ReleasabilityScope.NATIONAL:
            return Releasability(owner=r.owner, scope=ReleasabilityScope.NATIONS, nations=tuple(missing))
        case ReleasabilityScope.NATIONS:
            return Releasability(
                owner=r.owner, scope=ReleasabilityScope.NATIONS, nations=(*r.nations, *missing)
            )
        case _:
            partners = tuple(n for n in missing if n not in ALLIES and n != NATO)
            return Releasability(
                owner=r.owner, scope=ReleasabilityScope.ALLIES_PARTNERS, nations=(*r.nations, *partners)
            )


def readers(r: Releasability) -> frozenset[str]:
    """Who may read a record released as `r`: a standard, a national answer (`NationalResponse.
    releasability_for`), a claim or a clearance (their `release`). Its events are marked with the same
    releasability, so readers and recipients are one set (`icep.platform.visibility`)."""
    return visibility.readers_of(r)


def may_read(r: Releasability, nation: str) -> bool:
    return visibility.may_read(readers(r), nation)


def owned(r: Releasability | None, owner: str, *readers: str) -> Releasability:
    """The release of a new record owned by `owner` (all Allies unless said), widened to `readers`."""
    r = r or Releasability(owner=owner, scope=ReleasabilityScope.ALLIES)
    if r.owner != owner:
        raise invalid("body.releasability", f"the record belongs to {owner}")
    return including(r, *readers)


# --- how a record's history and releasability are stored (JSON columns) -----------------------------------


def history_json(history: Sequence[Change]) -> list[list[str]]:
    return [[c.action, c.status, c.by, c.at.isoformat(), c.note] for c in history]


def history_of(rows: Sequence[Sequence[str]]) -> tuple[Change, ...]:
    return tuple(Change(a, s, by, datetime.fromisoformat(at), note) for a, s, by, at, note in rows)


def release_of(owner: str, scope: str, nations: Sequence[str]) -> Releasability:
    return Releasability(owner=owner, scope=ReleasabilityScope(scope), nations=tuple(nations))

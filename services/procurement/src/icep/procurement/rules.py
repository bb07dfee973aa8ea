"""Rules every procurement aggregate shares, in plain Python: who counts as procurement staff, who may read a
record released as it is (`icep.platform.visibility`), quantities per year, and the entry a change leaves in
a record's history."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from icep.contracts import Releasability
from icep.contracts.releasability import ALLIES_TOKEN, nation_tokens, reader_tokens
from icep.platform import visibility
from icep.platform.domain import Actor, invalid
from icep.platform.errors import Forbidden

PROCUREMENT_ROLE = "procurement"
OCID_PREFIX = "ocds-icep01"
#: Years a quantity may be given for.
YEARS = (2024, 2050)
MAX_QUANTITY = 1_000_000_000


@dataclass(frozen=True)
class Change:
    action: str
    status: str
    by: str
    at: datetime
    note: str = ""


def readers(r: Releasability) -> frozenset[str]:
    """Who may read a record released as `r` (an initiative, supplier or demand signal): the one rule for
    reads, lists and the marking of its events (`icep.platform.visibility`)."""
    return visibility.readers_of(r)


def may_read(r: Releasability, nation: str) -> bool:
    return visibility.may_read(readers(r), nation)


def readers_missing(record: Releasability, wider: Releasability) -> list[str]:
    """The readers of what is released as `wider` who may not read `record`: `ALLIES` when `wider` is
    released to every Ally and `record` is not, and each nation (or NATO) among `wider`'s readers that
    `record` does not reach. Empty when everyone who may read the one may read the other."""
    have = reader_tokens(record)
    return sorted(
        token
        for token in reader_tokens(wider)
        if (token not in have if token == ALLIES_TOKEN else have.isdisjoint(nation_tokens(token)))
    )


def check_procurement_staff(actor: Actor) -> None:
    if PROCUREMENT_ROLE not in actor.roles:
        raise Forbidden("only procurement staff may do this")


def check_quantities(quantities: Mapping[int, int], location: str) -> dict[int, int]:
    """Quantities per year: years within range, quantities from 0; zero entries dropped."""
    for year, quantity in quantities.items():
        if not YEARS[0] <= year <= YEARS[1]:
            raise invalid(location, f"years run from {YEARS[0]} to {YEARS[1]}, not {year}")
        if not 0 <= quantity <= MAX_QUANTITY:
            raise invalid(location, f"a quantity is between 0 and {MAX_QUANTITY}")
    return {y: q for y, q in sorted(quantities.items()) if q}

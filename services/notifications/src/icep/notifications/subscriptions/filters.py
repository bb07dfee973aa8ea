"""What a subscription (and a feed or stream request) asks for: event type patterns, owning nations,
capability areas and products, and the entitlement every filter only narrows."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from icep.contracts import Releasability
from icep.contracts.nations import ALLIES, NATO, PARTNERS
from icep.platform.errors import Unprocessable


def validate_event_patterns(patterns: list[str]) -> list[str]:
    """Patterns like `icep.plans.*` or an exact type; `*` matches within and across dots."""
    clean = []
    for raw in patterns:
        p = raw.strip()
        if not p or not all(c.isalnum() or c in "._*-" for c in p):
            raise Unprocessable(f"{p!r} is not an event type pattern", field="event_types")
        clean.append(p)
    return clean or ["*"]


def matches(patterns: list[str], event_type: str) -> bool:
    return any(fnmatchcase(event_type, p) for p in patterns)


def entitled(subscriber_nation: str, releasability: Releasability) -> bool:
    """A subscriber gets an event only when its nation may see what the event describes."""
    return releasability.allows(subscriber_nation)


#: Nation codes a `nations` filter may name: the Allies, the partners and NATO staff.
KNOWN_NATIONS: frozenset[str] = ALLIES | PARTNERS | {NATO}


def validate_nations(nations: Sequence[str]) -> list[str]:
    """A `nations` filter: the owning nations (the event's `nation`) a subscriber wants; empty means any.
    It only narrows what the subscriber is entitled to see, so any known nation may be named."""
    clean: list[str] = []
    for n in nations:
        code = n.strip().upper()
        if code not in KNOWN_NATIONS:
            raise Unprocessable(f"{n!r} is not a known nation code", field="nations")
        if code not in clean:
            clean.append(code)
    return clean


def _term_key(term: str) -> str:
    """Capability areas and products are free text: compared without case and extra spaces."""
    return " ".join(term.split()).casefold()


def validate_terms(values: Sequence[str], field: str) -> list[str]:
    """A capability area or product filter: trimmed, without duplicates; empty means any."""
    clean: list[str] = []
    seen: set[str] = set()
    for v in values:
        term = " ".join(v.split())
        if not term or len(term) > 200 or not term.isprintable():
            raise Unprocessable(f"{v!r} is not a valid {field} entry", field=field)
        if _term_key(term) not in seen:
            seen.add(_term_key(term))
            clean.append(term)
    return clean


def _data_values(data: Mapping[str, Any], singular: str, plural: str) -> set[str] | None:
    """The values an event's data has for a filtered field (`product` or a `products` list), or None
    when it has neither field."""
    found: set[str] = set()
    present = False
    one = data.get(singular)
    if isinstance(one, str):
        present = True
        found.add(_term_key(one))
    many = data.get(plural)
    if isinstance(many, list):
        present = True
        found.update(_term_key(v) for v in many if isinstance(v, str))
    return found if present else None


@dataclass(frozen=True)
class SubscriptionFilters:
    """What a subscriber asked for. Every non-empty filter must pass; entitlement is checked apart."""

    event_types: tuple[str, ...] = ("*",)
    nations: tuple[str, ...] = ()
    capability_areas: tuple[str, ...] = ()
    products: tuple[str, ...] = ()

    def accepts(self, event_type: str, nation: str, data: Mapping[str, Any]) -> bool:
        """The type matches a pattern, the owning nation is one of `nations`, and the data's
        `capability_area`/`capability_areas` and `product`/`products` meet the filters. An event whose
        data has no such field does not pass a filter on it."""
        if not matches(list(self.event_types), event_type):
            return False
        if self.nations and nation not in self.nations:
            return False
        for wanted, singular, plural in (
            (self.capability_areas, "capability_area", "capability_areas"),
            (self.products, "product", "products"),
        ):
            if not wanted:
                continue
            values = _data_values(data, singular, plural)
            if values is None or values.isdisjoint(_term_key(w) for w in wanted):
                return False
        return True


def term_keys(values: Sequence[str]) -> list[str]:
    """Capability areas or products as the filters compare them (the feed narrows in SQL with these)."""
    return sorted({_term_key(v) for v in values})


def event_terms(data: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """The capability areas and the products an event's data names, as `term_keys` gives them."""
    areas = _data_values(data, "capability_area", "capability_areas") or set()
    products = _data_values(data, "product", "products") or set()
    return sorted(areas), sorted(products)

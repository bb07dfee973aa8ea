"""One visibility rule for reads, lists, aggregates and events, shared by every service.

Who may read a record is a set of reader tokens: nation codes (the owner, selected nations, named
partners), `NATO` (NATO staff) and `ALLIES` (every Ally, and NATO staff). A caller of a nation holds the
tokens `nation_tokens(nation)`; it may read a record when the two sets meet. Each aggregate has one
function that gives its readers (e.g. `NationalPlan.readers()`); services use it for

- reads and lists (`may_read`, and `readable_by` to filter in SQL on the stored `encode`d readers), and
- the `releasableto` marking of the aggregate's events (`releasability_of`), which notifications checks
  for webhooks, the feed and the stream with the same rule (`Releasability.allows`).

So the nations that read an aggregate are exactly the nations told of its changes, unless an event's
contract declares otherwise (`EventPayload.audience`, see `icep.contracts.base`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

from icep.contracts.nations import ALLIES, NATO
from icep.contracts.releasability import (
    ALLIES_TOKEN,
    Releasability,
    ReleasabilityScope,
    encode_tokens,
    nation_tokens,
    reader_tokens,
)

__all__ = [
    "ALLIES_TOKEN",
    "Readers",
    "encode",
    "may_read",
    "nation_tokens",
    "readable_by",
    "readers_of",
    "releasability_of",
    "union",
    "union_of_markings",
]

#: Reader tokens: nation codes, `NATO` and `ALLIES`.
Readers = frozenset[str]


def readers_of(r: Releasability) -> Readers:
    """Who may read a record released as `r` (its owner always)."""
    return reader_tokens(r)


def may_read(readers: Iterable[str], nation: str) -> bool:
    """A caller of `nation` may read a record whose readers are `readers`."""
    return not nation_tokens(nation).isdisjoint(readers)


def releasability_of(owner: str, readers: Iterable[str]) -> Releasability:
    """The releasability (and so the `releasableto` marking) that reaches exactly `readers` and `owner`:
    `ALLIES` takes in every Ally and NATO staff, the nations beyond them are named partners."""
    tokens = set(readers) | {owner}
    if ALLIES_TOKEN in tokens:
        partners = tuple(t for t in tokens if t not in ALLIES and t not in (NATO, ALLIES_TOKEN, owner))
        scope = ReleasabilityScope.ALLIES_PARTNERS if partners else ReleasabilityScope.ALLIES
        return Releasability(owner=owner, scope=scope, nations=partners)
    others = tuple(t for t in tokens if t != owner)
    if others:
        return Releasability(owner=owner, scope=ReleasabilityScope.NATIONS, nations=others)
    return Releasability(owner=owner)


def union(owner: str, *releases: Releasability) -> Releasability:
    """Everyone any of `releases` reaches (e.g. a plan's readers and the wider release of its figures)."""
    tokens: set[str] = set()
    for r in releases:
        tokens |= readers_of(r)
    return releasability_of(owner, tokens)


def union_of_markings(owner: str, *markings: str) -> Releasability:
    """`union` of `releasableto` markings of one owner's events."""
    return union(owner, *(Releasability.from_marking(owner, m) for m in markings))


def encode(readers: Iterable[str]) -> str:
    """Readers as stored next to a record: `,ALLIES,DEU,` (see `readable_by`)."""
    return encode_tokens(frozenset(readers))


def readable_by(column: Any, nation: str) -> Any:
    """SQL: the `encode`d readers in `column` share a token with a caller of `nation` (tokens hold no
    LIKE wildcards)."""
    return sa.or_(*(column.like(f"%,{token},%") for token in sorted(nation_tokens(nation))))

"""Suppliers and supply-chain screening, in plain Python: a match against the restricted countries and
parties (or another nation's block on the same organisation) is a *potential* match that a named person
adjudicates, cleared with a mitigation or blocked; the machine never decides alone."""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from functools import cached_property

from icep.contracts import Releasability, ReleasabilityScope
from icep.contracts.nations import NATO, PARTNERS
from icep.platform.domain import Actor, Aggregate, DomainEvent, invalid
from icep.platform.errors import Forbidden, IllegalTransition
from icep.procurement.rules import (
    PROCUREMENT_ROLE,
    Change,
    check_procurement_staff,
    readers_missing,
)


class Scale(StrEnum):
    MICRO = "micro"
    SME = "sme"
    LARGE = "large"


class Screening(StrEnum):
    PENDING = "pending"
    CLEAR = "clear"
    POTENTIAL_MATCH = "potential_match"
    CLEARED = "cleared"
    BLOCKED = "blocked"


def name_key(name: str) -> str:
    """A name as screening compares it: Unicode compatibility forms folded (NFKC, so full-width letters,
    ligatures and non-breaking spaces are the plain ones), invisible format characters (zero-width spaces
    and joiners, soft hyphens) dropped, whitespace trimmed and collapsed to one space, case folded."""
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())
    visible = "".join(c for c in folded if unicodedata.category(c) != "Cf")
    return " ".join(visible.split())


@dataclass(frozen=True)
class Owner:
    name: str
    country: str
    share_percent: float


@dataclass(frozen=True)
class ScreeningLists:
    """Restricted countries and parties, as configured; `version` changes whenever they do."""

    countries: frozenset[str]
    parties: frozenset[str]

    @cached_property
    def party_keys(self) -> frozenset[str]:
        """The restricted parties' names as compared (`name_key`)."""
        return frozenset(k for k in map(name_key, self.parties) if k)

    @property
    def version(self) -> str:
        text = "|".join(sorted(self.countries)) + "#" + "|".join(sorted(self.party_keys))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def organisation_key(organisation_id: str) -> str:
    """An organisation id as it is compared: registries write the same id in either case (`ACME-1`,
    `acme-1`), so a block, a duplicate registration or a filter on one is one on the other."""
    return organisation_id.strip().casefold()


@dataclass(frozen=True, kw_only=True)
class Registered(DomainEvent):
    by: str


@dataclass(frozen=True, kw_only=True)
class Screened(DomainEvent):
    """Screened with a new outcome or new matches (the supplier's `screening` and `matches`)."""

    #: A potential match a person has not seen yet: it became one, or a new match joined those already
    #: waiting for adjudication.
    for_adjudication: bool


@dataclass(frozen=True, kw_only=True)
class Cleared(DomainEvent):
    """A named person cleared a potential match (the supplier's `adjudicator` and `mitigation`)."""


@dataclass(frozen=True, kw_only=True)
class Blocked(DomainEvent):
    """A named person blocked the supplier (the supplier's `adjudicator` and `blocked_reason`)."""


@dataclass(frozen=True, kw_only=True)
class Supplier(Aggregate):
    id: str
    organisation_id: str
    name: str
    scale: Scale
    country_of_incorporation: str
    ultimate_parent: str | None
    ultimate_parent_country: str | None
    ownership_chain: tuple[Owner, ...]
    products: tuple[str, ...]
    nation: str  # who registered it
    releasability: Releasability
    screening: Screening
    matches: tuple[str, ...]
    lists_version: str | None
    version: int
    history: tuple[Change, ...]
    mitigation: str | None = None
    adjudicator: str | None = None
    blocked_reason: str | None = None
    #: The matches a person adjudicated when clearing: a re-screening finding only these stays cleared.
    adjudicated: tuple[str, ...] = ()

    @property
    def organisation_key(self) -> str:
        return organisation_key(self.organisation_id)

    @classmethod
    def register(
        cls,
        *,
        id: str,
        actor: Actor,
        organisation_id: str,
        name: str,
        scale: Scale,
        country_of_incorporation: str,
        now: datetime,
        ultimate_parent: str | None = None,
        ultimate_parent_country: str | None = None,
        ownership_chain: Sequence[Owner] = (),
        products: Sequence[str] = (),
        releasability: Releasability | None = None,
    ) -> Supplier:
        check_procurement_staff(actor)
        if not organisation_id.strip() or not name.strip():
            raise invalid("body.name", "a supplier has an organisation id and a name")
        owners = tuple(replace(o, name=o.name.strip()) for o in ownership_chain)
        for i, o in enumerate(owners):
            if not o.name:
                raise invalid(f"body.ownership_chain.{i}.name", "an owner has a name")
            if not 0 < o.share_percent <= 100:
                raise invalid(f"body.ownership_chain.{i}.share_percent", "a share is above 0 and at most 100")
        total = sum(o.share_percent for o in owners)
        if total > 100 + 1e-9:
            raise invalid(
                "body.ownership_chain", f"the owners' shares add up to {total:g} %, more than 100 %"
            )
        if ultimate_parent is not None:
            ultimate_parent = ultimate_parent.strip()
            if not ultimate_parent:
                raise invalid("body.ultimate_parent", "an ultimate parent has a name")
        if (ultimate_parent is None) != (ultimate_parent_country is None):
            raise invalid("body.ultimate_parent_country", "an ultimate parent comes with its country")
        release = releasability or Releasability(owner=actor.nation, scope=ReleasabilityScope.ALLIES)
        if release.owner != actor.nation:
            raise invalid("body.releasability", f"the record belongs to {actor.nation}")
        return cls(
            id=id,
            organisation_id=organisation_id.strip(),
            name=name.strip(),
            scale=scale,
            country_of_incorporation=country_of_incorporation,
            ultimate_parent=ultimate_parent,
            ultimate_parent_country=ultimate_parent_country,
            ownership_chain=owners,
            products=tuple(dict.fromkeys(p.strip() for p in products if p.strip())),
            nation=actor.nation,
            releasability=release,
            screening=Screening.PENDING,
            matches=(),
            lists_version=None,
            version=1,
            history=(Change("registered", Screening.PENDING.value, actor.id, now),),
        ).recorded(Registered(by=actor.id, at=now))

    def find_matches(self, lists: ScreeningLists, blocked_elsewhere: Sequence[str] = ()) -> tuple[str, ...]:
        """Every reason the supplier may be under hostile influence, by the lists: where it is incorporated,
        who ultimately controls it, who owns it, and whether any of them is a restricted party (names
        compared as `name_key` makes them); and every nation that blocked the same organisation
        (`blocked_elsewhere`: what the service found on other supplier records)."""
        found: list[str] = []
        if self.country_of_incorporation in lists.countries:
            found.append(f"incorporated in {self.country_of_incorporation}")
        if self.ultimate_parent_country in lists.countries:
            found.append(f"ultimate parent {self.ultimate_parent} in {self.ultimate_parent_country}")
        for o in self.ownership_chain:
            if o.country in lists.countries:
                found.append(f"owner {o.name} ({o.share_percent:g} %) in {o.country}")
        for who in (self.name, self.ultimate_parent, *(o.name for o in self.ownership_chain)):
            if who and name_key(who) in lists.party_keys:
                found.append(f"{who} is a restricted party")
        for nation in sorted(set(blocked_elsewhere)):
            found.append(f"organisation {self.organisation_id} is blocked by {nation}")
        return tuple(dict.fromkeys(found))

    def screen(self, lists: ScreeningLists, now: datetime, blocked_elsewhere: Sequence[str] = ()) -> Supplier:
        """Screen against the lists in force and the blocks other nations put on the same organisation. No
        match: clear. A match: a potential match for a person to adjudicate, unless a person already
        cleared exactly these matches. A block stands."""
        matches = self.find_matches(lists, blocked_elsewhere)
        if self.screening is Screening.BLOCKED:
            status = Screening.BLOCKED
        elif not matches:
            status = Screening.CLEAR
        elif self.screening is Screening.CLEARED and set(matches) <= set(self.adjudicated):
            status = Screening.CLEARED
        else:
            status = Screening.POTENTIAL_MATCH
        unseen = status is Screening.POTENTIAL_MATCH and (
            self.screening is not Screening.POTENTIAL_MATCH or not set(matches) <= set(self.matches)
        )
        return self.recorded(
            Screened(at=now, for_adjudication=unseen),
            screening=status,
            matches=matches,
            lists_version=lists.version,
            version=self.version + 1,
            history=(*self.history, Change("screened", status.value, "screening", now, "; ".join(matches))),
        )

    def screen_again(
        self, lists: ScreeningLists, now: datetime, blocked_elsewhere: Sequence[str] = ()
    ) -> Supplier:
        """Screened again (`screen`): only a changed outcome or changed matches is a new screening (a new
        version, recorded); otherwise only the lists' version is noted, so it is not due again."""
        after = self.screen(lists, now, blocked_elsewhere)
        if after.screening is self.screening and after.matches == self.matches:
            return replace(self, lists_version=after.lists_version)
        return after

    def _adjudicator(self, actor: Actor, person: str) -> str:
        """Who adjudicates, as recorded: the named person, with the client they act through. Only the
        registering Ally's or NATO's procurement staff adjudicate (a partner does not, even for a supplier
        it registered), and only a potential match."""
        allowed = (NATO,) if self.nation in PARTNERS else (self.nation, NATO)
        if PROCUREMENT_ROLE not in actor.roles or actor.nation not in allowed:
            whose = "NATO's" if self.nation in PARTNERS else f"{self.nation}'s or NATO's"
            raise Forbidden(f"only {whose} procurement staff adjudicate this supplier")
        if self.screening is not Screening.POTENTIAL_MATCH:
            raise IllegalTransition("supplier", "adjudicate", self.screening.value)
        name = " ".join(person.split())
        if not name:
            raise invalid("body.adjudicator", "a named person adjudicates: give their name")
        return f"{name} ({actor.id})"

    def clear(self, actor: Actor, mitigation: str, now: datetime, *, adjudicator: str) -> Supplier:
        """A named person (`adjudicator`) clears a potential match, with the mitigation that makes it
        acceptable."""
        who = self._adjudicator(actor, adjudicator)
        if not mitigation.strip():
            raise invalid("body.mitigation", "clearing a potential match records its mitigation")
        return self.recorded(
            Cleared(at=now),
            screening=Screening.CLEARED,
            mitigation=mitigation.strip(),
            adjudicator=who,
            adjudicated=self.matches,
            version=self.version + 1,
            history=(
                *self.history,
                Change("cleared", Screening.CLEARED.value, who, now, mitigation.strip()),
            ),
        )

    def block(self, actor: Actor, reason: str, now: datetime, *, adjudicator: str) -> Supplier:
        """A named person (`adjudicator`) blocks a supplier on a potential match, saying why."""
        who = self._adjudicator(actor, adjudicator)
        if not reason.strip():
            raise invalid("body.reason", "blocking a supplier says why")
        return self.recorded(
            Blocked(at=now),
            screening=Screening.BLOCKED,
            blocked_reason=reason.strip(),
            adjudicator=who,
            version=self.version + 1,
            history=(
                *self.history,
                Change("blocked", Screening.BLOCKED.value, who, now, reason.strip()),
            ),
        )

    @property
    def awardable(self) -> bool:
        return self.screening in (Screening.CLEAR, Screening.CLEARED)


def blocked_elsewhere(s: Supplier, blocks: Iterable[Supplier]) -> list[str]:
    """Who blocked `s`'s organisation on another record, for `s`'s screening: the nation, or "another
    nation" when that record is not released to everyone who may read `s`'s (a match never tells a reader
    more than they may read)."""
    return [
        b.nation if not readers_missing(b.releasability, s.releasability) else "another nation"
        for b in blocks
        if b.id != s.id
    ]

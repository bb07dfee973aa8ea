"""Releasability: who may see a record or an event (after STANAG 4774's "REL TO" marking)."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from icep.contracts.nations import ALLIES, NATO, PARTNERS, NationCode

ALL_ALLIES = "ALLIES"


class ReleasabilityScope(StrEnum):
    NATIONAL = "national"
    NATIONS = "nations"
    ALLIES = "allies"
    ALLIES_PARTNERS = "allies_partners"


class Releasability(BaseModel):
    """The owner always sees its own; `nations` are the selected nations, or the named partners."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    owner: str = Field(examples=["DEU"])
    scope: ReleasabilityScope = ReleasabilityScope.NATIONAL
    nations: tuple[str, ...] = ()

    @field_validator("owner")
    @classmethod
    def _known_owner(cls, v: str) -> str:
        if v not in ALLIES and v not in PARTNERS and v != NATO:
            raise ValueError(f"unknown nation {v!r}")
        return v

    @field_validator("nations")
    @classmethod
    def _known_nations(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [n for n in v if n not in ALLIES and n not in PARTNERS and n != NATO]
        if unknown:
            raise ValueError(f"unknown nations {unknown}")
        return tuple(sorted(set(v)))

    def allows(self, nation: str) -> bool:
        if nation == self.owner:
            return True
        match self.scope:
            case ReleasabilityScope.NATIONAL:
                return False
            case ReleasabilityScope.NATIONS:
                return nation in self.nations
            case ReleasabilityScope.ALLIES:
                return nation in ALLIES or nation == NATO
            case ReleasabilityScope.ALLIES_PARTNERS:
                return nation in ALLIES or nation == NATO or nation in self.nations

    def marking(self) -> str:
        """The `releasableto` CloudEvent extension: `DEU`, `DEU,FRA,NATO`, `ALLIES`, `ALLIES,AUS,JPN`.

        `NATO` here is NATO staff as a selected recipient; `ALLIES` is every Ally (and NATO staff).
        """
        match self.scope:
            case ReleasabilityScope.NATIONAL:
                tokens = [self.owner]
            case ReleasabilityScope.NATIONS:
                tokens = [self.owner, *self.nations]
            case ReleasabilityScope.ALLIES:
                tokens = [ALL_ALLIES]
            case ReleasabilityScope.ALLIES_PARTNERS:
                tokens = [ALL_ALLIES, *self.nations]
        return ",".join(dict.fromkeys(tokens))

    @classmethod
    def from_marking(cls, owner: str, marking: str) -> Releasability:
        tokens = [t.strip() for t in marking.split(",") if t.strip()]
        if ALL_ALLIES in tokens:
            partners = tuple(t for t in tokens if t != ALL_ALLIES)
            scope = ReleasabilityScope.ALLIES_PARTNERS if partners else ReleasabilityScope.ALLIES
            return cls(owner=owner, scope=scope, nations=partners)
        others = tuple(t for t in tokens if t != owner)
        if others:
            return cls(owner=owner, scope=ReleasabilityScope.NATIONS, nations=others)
        return cls(owner=owner)


# --- reader tokens: one visibility rule for reads, lists, aggregates and events in every service -------

#: A record's readers and a caller's tokens are sets of: nation codes, and ALLIES (every Ally and NATO
#: staff). A caller may see a record when the two sets meet; services store the readers encoded (see
#: `encode_tokens`) so lists and aggregates filter in SQL with the same rule.
ALLIES_TOKEN = ALL_ALLIES


def reader_tokens(r: Releasability) -> frozenset[str]:
    """Who may read a record released as `r`."""
    tokens = {r.owner}
    match r.scope:
        case ReleasabilityScope.NATIONAL:
            pass
        case ReleasabilityScope.NATIONS:
            tokens.update(r.nations)
        case ReleasabilityScope.ALLIES:
            tokens.add(ALLIES_TOKEN)
        case ReleasabilityScope.ALLIES_PARTNERS:
            tokens.add(ALLIES_TOKEN)
            tokens.update(r.nations)
    return frozenset(tokens)


def nation_tokens(nation: str) -> frozenset[str]:
    """The reader tokens a caller of `nation` holds."""
    if nation in ALLIES or nation == NATO:
        return frozenset({nation, ALLIES_TOKEN})
    return frozenset({nation})


def encode_tokens(tokens: frozenset[str]) -> str:
    """`,ALLIES,DEU,` -- so `LIKE '%,DEU,%'` finds a token in SQL (tokens hold no LIKE wildcards)."""
    return "," + ",".join(sorted(tokens)) + ","


# --- the same in an API: what a caller sends and reads (the owner is the caller, or the record's) -------


class ReleasabilityIn(BaseModel):
    """Who may see a new record, as a caller gives it; all Allies unless said."""

    model_config = ConfigDict(extra="forbid")

    scope: ReleasabilityScope = ReleasabilityScope.ALLIES
    nations: list[NationCode] = Field(
        default=[],
        max_length=40,
        description="With `nations`: the nations; with `allies_partners`: the partners",
    )

    @model_validator(mode="after")
    def _nations_fit_the_scope(self) -> ReleasabilityIn:
        if self.nations and self.scope not in (
            ReleasabilityScope.NATIONS,
            ReleasabilityScope.ALLIES_PARTNERS,
        ):
            raise ValueError(f"a releasability of scope {self.scope.value} names no nations")
        return self

    def owned_by(self, owner: str) -> Releasability:
        return Releasability(owner=owner, scope=self.scope, nations=tuple(self.nations))


class ReleasabilityOut(BaseModel):
    owner: str
    scope: ReleasabilityScope
    nations: list[str]
    marking: str = Field(
        description="As the `releasableto` event extension: `ALLIES`, `ALLIES,UKR`, `DEU,NATO`"
    )

    @classmethod
    def of(cls, r: Releasability) -> ReleasabilityOut:
        return cls(owner=r.owner, scope=r.scope, nations=list(r.nations), marking=r.marking())

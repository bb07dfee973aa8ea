"""Releasability: who may see a record or an event (after STANAG 4774's "REL TO" marking)."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator

from icep.contracts.nations import ALLIES, NATO, PARTNERS

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

"""Request and response bodies of the catalogue."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from icep.contracts.releasability import ReleasabilityIn, ReleasabilityOut
from icep.standards.schemas import ChangeOut, In, Text
from icep.standards.standards.model import Standard, StandardKind, StandardStatus


class StandardCreate(In):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "kind": "STANAG",
                    "number": "4569",
                    "edition": 3,
                    "title": "Protection levels for occupants of logistic and light armoured vehicles",
                    "covering_publications": ["AEP-55"],
                    "domain": "land",
                    "capability_areas": ["protection"],
                    "levels": ["1", "2", "3", "4", "5", "6"],
                }
            ]
        },
    )

    kind: StandardKind
    number: str = Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9][A-Za-z0-9 .\-/]*$")
    edition: int = Field(ge=1, le=999)
    title: str = Field(min_length=1, max_length=400)
    covering_publications: list[Text] = Field(default=[], max_length=30)
    domain: str = Field(min_length=1, max_length=100, examples=["land", "air", "joint"])
    capability_areas: list[Text] = Field(default=[], max_length=20)
    levels: list[Annotated[str, Field(min_length=1, max_length=40)]] = Field(default=[], max_length=20)
    supersedes: str | None = Field(default=None, max_length=36, description="Id of the edition it replaces")
    releasability: ReleasabilityIn = Field(
        default_factory=ReleasabilityIn,
        json_schema_extra={"default": ReleasabilityIn().model_dump(mode="json")},
    )


class StandardOut(BaseModel):
    id: str
    kind: StandardKind
    number: str
    edition: int
    reference: str = Field(examples=["STANAG 4569 Ed. 3"])
    title: str
    covering_publications: list[str]
    domain: str
    capability_areas: list[str]
    levels: list[str]
    status: StandardStatus
    supersedes: str | None
    superseded_by: str | None
    promulgated_on: date | None
    cancellation_reason: str | None
    releasability: ReleasabilityOut
    version: int
    history: list[ChangeOut]

    @classmethod
    def of(cls, s: Standard) -> StandardOut:
        return cls(
            id=s.id,
            kind=s.kind,
            number=s.number,
            edition=s.edition,
            reference=s.reference,
            title=s.title,
            covering_publications=list(s.covering_publications),
            domain=s.domain,
            capability_areas=list(s.capability_areas),
            levels=list(s.levels),
            status=s.status,
            supersedes=s.supersedes,
            superseded_by=s.superseded_by,
            promulgated_on=s.promulgated_on,
            cancellation_reason=s.cancellation_reason,
            releasability=ReleasabilityOut.of(s.releasability),
            version=s.version,
            history=ChangeOut.all(s.history),
        )


class StandardPage(BaseModel):
    items: list[StandardOut]
    next: str | None = Field(description="The next page's path and query, or null on the last page")

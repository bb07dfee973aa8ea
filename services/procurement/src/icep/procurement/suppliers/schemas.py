"""Request and response bodies of the supplier routes."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StringConstraints

from icep.contracts.releasability import ReleasabilityIn, ReleasabilityOut
from icep.procurement.schema_types import (
    ChangeOut,
    Country,
    InputModel,
    Reason,
)
from icep.procurement.suppliers.model import (
    Scale,
    Screening,
    Supplier,
)


class OwnerIn(InputModel):
    name: str = Field(min_length=1, max_length=300)
    country: Country
    share_percent: StrictFloat = Field(gt=0, le=100, description="The owners' shares add up to 100 at most")


class SupplierCreate(InputModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "organisation_id": "DE-HRB-000001",
                    "name": "Example Munitions GmbH (synthetic)",
                    "scale": "sme",
                    "country_of_incorporation": "DEU",
                    "ownership_chain": [
                        {"name": "Example Holding AG", "country": "DEU", "share_percent": 100}
                    ],
                    "products": ["EX-155-HE"],
                }
            ]
        },
    )

    organisation_id: str = Field(min_length=1, max_length=100)
    name: str = Field(min_length=1, max_length=300)
    scale: Scale
    country_of_incorporation: Country
    ultimate_parent: str | None = Field(default=None, min_length=1, max_length=300)
    ultimate_parent_country: Country | None = None
    ownership_chain: list[OwnerIn] = Field(default=[], max_length=50)
    products: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(
        default=[], max_length=200, description="Product codes, as in conformance claims"
    )
    releasability: ReleasabilityIn | None = Field(default=None, description="Default: all Allies")


#: The person who adjudicates (their name): recorded with the client they act through.
Adjudicator = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    Field(description="The name of the person who adjudicates", examples=["Anna Schmidt"]),
]


class MitigationIn(InputModel):
    mitigation: str = Field(min_length=1, max_length=4000)
    adjudicator: Adjudicator


class BlockIn(InputModel):
    reason: Reason
    adjudicator: Adjudicator


class OwnerOut(BaseModel):
    name: str
    country: str
    share_percent: float


class SupplierOut(BaseModel):
    id: str
    organisation_id: str
    name: str
    scale: Scale
    country_of_incorporation: str
    ultimate_parent: str | None
    ultimate_parent_country: str | None
    ownership_chain: list[OwnerOut]
    products: list[str]
    nation: str = Field(description="Who registered it")
    releasability: ReleasabilityOut
    screening: Screening
    matches: list[str] = Field(description="Potential matches against the restricted lists, for a person")
    lists_version: str | None
    mitigation: str | None
    adjudicator: str | None = Field(
        description="The person who adjudicated, with the client they acted through: `Name (client-id)`"
    )
    blocked_reason: str | None
    adjudicated: list[str] = Field(description="The matches a person cleared")
    awardable: bool
    version: int
    history: list[ChangeOut]

    @classmethod
    def of(cls, s: Supplier) -> SupplierOut:
        return cls(
            id=s.id,
            organisation_id=s.organisation_id,
            name=s.name,
            scale=s.scale,
            country_of_incorporation=s.country_of_incorporation,
            ultimate_parent=s.ultimate_parent,
            ultimate_parent_country=s.ultimate_parent_country,
            ownership_chain=[
                OwnerOut(name=o.name, country=o.country, share_percent=o.share_percent)
                for o in s.ownership_chain
            ],
            products=list(s.products),
            nation=s.nation,
            releasability=ReleasabilityOut.of(s.releasability),
            screening=s.screening,
            matches=list(s.matches),
            lists_version=s.lists_version,
            mitigation=s.mitigation,
            adjudicator=s.adjudicator,
            blocked_reason=s.blocked_reason,
            adjudicated=list(s.adjudicated),
            awardable=s.awardable,
            version=s.version,
            history=ChangeOut.all(s.history),
        )


class SupplierPage(BaseModel):
    items: list[SupplierOut]
    next: str | None

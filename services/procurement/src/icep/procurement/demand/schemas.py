"""Request and response bodies of the demand routes."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from icep.contracts.releasability import ReleasabilityIn, ReleasabilityOut
from icep.procurement.demand.model import DemandSignal as Signal
from icep.procurement.demand.model import Firmness, YearDemand
from icep.procurement.schema_types import (
    InputModel,
    Quantities,
    years_out,
)


class SignalCreate(InputModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "product": "155mm artillery round",
                    "capability_area": "munitions",
                    "unit": "rounds",
                    "firmness": "planned",
                    "quantities": {"2026": 40000, "2027": 60000},
                }
            ]
        },
    )

    product: str = Field(min_length=1, max_length=200)
    capability_area: str = Field(min_length=1, max_length=100)
    unit: str = Field(min_length=1, max_length=50)
    firmness: Firmness
    quantities: Quantities
    releasability: ReleasabilityIn | None = Field(default=None, description="Default: all Allies")


class SignalChange(InputModel):
    firmness: Firmness
    quantities: Quantities


class SignalOut(BaseModel):
    id: str
    nation: str
    product: str
    capability_area: str
    unit: str
    firmness: Firmness
    quantities: dict[str, int]
    releasability: ReleasabilityOut
    version: int
    updated_at: datetime

    @classmethod
    def of(cls, s: Signal) -> SignalOut:
        return cls(
            id=s.id,
            nation=s.nation,
            product=s.product,
            capability_area=s.capability_area,
            unit=s.unit,
            firmness=s.firmness,
            quantities=years_out(s.quantities),
            releasability=ReleasabilityOut.of(s.releasability),
            version=s.version,
            updated_at=s.updated_at,
        )


class SignalPage(BaseModel):
    items: list[SignalOut]
    next: str | None


class YearDemandOut(BaseModel):
    indicative: int
    planned: int
    funded: int
    contracted: int
    firm: int = Field(description="Planned, funded and contracted: what industry can build capacity on")
    total: int

    @classmethod
    def of(cls, d: YearDemand) -> YearDemandOut:
        return cls(
            indicative=d.indicative,
            planned=d.planned,
            funded=d.funded,
            contracted=d.contracted,
            firm=d.firm,
            total=d.total,
        )


class ProductDemandOut(BaseModel):
    """One product in one unit (quantities in different units are never added up)."""

    product: str
    unit: str
    years: dict[str, YearDemandOut]
    signals: int = Field(description="Demand signals counted")
    initiatives: int = Field(description="Initiatives with demand counted")


class DemandPictureOut(BaseModel):
    items: list[ProductDemandOut]


class YearBalanceOut(BaseModel):
    year: int
    demand: YearDemandOut
    capacity: int = Field(description="Committed capacity of accepted national plans the caller may see")
    gap: int = Field(description="All demand minus capacity: positive is a shortfall")
    firm_gap: int = Field(description="Firm demand (planned, funded, contracted) minus capacity")
    shortfall_reported: int = Field(
        description="Output national plans reported short of their ramps in the year's months (the caller"
        " may see), by the latest report of each month"
    )


class DemandCapacityOut(BaseModel):
    product: str
    unit: str | None = Field(
        description="The unit compared: as asked, else the committed capacity's, else the demand's"
    )
    other_units: list[str] = Field(
        description="Units the product is also demanded or committed in, left out of this answer"
    )
    years: list[YearBalanceOut]

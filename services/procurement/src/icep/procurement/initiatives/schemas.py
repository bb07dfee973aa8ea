"""Request and response bodies of the initiative routes; an initiative is shown as its reader may see it."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from icep.contracts import NationCode
from icep.contracts.base import MoneyAmount
from icep.contracts.releasability import ReleasabilityIn, ReleasabilityOut
from icep.procurement.initiatives.model import Initiative
from icep.procurement.initiatives.parts import (
    CallOff,
    Contract,
    Disclosure,
    InitiativeStatus,
    Milestone,
    MilestoneStatus,
    Participation,
    ParticipationStatus,
    RequiredStandard,
)
from icep.procurement.initiatives.readers import participant_release
from icep.procurement.schema_types import (
    ChangeOut,
    Count,
    Currency,
    Id,
    InputModel,
    Money,
    Quantities,
    Reason,
    years_out,
)
from icep.procurement.settings import min_aggregate_participants


class ItemIn(InputModel):
    product: str = Field(min_length=1, max_length=200, examples=["155mm artillery round"])
    unit: str = Field(min_length=1, max_length=50, examples=["rounds"])
    classification_scheme: str = Field(default="ICEP", min_length=1, max_length=40, examples=["CPV"])
    classification_id: str = Field(default="", max_length=100, examples=["35321000"])
    description: str = Field(default="", max_length=2000)


class RequiredStandardIn(InputModel):
    number: str = Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9][A-Za-z0-9 .\-/]*$")
    edition: int = Field(ge=1, le=999)


class InitiativeCreate(InputModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "title": "155mm ammunition for PzH 2000 and CAESAR (synthetic)",
                    "item": {
                        "product": "155mm artillery round",
                        "unit": "rounds",
                        "classification_scheme": "CPV",
                        "classification_id": "35321000",
                    },
                    "capability_area": "munitions",
                    "required_standards": [{"number": "4425", "edition": 2}],
                    "participation_deadline": "2030-06-30",
                    "open_to_partners": ["UKR"],
                }
            ]
        },
    )

    title: str = Field(min_length=1, max_length=300)
    description: str = Field(default="", max_length=4000)
    item: ItemIn
    capability_area: str = Field(min_length=1, max_length=100, examples=["munitions"])
    required_standards: list[RequiredStandardIn] = Field(default=[], max_length=30)
    participation_deadline: date
    procuring_entity: str | None = Field(
        default=None, min_length=1, max_length=100, description="Default: the lead nation, or NSPA for NATO"
    )
    open_to_partners: list[NationCode] = Field(
        default=[], max_length=6, description="Partners that may join: UKR, AUS, JPN, NZL, KOR, EU"
    )
    releasability: ReleasabilityIn | None = Field(
        default=None, description="Default: all Allies, and the partners it is open to"
    )


class JoinIn(InputModel):
    indicative: Quantities


class CommitIn(InputModel):
    firm: Quantities
    funded: Quantities = Field(default={}, max_length=30)


class ReasonIn(InputModel):
    reason: Reason


class LotIn(InputModel):
    id: Id
    title: str = Field(min_length=1, max_length=300)
    quantity: Count
    estimated_value: Money | None = None
    currency: Currency | None = None


class TenderIn(InputModel):
    lots: list[LotIn] = Field(min_length=1, max_length=50)
    tender_period_end: date


class BidIn(InputModel):
    lot_id: Id
    supplier_id: str = Field(min_length=1, max_length=36)
    quantity: Count
    value: Money
    currency: Currency


class AwardItemIn(InputModel):
    lot_id: Id
    supplier_id: str = Field(min_length=1, max_length=36)
    quantity: Count
    value: Money
    currency: Currency
    product_code: str | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        description="The supplier's product offered, which must hold verified conformance with every"
        " required standard edition; default: one of the supplier's products must",
    )


class AwardIn(InputModel):
    awards: list[AwardItemIn] = Field(min_length=1, max_length=50)


class MilestoneIn(InputModel):
    id: Id
    title: str = Field(min_length=1, max_length=300)
    due: date
    quantity: Count | None = None


class ContractIn(InputModel):
    award_id: str = Field(min_length=1, max_length=36)
    framework: bool = False
    value: Money
    currency: Currency
    period_start: date
    period_end: date
    milestones: list[MilestoneIn] = Field(default=[], max_length=100)


class MilestoneRecordIn(InputModel):
    met_on: date | None = None
    missed: bool = False
    reason: str = Field(default="", max_length=2000)

    @model_validator(mode="after")
    def _met_or_missed(self) -> MilestoneRecordIn:
        if (self.met_on is None) == (not self.missed):
            raise ValueError("give either `met_on` or `missed: true` with a reason")
        return self


class CallOffIn(InputModel):
    contract_id: str = Field(min_length=1, max_length=36)
    buyer: NationCode
    quantity: Count
    value: Money
    currency: Currency
    delivery_by: date


class ItemOut(BaseModel):
    product: str
    unit: str
    classification_scheme: str
    classification_id: str
    description: str


class RequiredStandardOut(BaseModel):
    number: str
    edition: int
    label: str = Field(examples=["4425 Ed. 2"])


_NATION_ONLY = "Null unless the caller is this nation, the lead nation or NATO staff"


class ParticipationOut(BaseModel):
    """A nation's participation. Its quantities and reason are for the nation, the lead nation and NATO
    staff to see (as the events about it); other readers see who participates, and how (the aggregate is
    in the initiative's `demand`)."""

    nation: str
    status: ParticipationStatus
    indicative: dict[str, int] | None = Field(description=_NATION_ONLY)
    firm: dict[str, int] | None = Field(description=_NATION_ONLY)
    funded: dict[str, int] | None = Field(description=_NATION_ONLY)
    joined_at: datetime | None
    withdrawal_reason: str | None = Field(description=_NATION_ONLY)

    @classmethod
    def of(cls, p: Participation, *, full: bool) -> ParticipationOut:
        return cls(
            nation=p.nation,
            status=p.status,
            indicative=years_out(p.indicative) if full else None,
            firm=years_out(p.firm) if full else None,
            funded=years_out(p.funded) if full else None,
            joined_at=p.joined_at,
            withdrawal_reason=p.withdrawal_reason if full else None,
        )


class DemandOut(BaseModel):
    """The aggregated demand as the caller may see it (disclosure control): the lead nation and NATO staff
    see it as it stands (`full`); every other reader sees no figure until the tender is published
    (`withheld`), then the settled firm demand only (`published`), a year only when at least
    `ICEP_PROCUREMENT_MIN_AGGREGATE_PARTICIPANTS` nations (default 3) commit to it (a year left out is
    not a zero)."""

    participants: int = Field(description="Nations joined, committed or asking to withdraw")
    disclosure: Disclosure = Field(description="full, published (settled, k or more nations) or withheld")
    indicative: dict[str, int]
    firm: dict[str, int]
    funded: dict[str, int]


class LotOut(BaseModel):
    id: str
    title: str
    quantity: int
    estimated_value: MoneyAmount | None
    currency: str | None


class TenderOut(BaseModel):
    lots: list[LotOut]
    period_end: date
    published_at: datetime


class BidOut(BaseModel):
    id: str
    lot_id: str
    supplier_id: str
    quantity: int
    value: MoneyAmount
    currency: str
    received_at: datetime


class AwardOut(BaseModel):
    id: str
    lot_id: str
    supplier_id: str
    supplier_name: str
    quantity: int
    value: MoneyAmount
    currency: str
    date: datetime


class MilestoneOut(BaseModel):
    id: str
    title: str
    due: date
    quantity: int | None
    status: MilestoneStatus
    met_on: date | None
    reason: str | None

    @classmethod
    def of(cls, m: Milestone) -> MilestoneOut:
        return cls(
            id=m.id,
            title=m.title,
            due=m.due,
            quantity=m.quantity,
            status=m.status,
            met_on=m.met_on,
            reason=m.reason,
        )


class ContractOut(BaseModel):
    id: str
    award_id: str
    supplier_id: str
    framework: bool
    value: MoneyAmount
    currency: str
    period_start: date
    period_end: date
    milestones: list[MilestoneOut]
    signed_at: datetime

    @classmethod
    def of(cls, c: Contract) -> ContractOut:
        return cls(
            id=c.id,
            award_id=c.award_id,
            supplier_id=c.supplier_id,
            framework=c.framework,
            value=c.value,
            currency=c.currency,
            period_start=c.period_start,
            period_end=c.period_end,
            milestones=[MilestoneOut.of(m) for m in c.milestones],
            signed_at=c.signed_at,
        )


class CallOffOut(BaseModel):
    id: str
    ocid: str = Field(description="The call-off's own OCDS process, linked to the framework's")
    contract_id: str
    buyer: str
    quantity: int
    value: MoneyAmount
    currency: str
    delivery_by: date
    placed_at: datetime

    @classmethod
    def of(cls, c: CallOff) -> CallOffOut:
        return cls(
            id=c.id,
            ocid=c.ocid,
            contract_id=c.contract_id,
            buyer=c.buyer,
            quantity=c.quantity,
            value=c.value,
            currency=c.currency,
            delivery_by=c.delivery_by,
            placed_at=c.placed_at,
        )


class FlagOut(BaseModel):
    standard: RequiredStandardOut
    standard_status: str
    reason: str
    at: datetime


def _standard_out(s: RequiredStandard) -> RequiredStandardOut:
    return RequiredStandardOut(number=s.number, edition=s.edition, label=s.label)


class InitiativeOut(BaseModel):
    id: str
    ocid: str
    title: str
    description: str
    item: ItemOut
    capability_area: str
    required_standards: list[RequiredStandardOut]
    lead_nation: str
    procuring_entity: str
    participation_deadline: date
    open_to_partners: list[str]
    releasability: ReleasabilityOut
    status: InitiativeStatus
    version: int
    created_at: datetime
    participations: list[ParticipationOut] = Field(
        description="Every nation's participation; quantities only the lead nation's and the nation's own"
    )
    demand: DemandOut
    tender: TenderOut | None
    bids: list[BidOut] = Field(description="Empty unless the caller is the lead nation")
    awards: list[AwardOut]
    contracts: list[ContractOut]
    call_offs: list[CallOffOut]
    flags: list[FlagOut] = Field(description="Required standard editions since superseded or cancelled")
    cancellation_reason: str | None
    history: list[ChangeOut]

    @classmethod
    def fields_of(cls, i: Initiative, viewer: str) -> dict[str, Any]:
        """As `viewer` (a nation, or NATO) may see it: the lead nation (NATO staff, when NATO leads) sees
        everything; NATO staff the aggregate demand as it stands; any other reader the aggregate demand as
        published (`DemandOut`), who participates and how, its own participation's quantities (when it
        participates), and no bids."""
        shown = i.demand_for(viewer, min_aggregate_participants())
        d = shown.demand
        lead = viewer == i.lead_nation
        return {
            "id": i.id,
            "ocid": i.ocid,
            "title": i.title,
            "description": i.description,
            "item": ItemOut(
                product=i.item.product,
                unit=i.item.unit,
                classification_scheme=i.item.classification_scheme,
                classification_id=i.item.classification_id,
                description=i.item.description,
            ),
            "capability_area": i.capability_area,
            "required_standards": [_standard_out(s) for s in i.required_standards],
            "lead_nation": i.lead_nation,
            "procuring_entity": i.procuring_entity,
            "participation_deadline": i.participation_deadline,
            "open_to_partners": list(i.open_to_partners),
            "releasability": ReleasabilityOut.of(i.releasability),
            "status": i.status,
            "version": i.version,
            "created_at": i.created_at,
            "participations": [
                ParticipationOut.of(p, full=participant_release(i, p.nation).allows(viewer))
                for p in i.participations
            ],
            "demand": DemandOut(
                participants=d.participants,
                disclosure=shown.disclosure,
                indicative=years_out(d.indicative),
                firm=years_out(d.firm),
                funded=years_out(d.funded),
            ),
            "tender": None
            if i.tender is None
            else TenderOut(
                lots=[
                    LotOut(
                        id=x.id,
                        title=x.title,
                        quantity=x.quantity,
                        estimated_value=x.estimated_value,
                        currency=x.currency,
                    )
                    for x in i.tender.lots
                ],
                period_end=i.tender.period_end,
                published_at=i.tender.published_at,
            ),
            "bids": [
                BidOut(
                    id=b.id,
                    lot_id=b.lot_id,
                    supplier_id=b.supplier_id,
                    quantity=b.quantity,
                    value=b.value,
                    currency=b.currency,
                    received_at=b.received_at,
                )
                for b in (i.bids if lead else ())
            ],
            "awards": [
                AwardOut(
                    id=a.id,
                    lot_id=a.lot_id,
                    supplier_id=a.supplier_id,
                    supplier_name=a.supplier_name,
                    quantity=a.quantity,
                    value=a.value,
                    currency=a.currency,
                    date=a.date,
                )
                for a in i.awards
            ],
            "contracts": [ContractOut.of(c) for c in i.contracts],
            "call_offs": [CallOffOut.of(c) for c in i.call_offs],
            "flags": [
                FlagOut(
                    standard=_standard_out(f.standard),
                    standard_status=f.standard_status,
                    reason=f.reason,
                    at=f.at,
                )
                for f in i.flags
            ],
            "cancellation_reason": i.cancellation_reason,
            "history": ChangeOut.all(i.history),
        }

    @classmethod
    def of(cls, i: Initiative, viewer: str) -> InitiativeOut:
        return cls(**cls.fields_of(i, viewer))


class ContractSignedOut(InitiativeOut):
    contract_id: str = Field(description="The contract just signed")


class CallOffPlacedOut(InitiativeOut):
    call_off_id: str = Field(description="The call-off just placed")
    call_off_ocid: str


class InitiativePage(BaseModel):
    items: list[InitiativeOut]
    next: str | None = Field(description="The next page's path and query, or null on the last page")

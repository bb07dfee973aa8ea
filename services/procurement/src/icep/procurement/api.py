"""HTTP routes of the procurement service: parse, call one use case, shape the answer.

Who may do what is decided in `domain.py`; what a caller may read, in `service.py`. Quantities per year are
objects keyed by the year as a string (`{"2026": 120000}`), as JSON requires.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Annotated, Any

import pycountry
from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StringConstraints,
    model_validator,
)

from icep.contracts import NationCode, Releasability
from icep.contracts.base import MoneyAmount
from icep.contracts.releasability import ReleasabilityIn, ReleasabilityOut
from icep.platform.app import database, runtime_of, unit_of_work
from icep.platform.auth import ActorDep
from icep.platform.domain import invalid
from icep.platform.errors import NotFound, PreconditionRequired
from icep.platform.events import utcnow
from icep.platform.http import etag, if_match_version, next_link
from icep.procurement import ocds, service
from icep.procurement.domain import (
    MAX_QUANTITY,
    Actor,
    AwardInput,
    CallOff,
    Change,
    Contract,
    Disclosure,
    Firmness,
    Initiative,
    InitiativeStatus,
    Item,
    Lot,
    Milestone,
    MilestoneStatus,
    Owner,
    Participation,
    ParticipationStatus,
    RequiredStandard,
    Scale,
    Screening,
    Supplier,
    YearDemand,
)
from icep.procurement.domain import DemandSignal as Signal
from icep.procurement.settings import ProcurementSettings, min_aggregate_participants

initiatives_router = APIRouter(prefix="/v1/initiatives", tags=["initiatives"])
demand_router = APIRouter(prefix="/v1/demand", tags=["demand"])
demand_capacity_router = APIRouter(prefix="/v1/demand-capacity", tags=["demand"])
suppliers_router = APIRouter(prefix="/v1/suppliers", tags=["suppliers"])
routers = [initiatives_router, demand_router, demand_capacity_router, suppliers_router]

#: What the app mounts: every router of the service.
router = APIRouter()
for _r in routers:
    router.include_router(_r)

Text = Annotated[str, Field(min_length=1, max_length=200)]
Reason = Annotated[str, Field(min_length=1, max_length=2000)]
#: ISO 4217 codes newer than OCDS 1.1.5's closed currency codelist: a release naming one would fail the
#: OCDS schema, so they are refused until the codelist knows them.
NOT_IN_OCDS_CURRENCIES = frozenset({"SLE", "VED", "XAD", "XCG", "ZWG"})


def iso_currency(code: str) -> str:
    """An ISO 4217 currency code (one OCDS 1.1.5 knows), or a ValueError saying why not."""
    if pycountry.currencies.get(alpha_3=code) is None:
        raise ValueError(f"{code} is not an ISO 4217 currency code")
    if code in NOT_IN_OCDS_CURRENCIES:
        raise ValueError(f"{code} is not in the currency codelist of OCDS 1.1.5, which releases follow")
    return code


def iso_country(code: str) -> str:
    """An ISO 3166-1 alpha-3 country code, or a ValueError saying why not."""
    if pycountry.countries.get(alpha_3=code) is None:
        raise ValueError(f"{code} is not an ISO 3166-1 alpha-3 country code")
    return code


Country = Annotated[
    str, Field(pattern=r"^[A-Z]{3}$", description="ISO 3166-1 alpha-3"), AfterValidator(iso_country)
]
Currency = Annotated[
    str,
    Field(pattern=r"^[A-Z]{3}$", description="ISO 4217", examples=["EUR"]),
    AfterValidator(iso_currency),
]
#: An amount of money: a JSON number, never `true` or `"5"`.
Money = Annotated[MoneyAmount, Field(ge=0, le=1e13)]
#: A count of units: a JSON integer (never `true`, `5.0` or `"5"`).
Count = Annotated[StrictInt, Field(ge=1, le=MAX_QUANTITY)]
Id = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,63}$")]
Nation = Annotated[str, Path(pattern=r"^[A-Z]{2,4}$", description="The participating nation")]
YearKey = Annotated[str, StringConstraints(pattern=r"^[0-9]{4}$")]
Quantities = Annotated[
    dict[YearKey, Annotated[StrictInt, Field(ge=0, le=MAX_QUANTITY)]],
    Field(max_length=30, description="Quantity per year, keyed by the year", examples=[{"2026": 12000}]),
]


def per_year(quantities: Mapping[str, int]) -> dict[int, int]:
    """`{"2026": 5}` (keys already checked as four-digit years) -> `{2026: 5}`."""
    return {int(y): q for y, q in quantities.items()}


def years_out(quantities: Mapping[int, int]) -> dict[str, int]:
    return {str(y): q for y, q in sorted(quantities.items())}


IfMatch = Annotated[int | None, Depends(if_match_version)]
Limit = Annotated[int, Query(ge=1, le=200)]
Cursor = Annotated[str | None, Query(max_length=64)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _owned(r: ReleasabilityIn | None, owner: str) -> Releasability | None:
    return None if r is None else r.owned_by(owner)


class ChangeOut(BaseModel):
    action: str
    status: str
    by: str
    at: datetime
    note: str

    @classmethod
    def all(cls, history: tuple[Change, ...]) -> list[ChangeOut]:
        return [cls(action=c.action, status=c.status, by=c.by, at=c.at, note=c.note) for c in history]


# --- initiatives: input ---------------------------------------------------------------------------------


class ItemIn(_In):
    product: str = Field(min_length=1, max_length=200, examples=["155mm artillery round"])
    unit: str = Field(min_length=1, max_length=50, examples=["rounds"])
    classification_scheme: str = Field(default="ICEP", min_length=1, max_length=40, examples=["CPV"])
    classification_id: str = Field(default="", max_length=100, examples=["35321000"])
    description: str = Field(default="", max_length=2000)


class RequiredStandardIn(_In):
    number: str = Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9][A-Za-z0-9 .\-/]*$")
    edition: int = Field(ge=1, le=999)


class InitiativeCreate(_In):
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
    required_standards: list[RequiredStandardIn] = Field(default_factory=list, max_length=30)
    participation_deadline: date
    procuring_entity: str | None = Field(
        default=None, min_length=1, max_length=100, description="Default: the lead nation, or NSPA for NATO"
    )
    open_to_partners: list[NationCode] = Field(
        default_factory=list, max_length=6, description="Partners that may join: UKR, AUS, JPN, NZL, KOR, EU"
    )
    releasability: ReleasabilityIn | None = Field(
        default=None, description="Default: all Allies, and the partners it is open to"
    )


class JoinIn(_In):
    indicative: Quantities


class CommitIn(_In):
    firm: Quantities
    funded: Quantities = Field(default_factory=dict, max_length=30)


class ReasonIn(_In):
    reason: Reason


class LotIn(_In):
    id: Id
    title: str = Field(min_length=1, max_length=300)
    quantity: Count
    estimated_value: Money | None = None
    currency: Currency | None = None


class TenderIn(_In):
    lots: list[LotIn] = Field(min_length=1, max_length=50)
    tender_period_end: date


class BidIn(_In):
    lot_id: Id
    supplier_id: str = Field(min_length=1, max_length=36)
    quantity: Count
    value: Money
    currency: Currency


class AwardItemIn(_In):
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


class AwardIn(_In):
    awards: list[AwardItemIn] = Field(min_length=1, max_length=50)


class MilestoneIn(_In):
    id: Id
    title: str = Field(min_length=1, max_length=300)
    due: date
    quantity: Count | None = None


class ContractIn(_In):
    award_id: str = Field(min_length=1, max_length=36)
    framework: bool = False
    value: Money
    currency: Currency
    period_start: date
    period_end: date
    milestones: list[MilestoneIn] = Field(default_factory=list, max_length=100)


class MilestoneRecordIn(_In):
    met_on: date | None = None
    missed: bool = False
    reason: str = Field(default="", max_length=2000)

    @model_validator(mode="after")
    def _met_or_missed(self) -> MilestoneRecordIn:
        if (self.met_on is None) == (not self.missed):
            raise ValueError("give either `met_on` or `missed: true` with a reason")
        return self


class CallOffIn(_In):
    contract_id: str = Field(min_length=1, max_length=36)
    buyer: NationCode
    quantity: Count
    value: Money
    currency: Currency
    delivery_by: date


# --- initiatives: output --------------------------------------------------------------------------------


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
                ParticipationOut.of(p, full=service.participant_release(i, p.nation).allows(viewer))
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


def _initiative(response: Response, i: Initiative, who: Actor) -> InitiativeOut:
    response.headers["ETag"] = etag(i.version)
    return InitiativeOut.of(i, who.nation)


# --- initiatives: routes --------------------------------------------------------------------------------


@initiatives_router.post(
    "", status_code=201, operation_id="proposeInitiative", summary="Propose a joint procurement initiative"
)
async def propose_initiative(
    body: InitiativeCreate, request: Request, response: Response, who: ActorDep
) -> InitiativeOut:
    initiative = await service.propose_initiative(
        unit_of_work(request),
        who,
        service.NewInitiative(
            title=body.title,
            description=body.description,
            item=Item(
                product=body.item.product.strip(),
                unit=body.item.unit.strip(),
                classification_scheme=body.item.classification_scheme.strip(),
                classification_id=body.item.classification_id.strip(),
                description=body.item.description.strip(),
            ),
            capability_area=body.capability_area.strip(),
            participation_deadline=body.participation_deadline,
            procuring_entity=body.procuring_entity,
            required_standards=tuple(
                RequiredStandard(s.number.strip(), s.edition) for s in body.required_standards
            ),
            open_to_partners=tuple(body.open_to_partners),
            releasability=_owned(body.releasability, who.nation),
        ),
    )
    response.headers["Location"] = f"/v1/initiatives/{initiative.id}"
    return _initiative(response, initiative, who)


@initiatives_router.get("", operation_id="listInitiatives", summary="Initiatives the caller may see")
async def list_initiatives(
    request: Request,
    who: ActorDep,
    product: Annotated[str | None, Query(max_length=200)] = None,
    status: InitiativeStatus | None = None,
    lead_nation: Annotated[str | None, Query(pattern=r"^[A-Z]{3,4}$")] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> InitiativePage:
    found, after = await service.list_initiatives(
        database(request),
        who,
        product=product,
        status=status,
        lead_nation=lead_nation,
        limit=limit,
        after=cursor,
    )
    return InitiativePage(
        items=[InitiativeOut.of(i, who.nation) for i in found], next=next_link(request, after)
    )


@initiatives_router.get("/{initiative_id}", operation_id="getInitiative", summary="One initiative")
async def get_initiative(
    initiative_id: str, request: Request, response: Response, who: ActorDep
) -> InitiativeOut:
    return _initiative(response, await service.get_initiative(database(request), who, initiative_id), who)


@initiatives_router.post(
    "/{initiative_id}/open", operation_id="openInitiative", summary="Open for participation (lead nation)"
)
async def open_initiative(
    initiative_id: str, request: Request, response: Response, who: ActorDep, expected: IfMatch
) -> InitiativeOut:
    i = await service.open_initiative(unit_of_work(request), who, initiative_id, expected)
    return _initiative(response, i, who)


@initiatives_router.post(
    "/{initiative_id}/join",
    operation_id="joinInitiative",
    summary="Join with indicative quantities per year (or revise them)",
)
async def join_initiative(
    initiative_id: str, body: JoinIn, request: Request, response: Response, who: ActorDep, expected: IfMatch
) -> InitiativeOut:
    i = await service.join_initiative(
        unit_of_work(request), who, initiative_id, expected, per_year(body.indicative)
    )
    return _initiative(response, i, who)


@initiatives_router.post(
    "/{initiative_id}/commit",
    operation_id="commitToInitiative",
    summary="Commit firm quantities per year, and how much of them is funded",
)
async def commit_to_initiative(
    initiative_id: str,
    body: CommitIn,
    request: Request,
    response: Response,
    who: ActorDep,
    expected: IfMatch,
) -> InitiativeOut:
    i = await service.commit_to_initiative(
        unit_of_work(request), who, initiative_id, expected, per_year(body.firm), per_year(body.funded)
    )
    return _initiative(response, i, who)


@initiatives_router.post(
    "/{initiative_id}/withdraw",
    operation_id="withdrawFromInitiative",
    summary="Withdraw (after a firm commitment: a request the lead nation decides on)",
)
async def withdraw_from_initiative(
    initiative_id: str,
    body: ReasonIn,
    request: Request,
    response: Response,
    who: ActorDep,
    expected: IfMatch,
) -> InitiativeOut:
    i = await service.withdraw_from_initiative(
        unit_of_work(request), who, initiative_id, expected, body.reason
    )
    return _initiative(response, i, who)


@initiatives_router.post(
    "/{initiative_id}/withdrawals/{nation}/approve",
    operation_id="approveWithdrawal",
    summary="Approve a committed nation's withdrawal, as an amendment (lead nation)",
)
async def approve_withdrawal(
    initiative_id: str, nation: Nation, request: Request, response: Response, who: ActorDep, expected: IfMatch
) -> InitiativeOut:
    i = await service.decide_withdrawal(unit_of_work(request), who, initiative_id, expected, nation, True)
    return _initiative(response, i, who)


@initiatives_router.post(
    "/{initiative_id}/withdrawals/{nation}/refuse",
    operation_id="refuseWithdrawal",
    summary="Refuse a committed nation's withdrawal: it stays committed (lead nation)",
)
async def refuse_withdrawal(
    initiative_id: str, nation: Nation, request: Request, response: Response, who: ActorDep, expected: IfMatch
) -> InitiativeOut:
    i = await service.decide_withdrawal(unit_of_work(request), who, initiative_id, expected, nation, False)
    return _initiative(response, i, who)


@initiatives_router.post(
    "/{initiative_id}/close-participation",
    operation_id="closeParticipation",
    summary="Close participation (lead nation)",
)
async def close_participation(
    initiative_id: str, request: Request, response: Response, who: ActorDep, expected: IfMatch
) -> InitiativeOut:
    i = await service.close_participation(unit_of_work(request), who, initiative_id, expected)
    return _initiative(response, i, who)


@initiatives_router.post(
    "/{initiative_id}/cancel",
    operation_id="cancelInitiative",
    summary="Cancel, with a reason, before a contract is signed (lead nation)",
)
async def cancel_initiative(
    initiative_id: str,
    body: ReasonIn,
    request: Request,
    response: Response,
    who: ActorDep,
    expected: IfMatch,
) -> InitiativeOut:
    i = await service.cancel_initiative(unit_of_work(request), who, initiative_id, expected, body.reason)
    return _initiative(response, i, who)


@initiatives_router.post(
    "/{initiative_id}/tender",
    operation_id="publishTender",
    summary="Publish the tender, in lots (lead nation)",
)
async def publish_tender(
    initiative_id: str,
    body: TenderIn,
    request: Request,
    response: Response,
    who: ActorDep,
    expected: IfMatch,
) -> InitiativeOut:
    lots = [
        Lot(
            id=x.id,
            title=x.title.strip(),
            quantity=x.quantity,
            estimated_value=x.estimated_value,
            currency=x.currency,
        )
        for x in body.lots
    ]
    i = await service.publish_tender(
        unit_of_work(request), who, initiative_id, expected, lots, body.tender_period_end
    )
    return _initiative(response, i, who)


@initiatives_router.post(
    "/{initiative_id}/bids",
    operation_id="recordBid",
    summary="Record a supplier's bid on a lot (lead nation)",
)
async def record_bid(
    initiative_id: str,
    body: BidIn,
    request: Request,
    response: Response,
    who: ActorDep,
    expected: IfMatch,
) -> InitiativeOut:
    i = await service.record_bid(
        unit_of_work(request),
        who,
        initiative_id,
        expected,
        body.lot_id,
        body.supplier_id,
        body.quantity,
        body.value,
        body.currency,
    )
    return _initiative(response, i, who)


@initiatives_router.post(
    "/{initiative_id}/award",
    operation_id="award",
    summary="Award lots to one or more suppliers (lead nation; refused, saying why, for a supplier not "
    "clear or cleared, or without verified conformance with a required standard edition)",
)
async def award(
    initiative_id: str,
    body: AwardIn,
    request: Request,
    response: Response,
    who: ActorDep,
    expected: IfMatch,
) -> InitiativeOut:
    awards = [
        AwardInput(
            lot_id=a.lot_id,
            supplier_id=a.supplier_id,
            quantity=a.quantity,
            value=a.value,
            currency=a.currency,
            product_code=a.product_code,
        )
        for a in body.awards
    ]
    i = await service.award(unit_of_work(request), who, initiative_id, expected, awards)
    return _initiative(response, i, who)


@initiatives_router.post(
    "/{initiative_id}/contracts",
    status_code=201,
    operation_id="signContract",
    summary="Sign the contract of an award (a framework agreement or not), with delivery milestones",
)
async def sign_contract(
    initiative_id: str,
    body: ContractIn,
    request: Request,
    response: Response,
    who: ActorDep,
    expected: IfMatch,
) -> ContractSignedOut:
    i, contract = await service.sign_contract(
        unit_of_work(request),
        who,
        initiative_id,
        expected,
        service.NewContract(
            award_id=body.award_id,
            framework=body.framework,
            value=body.value,
            currency=body.currency,
            period_start=body.period_start,
            period_end=body.period_end,
            milestones=tuple(
                Milestone(id=m.id, title=m.title.strip(), due=m.due, quantity=m.quantity)
                for m in body.milestones
            ),
        ),
    )
    response.headers["Location"] = f"/v1/initiatives/{i.id}/contracts/{contract.id}"
    response.headers["ETag"] = etag(i.version)
    return ContractSignedOut(**InitiativeOut.fields_of(i, who.nation), contract_id=contract.id)


@initiatives_router.get(
    "/{initiative_id}/contracts/{contract_id}", operation_id="getContract", summary="One contract"
)
async def get_contract(
    initiative_id: str, contract_id: str, request: Request, response: Response, who: ActorDep
) -> ContractOut:
    i = await service.get_initiative(database(request), who, initiative_id)
    found = next((c for c in i.contracts if c.id == contract_id), None)
    if found is None:
        raise NotFound(f"no contract {contract_id} in initiative {initiative_id}")
    # A contract changes as part of its initiative: a milestone record names the initiative's ETag.
    response.headers["ETag"] = etag(i.version)
    return ContractOut.of(found)


@initiatives_router.post(
    "/{initiative_id}/contracts/{contract_id}/milestones/{milestone_id}",
    operation_id="recordMilestone",
    summary="A delivery milestone met (on a date) or missed (with a reason) (lead nation)",
)
async def record_milestone(
    initiative_id: str,
    contract_id: str,
    milestone_id: str,
    body: MilestoneRecordIn,
    request: Request,
    response: Response,
    who: ActorDep,
    expected: IfMatch,
) -> InitiativeOut:
    i = await service.record_milestone(
        unit_of_work(request),
        who,
        initiative_id,
        expected,
        contract_id,
        milestone_id,
        body.met_on,
        body.reason,
    )
    return _initiative(response, i, who)


@initiatives_router.post(
    "/{initiative_id}/call-offs",
    status_code=201,
    operation_id="placeCallOff",
    summary="A call-off under a framework contract: a new OCDS process linked to it (lead nation)",
)
async def place_call_off(
    initiative_id: str,
    body: CallOffIn,
    request: Request,
    response: Response,
    who: ActorDep,
    expected: IfMatch,
) -> CallOffPlacedOut:
    i, call_off = await service.place_call_off(
        unit_of_work(request),
        who,
        initiative_id,
        expected,
        service.NewCallOff(
            contract_id=body.contract_id,
            buyer=body.buyer,
            quantity=body.quantity,
            value=body.value,
            currency=body.currency,
            delivery_by=body.delivery_by,
        ),
    )
    response.headers["Location"] = f"/v1/initiatives/{i.id}/call-offs/{call_off.id}"
    response.headers["ETag"] = etag(i.version)
    return CallOffPlacedOut(
        **InitiativeOut.fields_of(i, who.nation), call_off_id=call_off.id, call_off_ocid=call_off.ocid
    )


@initiatives_router.get(
    "/{initiative_id}/call-offs/{call_off_id}", operation_id="getCallOff", summary="One call-off"
)
async def get_call_off(
    initiative_id: str, call_off_id: str, request: Request, response: Response, who: ActorDep
) -> CallOffOut:
    i = await service.get_initiative(database(request), who, initiative_id)
    found = next((c for c in i.call_offs if c.id == call_off_id), None)
    if found is None:
        raise NotFound(f"no call-off {call_off_id} in initiative {initiative_id}")
    response.headers["ETag"] = etag(i.version)
    return CallOffOut.of(found)


@initiatives_router.post(
    "/{initiative_id}/start-delivery", operation_id="startDelivery", summary="Delivery started (lead nation)"
)
async def start_delivery(
    initiative_id: str, request: Request, response: Response, who: ActorDep, expected: IfMatch
) -> InitiativeOut:
    i = await service.start_delivery(unit_of_work(request), who, initiative_id, expected)
    return _initiative(response, i, who)


@initiatives_router.post(
    "/{initiative_id}/close",
    operation_id="closeInitiative",
    summary="Close, once every milestone is met or missed (lead nation)",
)
async def close_initiative(
    initiative_id: str, request: Request, response: Response, who: ActorDep, expected: IfMatch
) -> InitiativeOut:
    i = await service.close_initiative(unit_of_work(request), who, initiative_id, expected)
    return _initiative(response, i, who)


# --- OCDS -----------------------------------------------------------------------------------------------


def public_url(request: Request) -> str:
    """This request's path under the configured public URL (`ICEP_PROCUREMENT_PUBLIC_URL`): never from
    the request's Host or X-Forwarded-* headers, which a caller controls."""
    settings = runtime_of(request).settings
    if not isinstance(settings, ProcurementSettings):
        settings = ProcurementSettings()
    return f"{settings.public_url}{request.url.path}"


def _published(releases: list[dict[str, Any]]) -> datetime:
    """A package is as new as its latest release: the same releases make the same package."""
    dates = [datetime.fromisoformat(str(r["date"]).replace("Z", "+00:00")) for r in releases]
    return max(dates) if dates else utcnow()


@initiatives_router.get(
    "/{initiative_id}/ocds",
    operation_id="ocdsReleasePackage",
    summary="The initiative's OCDS releases, as a release package",
)
async def ocds_release_package(initiative_id: str, request: Request, who: ActorDep) -> dict[str, Any]:
    _i, releases = await service.ocds_releases(database(request), who, initiative_id)
    return ocds.release_package(releases, uri=public_url(request), published_date=_published(releases))


@initiatives_router.get(
    "/{initiative_id}/ocds/record",
    operation_id="ocdsRecordPackage",
    summary="The initiative's OCDS record (every release and the compiled release), as a record package",
)
async def ocds_record_package(initiative_id: str, request: Request, who: ActorDep) -> dict[str, Any]:
    i, releases = await service.ocds_releases(database(request), who, initiative_id)
    return ocds.record_package(i.ocid, releases, uri=public_url(request), published_date=_published(releases))


@initiatives_router.get(
    "/{initiative_id}/call-offs/{call_off_id}/ocds",
    operation_id="callOffOcdsReleasePackage",
    summary="A call-off's own OCDS process (its ocid, linked to the framework's), as a release package",
)
async def call_off_ocds_release_package(
    initiative_id: str, call_off_id: str, request: Request, who: ActorDep
) -> dict[str, Any]:
    _c, releases = await service.call_off_releases(database(request), who, initiative_id, call_off_id)
    return ocds.release_package(releases, uri=public_url(request), published_date=_published(releases))


@initiatives_router.get(
    "/{initiative_id}/call-offs/{call_off_id}/ocds/record",
    operation_id="callOffOcdsRecordPackage",
    summary="A call-off's OCDS record (its releases and the compiled release), as a record package",
)
async def call_off_ocds_record_package(
    initiative_id: str, call_off_id: str, request: Request, who: ActorDep
) -> dict[str, Any]:
    c, releases = await service.call_off_releases(database(request), who, initiative_id, call_off_id)
    return ocds.record_package(c.ocid, releases, uri=public_url(request), published_date=_published(releases))


# --- demand signals and the demand picture --------------------------------------------------------------


class SignalCreate(_In):
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


class SignalChange(_In):
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


def _product(product: str) -> str:
    """A product asked for by name: blank is not a product (it would drop the filter)."""
    if not product.strip():
        raise invalid("query.product", "name a product (not blank)")
    return product.strip()


class ProductDemandOut(BaseModel):
    """One product in one unit (quantities in different units are never added up)."""

    product: str
    unit: str
    years: dict[str, YearDemandOut]
    signals: int = Field(description="Demand signals counted")
    initiatives: int = Field(description="Initiatives with demand counted")


class DemandPictureOut(BaseModel):
    items: list[ProductDemandOut]


def _signal(response: Response, s: Signal) -> SignalOut:
    response.headers["ETag"] = etag(s.version)
    return SignalOut.of(s)


@demand_router.get(
    "",
    operation_id="demand",
    summary="Per product and year: demand signals and initiatives by firmness, within what the caller sees",
)
async def demand(
    request: Request, who: ActorDep, product: Annotated[str | None, Query(max_length=200)] = None
) -> DemandPictureOut:
    found = await service.demand(database(request), who, None if product is None else _product(product))
    return DemandPictureOut(
        items=[
            ProductDemandOut(
                product=p.product,
                unit=p.unit,
                years={str(y): YearDemandOut.of(d) for y, d in sorted(p.years.items())},
                signals=p.signals,
                initiatives=p.initiatives,
            )
            for p in found
        ]
    )


@demand_router.post(
    "/signals",
    status_code=201,
    operation_id="publishDemandSignal",
    summary="Publish a nation's standing demand for a product",
)
async def publish_demand_signal(
    body: SignalCreate, request: Request, response: Response, who: ActorDep
) -> SignalOut:
    signal = await service.publish_demand_signal(
        unit_of_work(request),
        who,
        product=body.product.strip(),
        capability_area=body.capability_area.strip(),
        unit=body.unit.strip(),
        firmness=body.firmness,
        quantities=per_year(body.quantities),
        releasability=_owned(body.releasability, who.nation),
    )
    response.headers["Location"] = f"/v1/demand/signals/{signal.id}"
    return _signal(response, signal)


@demand_router.get("/signals", operation_id="listDemandSignals", summary="Demand signals the caller may see")
async def list_demand_signals(
    request: Request,
    who: ActorDep,
    nation: Annotated[str | None, Query(pattern=r"^[A-Z]{2,4}$")] = None,
    product: Annotated[str | None, Query(max_length=200)] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> SignalPage:
    found, after = await service.list_demand_signals(
        database(request), who, nation=nation, product=product, limit=limit, after=cursor
    )
    return SignalPage(items=[SignalOut.of(x) for x in found], next=next_link(request, after))


@demand_router.get("/signals/{signal_id}", operation_id="getDemandSignal", summary="One demand signal")
async def get_demand_signal(signal_id: str, request: Request, response: Response, who: ActorDep) -> SignalOut:
    return _signal(response, await service.get_demand_signal(database(request), who, signal_id))


@demand_router.put(
    "/signals/{signal_id}",
    operation_id="reviseDemandSignal",
    summary="Revise a demand signal's firmness and quantities (If-Match required)",
)
async def revise_demand_signal(
    signal_id: str,
    body: SignalChange,
    request: Request,
    response: Response,
    who: ActorDep,
    expected: IfMatch,
) -> SignalOut:
    if expected is None:
        raise PreconditionRequired(
            "revising a demand signal needs If-Match with the ETag of the version you read"
        )
    signal = await service.revise_demand_signal(
        unit_of_work(request), who, signal_id, expected, body.firmness, per_year(body.quantities)
    )
    return _signal(response, signal)


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


@demand_capacity_router.get(
    "",
    operation_id="demandAgainstCapacity",
    summary="Per year: a product's aggregated demand against committed capacity, and the gap",
)
async def demand_against_capacity(
    request: Request,
    who: ActorDep,
    product: Annotated[str, Query(min_length=1, max_length=200)],
    unit: Annotated[
        str | None, Query(min_length=1, max_length=50, description="Default: the committed capacity's")
    ] = None,
) -> DemandCapacityOut:
    if unit is not None and not unit.strip():
        raise invalid("query.unit", "name a unit (not blank), or leave it out")
    found = await service.demand_against_capacity(
        database(request), who, _product(product), unit.strip() if unit else None
    )
    return DemandCapacityOut(
        product=found.product,
        unit=found.unit,
        other_units=list(found.other_units),
        years=[
            YearBalanceOut(
                year=b.year,
                demand=YearDemandOut.of(b.demand),
                capacity=b.capacity,
                gap=b.gap,
                firm_gap=b.firm_gap,
                shortfall_reported=b.shortfall_reported,
            )
            for b in found.years
        ],
    )


# --- suppliers ------------------------------------------------------------------------------------------


class OwnerIn(_In):
    name: str = Field(min_length=1, max_length=300)
    country: Country
    share_percent: StrictFloat = Field(gt=0, le=100, description="The owners' shares add up to 100 at most")


class SupplierCreate(_In):
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
    ownership_chain: list[OwnerIn] = Field(default_factory=list, max_length=50)
    products: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(
        default_factory=list, max_length=200, description="Product codes, as in conformance claims"
    )
    releasability: ReleasabilityIn | None = Field(default=None, description="Default: all Allies")


#: The person who adjudicates (their name): recorded with the client they act through.
Adjudicator = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    Field(description="The name of the person who adjudicates", examples=["Anna Schmidt"]),
]


class MitigationIn(_In):
    mitigation: str = Field(min_length=1, max_length=4000)
    adjudicator: Adjudicator


class BlockIn(_In):
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


def _supplier(response: Response, s: Supplier) -> SupplierOut:
    response.headers["ETag"] = etag(s.version)
    return SupplierOut.of(s)


@suppliers_router.post(
    "",
    status_code=201,
    operation_id="registerSupplier",
    summary="Register a supplier; it is screened against the restricted lists at once",
)
async def register_supplier(
    body: SupplierCreate, request: Request, response: Response, who: ActorDep
) -> SupplierOut:
    supplier = await service.register_supplier(
        unit_of_work(request),
        who,
        service.NewSupplier(
            organisation_id=body.organisation_id,
            name=body.name,
            scale=body.scale,
            country_of_incorporation=body.country_of_incorporation,
            ultimate_parent=body.ultimate_parent,
            ultimate_parent_country=body.ultimate_parent_country,
            ownership_chain=tuple(
                Owner(name=o.name.strip(), country=o.country, share_percent=o.share_percent)
                for o in body.ownership_chain
            ),
            products=tuple(body.products),
            releasability=_owned(body.releasability, who.nation),
        ),
    )
    response.headers["Location"] = f"/v1/suppliers/{supplier.id}"
    return _supplier(response, supplier)


@suppliers_router.get("", operation_id="listSuppliers", summary="Suppliers the caller may see")
async def list_suppliers(
    request: Request,
    who: ActorDep,
    screening: Screening | None = None,
    nation: Annotated[str | None, Query(pattern=r"^[A-Z]{3,4}$", description="Who registered it")] = None,
    organisation_id: Annotated[str | None, Query(max_length=100)] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> SupplierPage:
    found, after = await service.list_suppliers(
        database(request),
        who,
        screening=screening,
        nation=nation,
        organisation_id=organisation_id,
        limit=limit,
        after=cursor,
    )
    return SupplierPage(items=[SupplierOut.of(s) for s in found], next=next_link(request, after))


@suppliers_router.get(
    "/{supplier_id}", operation_id="getSupplier", summary="One supplier, with its screening"
)
async def get_supplier(supplier_id: str, request: Request, response: Response, who: ActorDep) -> SupplierOut:
    return _supplier(response, await service.get_supplier(database(request), who, supplier_id))


@suppliers_router.post(
    "/{supplier_id}/clear",
    operation_id="clearSupplier",
    summary="A named person clears a potential match, with its mitigation (the registering Ally or NATO;"
    " If-Match required)",
)
async def clear_supplier(
    supplier_id: str,
    body: MitigationIn,
    request: Request,
    response: Response,
    who: ActorDep,
    expected: IfMatch,
) -> SupplierOut:
    s = await service.clear_supplier(
        unit_of_work(request),
        who,
        supplier_id,
        _matches_seen(expected),
        body.mitigation,
        body.adjudicator,
    )
    return _supplier(response, s)


@suppliers_router.post(
    "/{supplier_id}/block",
    operation_id="blockSupplier",
    summary="A named person blocks a supplier on a potential match, saying why (the registering Ally or"
    " NATO; If-Match required)",
)
async def block_supplier(
    supplier_id: str,
    body: BlockIn,
    request: Request,
    response: Response,
    who: ActorDep,
    expected: IfMatch,
) -> SupplierOut:
    s = await service.block_supplier(
        unit_of_work(request), who, supplier_id, _matches_seen(expected), body.reason, body.adjudicator
    )
    return _supplier(response, s)


def _matches_seen(expected: int | None) -> int:
    """A person adjudicates the matches they saw: the version they read, as If-Match."""
    if expected is None:
        raise PreconditionRequired(
            "adjudicating a supplier needs If-Match with the ETag of the version whose matches you read"
        )
    return expected

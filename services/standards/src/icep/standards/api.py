"""HTTP routes of the standards service: parse, call one use case, shape the answer.

Who may do what is decided in `domain.py`; what a caller may read, in `service.py`.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from icep.contracts import NationCode, Releasability
from icep.contracts.nations import ALLIES, NATO
from icep.contracts.releasability import ReleasabilityIn, ReleasabilityOut
from icep.platform.app import database, runtime_of, unit_of_work
from icep.platform.auth import ActorDep
from icep.platform.domain import invalid
from icep.platform.errors import PreconditionRequired
from icep.platform.events import utcnow
from icep.platform.http import etag, if_match_version, next_link
from icep.standards import domain, service
from icep.standards.domain import (
    Answer,
    Basis,
    BasisKind,
    Change,
    ConformanceClaim,
    ConformanceStatus,
    Interchangeability,
    InterchangeabilityStatus,
    Product,
    Reservation,
    ReservationKind,
    Standard,
    StandardKind,
    StandardStatus,
)
from icep.standards.settings import StandardsSettings

standards_router = APIRouter(prefix="/v1/standards", tags=["standards"])
interoperability_router = APIRouter(prefix="/v1/interoperability", tags=["interoperability"])
interchangeability_router = APIRouter(prefix="/v1/interchangeability", tags=["interchangeability"])
routers = [standards_router, interoperability_router, interchangeability_router]

Text = Annotated[str, Field(min_length=1, max_length=200)]
#: A clause of a standard: `4.2.1`, `Annex A 3.2`, `B-4(c)` (no `/`: it is a path segment when withdrawn).
CLAUSE = r"^[A-Za-z0-9][A-Za-z0-9 .()\-]{0,99}$"
Nation = Annotated[str, Path(pattern=r"^[A-Z]{3}$", description="ISO 3166-1 alpha-3 of the answering nation")]


IfMatch = Annotated[int | None, Depends(if_match_version)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _owned(r: ReleasabilityIn | None, owner: str) -> Releasability | None:
    return None if r is None else r.owned_by(owner)


class ReservationOut(BaseModel):
    clause: str
    kind: ReservationKind
    detail: str

    @classmethod
    def of(cls, r: Reservation) -> ReservationOut:
        return cls(clause=r.clause, kind=r.kind, detail=r.detail)


class ProductOut(BaseModel):
    manufacturer: str
    product_code: str
    name: str


class BasisOut(BaseModel):
    kind: BasisKind
    reference: str


class ChangeOut(BaseModel):
    action: str
    status: str
    by: str
    at: datetime
    note: str

    @classmethod
    def all(cls, history: tuple[Change, ...]) -> list[ChangeOut]:
        return [cls(action=c.action, status=c.status, by=c.by, at=c.at, note=c.note) for c in history]


# --- the catalogue ---------------------------------------------------------------------------------------


class StandardCreate(_In):
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
    covering_publications: list[Text] = Field(default_factory=list, max_length=30)
    domain: str = Field(min_length=1, max_length=100, examples=["land", "air", "joint"])
    capability_areas: list[Text] = Field(default_factory=list, max_length=20)
    levels: list[Annotated[str, Field(min_length=1, max_length=40)]] = Field(
        default_factory=list, max_length=20
    )
    supersedes: str | None = Field(default=None, max_length=36, description="Id of the edition it replaces")
    releasability: ReleasabilityIn = Field(default_factory=ReleasabilityIn)


class CancelIn(_In):
    reason: str = Field(min_length=1, max_length=2000)


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


def _standard(response: Response, s: Standard) -> StandardOut:
    response.headers["ETag"] = etag(s.version)
    return StandardOut.of(s)


@standards_router.post(
    "", status_code=201, operation_id="draftStandard", summary="Draft a standard edition (NATO)"
)
async def draft_standard(
    body: StandardCreate, request: Request, response: Response, who: ActorDep
) -> StandardOut:
    standard = await service.draft_standard(
        unit_of_work(request),
        who,
        service.DraftStandard(
            kind=body.kind,
            number=body.number,
            edition=body.edition,
            title=body.title,
            domain=body.domain,
            covering_publications=tuple(body.covering_publications),
            capability_areas=tuple(body.capability_areas),
            levels=tuple(body.levels),
            supersedes=body.supersedes,
            releasability=Releasability(
                owner=NATO, scope=body.releasability.scope, nations=tuple(body.releasability.nations)
            ),
        ),
    )
    response.headers["Location"] = f"/v1/standards/{standard.id}"
    return _standard(response, standard)


@standards_router.get("", operation_id="searchStandards", summary="Search the catalogue")
async def search_standards(
    request: Request,
    who: ActorDep,
    number: Annotated[str | None, Query(max_length=40, examples=["4569"])] = None,
    q: Annotated[
        str | None, Query(max_length=200, description="Text in the title, reference or publications")
    ] = None,
    capability_area: Annotated[str | None, Query(max_length=100)] = None,
    status: StandardStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
) -> StandardPage:
    found, after = await service.search_standards(
        database(request),
        who,
        number=number,
        text=q,
        capability_area=capability_area,
        status=status,
        limit=limit,
        after=cursor,
    )
    return StandardPage(items=[StandardOut.of(s) for s in found], next=next_link(request, after))


# --- progress (before /{standard_id}, which would otherwise match it) -----------------------------------


class NationProgressOut(BaseModel):
    nation: str
    in_force: int = Field(description="Promulgated editions the caller may see")
    ratified: list[str]
    with_reservations: list[str]
    implemented: list[str]
    implementation_overdue: list[str]
    pending: list[str]
    not_ratifying: list[str]
    ratification_rate: float
    implementation_rate: float


class ProgressOut(BaseModel):
    on: date
    nations: list[NationProgressOut]


def nation_list(value: str | None, location: str, *, minimum: int = 1) -> list[str] | None:
    """`DEU,FRA,POL` -> the nations, each one that answers NATO standards."""
    if value is None:
        return None
    nations = list(dict.fromkeys(n.strip().upper() for n in value.split(",") if n.strip()))
    unknown = [n for n in nations if n not in domain.RESPONDING_NATIONS]
    if unknown:
        raise invalid(location, f"not nations that answer NATO standards: {unknown}")
    if len(nations) < minimum:
        raise invalid(location, f"name at least {minimum} nation{'s' if minimum > 1 else ''}")
    return nations


NationsQuery = Annotated[str | None, Query(max_length=400, description="Comma-separated, e.g. DEU,FRA,POL")]


@standards_router.get(
    "/progress", operation_id="standardsProgress", summary="Per nation: ratified vs implemented vs pending"
)
async def standards_progress(request: Request, who: ActorDep, nations: NationsQuery = None) -> ProgressOut:
    chosen = nation_list(nations, "query.nations") or sorted(ALLIES)
    found = await service.progress(database(request), who, chosen)
    return ProgressOut(
        on=utcnow().date(),
        nations=[
            NationProgressOut(
                nation=p.nation,
                in_force=p.in_force,
                ratified=list(p.ratified),
                with_reservations=list(p.with_reservations),
                implemented=list(p.implemented),
                implementation_overdue=list(p.implementation_overdue),
                pending=list(p.pending),
                not_ratifying=list(p.not_ratifying),
                ratification_rate=round(p.ratification_rate, 4),
                implementation_rate=round(p.implementation_rate, 4),
            )
            for p in found
        ],
    )


# --- conformance (before /{standard_id}) ----------------------------------------------------------------


class ProductIn(_In):
    manufacturer: str = Field(min_length=1, max_length=200)
    product_code: str = Field(min_length=1, max_length=100)
    name: str = Field(min_length=1, max_length=200)


Evidence = list[Annotated[str, Field(min_length=1, max_length=500)]]


class ClaimIn(_In):
    product: ProductIn
    standard_id: str = Field(max_length=36)
    level: str | None = Field(default=None, max_length=40)
    evidence: Evidence = Field(default_factory=list, max_length=50)
    releasability: ReleasabilityIn | None = Field(
        default=None, description="Default: all Allies; NATO's standards staff always read a claim"
    )


class EvidenceIn(_In):
    evidence: Evidence = Field(default_factory=list, max_length=50)


class VerifyIn(EvidenceIn):
    expires_on: date


class ClaimOut(BaseModel):
    id: str
    nation: str
    product: ProductOut
    standard_id: str
    level: str | None
    status: ConformanceStatus
    evidence: list[str]
    expires_on: date | None
    rejection_reason: str | None
    releasability: ReleasabilityOut
    version: int
    history: list[ChangeOut]

    @classmethod
    def of(cls, c: ConformanceClaim) -> ClaimOut:
        return cls(
            id=c.id,
            nation=c.nation,
            product=ProductOut(
                manufacturer=c.product.manufacturer, product_code=c.product.product_code, name=c.product.name
            ),
            standard_id=c.standard_id,
            level=c.level,
            status=c.status,
            evidence=list(c.evidence),
            expires_on=c.expires_on,
            rejection_reason=c.rejection_reason,
            releasability=ReleasabilityOut.of(c.release),
            version=c.version,
            history=ChangeOut.all(c.history),
        )


class ClaimPage(BaseModel):
    items: list[ClaimOut]
    next: str | None


def _claim(response: Response, c: ConformanceClaim) -> ClaimOut:
    response.headers["ETag"] = etag(c.version)
    return ClaimOut.of(c)


@standards_router.post(
    "/conformance", status_code=201, operation_id="claimConformance", summary="A product claims conformance"
)
async def claim_conformance(body: ClaimIn, request: Request, response: Response, who: ActorDep) -> ClaimOut:
    claim = await service.claim_conformance(
        unit_of_work(request),
        who,
        product=Product(body.product.manufacturer, body.product.product_code, body.product.name),
        standard_id=body.standard_id,
        level=body.level,
        evidence=tuple(body.evidence),
        releasability=_owned(body.releasability, who.nation),
    )
    response.headers["Location"] = f"/v1/standards/conformance/{claim.id}"
    return _claim(response, claim)


@standards_router.get("/conformance", operation_id="listConformanceClaims", summary="Conformance claims")
async def list_claims(
    request: Request,
    who: ActorDep,
    standard_id: Annotated[str | None, Query(max_length=36)] = None,
    product_code: Annotated[str | None, Query(max_length=100)] = None,
    status: ConformanceStatus | None = None,
    nation: Annotated[str | None, Query(pattern=r"^[A-Z]{3}$")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
) -> ClaimPage:
    claims, after = await service.list_claims(
        database(request),
        who,
        standard_id=standard_id,
        product_code=product_code,
        status=status,
        nation=nation,
        limit=limit,
        after=cursor,
    )
    return ClaimPage(items=[ClaimOut.of(c) for c in claims], next=next_link(request, after))


@standards_router.get("/conformance/{claim_id}", operation_id="getConformanceClaim", summary="One claim")
async def get_claim(claim_id: str, request: Request, response: Response, who: ActorDep) -> ClaimOut:
    return _claim(response, await service.get_claim(database(request), who, claim_id))


@standards_router.post(
    "/conformance/{claim_id}/start-test", operation_id="startConformanceTest", summary="Testing starts"
)
async def start_test(
    claim_id: str,
    request: Request,
    response: Response,
    who: ActorDep,
    expected: IfMatch,
    body: EvidenceIn | None = None,
) -> ClaimOut:
    evidence = tuple(body.evidence) if body else ()
    return _claim(
        response, await service.start_test(unit_of_work(request), who, claim_id, expected, evidence)
    )


@standards_router.post(
    "/conformance/{claim_id}/verify", operation_id="verifyConformance", summary="Verified, until a date"
)
async def verify_claim(
    claim_id: str, body: VerifyIn, request: Request, response: Response, who: ActorDep, expected: IfMatch
) -> ClaimOut:
    """Verification is independent: NATO's standards staff or another nation's test centre (standards
    staff of a nation the claim is released to) verify a claim under test. The claiming nation's own staff
    are refused with 403 unless the deployment allows self-verification
    (`ICEP_STANDARDS_ALLOW_SELF_VERIFICATION`)."""
    settings = runtime_of(request).settings_as(StandardsSettings)
    claim = await service.verify_claim(
        unit_of_work(request),
        who,
        claim_id,
        expected,
        body.expires_on,
        tuple(body.evidence),
        allow_self_verification=settings.allow_self_verification,
    )
    return _claim(response, claim)


@standards_router.post("/conformance/{claim_id}/reject", operation_id="rejectConformance", summary="Rejected")
async def reject_claim(
    claim_id: str, body: CancelIn, request: Request, response: Response, who: ActorDep, expected: IfMatch
) -> ClaimOut:
    return _claim(
        response, await service.reject_claim(unit_of_work(request), who, claim_id, expected, body.reason)
    )


# --- one standard ---------------------------------------------------------------------------------------


@standards_router.get("/{standard_id}", operation_id="getStandard", summary="One standard edition")
async def get_standard(standard_id: str, request: Request, response: Response, who: ActorDep) -> StandardOut:
    return _standard(response, await service.get_standard(database(request), who, standard_id))


@standards_router.post(
    "/{standard_id}/circulate",
    operation_id="circulateStandard",
    summary="Send a study to nations for ratification",
)
async def circulate_standard(
    standard_id: str, request: Request, response: Response, who: ActorDep, expected: IfMatch
) -> StandardOut:
    return _standard(
        response, await service.circulate_standard(unit_of_work(request), who, standard_id, expected)
    )


@standards_router.post(
    "/{standard_id}/promulgate",
    operation_id="promulgateStandard",
    summary="Promulgate; the edition it supersedes, if in force, becomes superseded",
)
async def promulgate_standard(
    standard_id: str, request: Request, response: Response, who: ActorDep, expected: IfMatch
) -> StandardOut:
    return _standard(
        response, await service.promulgate_standard(unit_of_work(request), who, standard_id, expected)
    )


@standards_router.post(
    "/{standard_id}/cancel", operation_id="cancelStandard", summary="Cancel, with a reason"
)
async def cancel_standard(
    standard_id: str, body: CancelIn, request: Request, response: Response, who: ActorDep, expected: IfMatch
) -> StandardOut:
    standard = await service.cancel_standard(unit_of_work(request), who, standard_id, expected, body.reason)
    return _standard(response, standard)


# --- national responses ---------------------------------------------------------------------------------


class ReservationIn(_In):
    clause: str = Field(pattern=CLAUSE, examples=["4.2.1", "Annex A 3.2"])
    kind: ReservationKind
    detail: str = Field(min_length=1, max_length=2000)

    def to_domain(self) -> Reservation:
        return Reservation(self.clause.strip(), self.kind, self.detail.strip())


class RatifyIn(_In):
    reservations: list[ReservationIn] = Field(default_factory=list, max_length=100)


class ForecastIn(_In):
    implementation_forecast: date


class ImplementedIn(_In):
    implemented_on: date


class ResponseOut(BaseModel):
    standard_id: str
    standard_reference: str
    nation: str
    status: str
    reservations: list[ReservationOut]
    implementation_forecast: date | None
    implemented_on: date | None
    releasability: ReleasabilityOut
    version: int
    history: list[ChangeOut]

    @classmethod
    def of(cls, view: service.ResponseView) -> ResponseOut:
        r = view.response
        return cls(
            standard_id=r.standard_id,
            standard_reference=view.standard.reference,
            nation=r.nation,
            status=r.status.value,
            reservations=[ReservationOut.of(x) for x in r.reservations],
            implementation_forecast=r.implementation_forecast,
            implemented_on=r.implemented_on,
            releasability=ReleasabilityOut.of(
                domain.NationalResponse.releasability_for(view.standard, r.nation)
            ),
            version=r.version,
            history=ChangeOut.all(r.history),
        )


class ResponsesOut(BaseModel):
    items: list[ResponseOut] = Field(description="Recorded answers; a nation not listed is pending")


def _response(response: Response, view: service.ResponseView) -> ResponseOut:
    response.headers["ETag"] = etag(view.response.version)
    return ResponseOut.of(view)


@standards_router.get(
    "/{standard_id}/responses", operation_id="listResponses", summary="Every nation's answer"
)
async def list_responses(standard_id: str, request: Request, who: ActorDep) -> ResponsesOut:
    views = await service.list_responses(database(request), who, standard_id)
    return ResponsesOut(items=[ResponseOut.of(v) for v in views])


@standards_router.get(
    "/{standard_id}/responses/{nation}",
    operation_id="getResponse",
    summary="One nation's answer, with history",
)
async def get_response(
    standard_id: str, nation: Nation, request: Request, response: Response, who: ActorDep
) -> ResponseOut:
    return _response(response, await service.get_response(database(request), who, standard_id, nation))


@standards_router.post(
    "/{standard_id}/responses/{nation}/ratify",
    operation_id="ratifyStandard",
    summary="Ratify, with reservations if any (the nation's standards staff, or NATO for the record)",
)
async def ratify(
    standard_id: str,
    nation: Nation,
    request: Request,
    response: Response,
    who: ActorDep,
    expected: IfMatch,
    body: RatifyIn | None = None,
) -> ResponseOut:
    reservations = [r.to_domain() for r in body.reservations] if body else []
    view = await service.ratify(unit_of_work(request), who, standard_id, nation, expected, reservations)
    return _response(response, view)


@standards_router.post(
    "/{standard_id}/responses/{nation}/decline", operation_id="declineStandard", summary="Not ratifying"
)
async def decline(
    standard_id: str, nation: Nation, request: Request, response: Response, who: ActorDep, expected: IfMatch
) -> ResponseOut:
    return _response(
        response, await service.decline(unit_of_work(request), who, standard_id, nation, expected)
    )


@standards_router.post(
    "/{standard_id}/responses/{nation}/reservations",
    operation_id="recordReservation",
    summary="Add a reservation (or replace the one on the same clause)",
)
async def record_reservation(
    standard_id: str,
    nation: Nation,
    body: ReservationIn,
    request: Request,
    response: Response,
    who: ActorDep,
    expected: IfMatch,
) -> ResponseOut:
    view = await service.record_reservation(
        unit_of_work(request), who, standard_id, nation, expected, body.to_domain()
    )
    return _response(response, view)


@standards_router.delete(
    "/{standard_id}/responses/{nation}/reservations/{clause}",
    operation_id="withdrawReservation",
    summary="Withdraw the reservation on a clause",
)
async def withdraw_reservation(
    standard_id: str,
    nation: Nation,
    clause: Annotated[str, Path(pattern=CLAUSE)],
    request: Request,
    response: Response,
    who: ActorDep,
    expected: IfMatch,
) -> ResponseOut:
    view = await service.withdraw_reservation(
        unit_of_work(request), who, standard_id, nation, expected, clause
    )
    return _response(response, view)


@standards_router.post(
    "/{standard_id}/responses/{nation}/implementation-forecast",
    operation_id="forecastImplementation",
    summary="When the nation expects to implement",
)
async def forecast_implementation(
    standard_id: str,
    nation: Nation,
    body: ForecastIn,
    request: Request,
    response: Response,
    who: ActorDep,
    expected: IfMatch,
) -> ResponseOut:
    view = await service.forecast_implementation(
        unit_of_work(request), who, standard_id, nation, expected, body.implementation_forecast
    )
    return _response(response, view)


@standards_router.post(
    "/{standard_id}/responses/{nation}/implementation",
    operation_id="recordImplementation",
    summary="The date the nation actually implemented (its own statement)",
)
async def record_implementation(
    standard_id: str,
    nation: Nation,
    body: ImplementedIn,
    request: Request,
    response: Response,
    who: ActorDep,
    expected: IfMatch,
) -> ResponseOut:
    view = await service.record_implementation(
        unit_of_work(request), who, standard_id, nation, expected, body.implemented_on
    )
    return _response(response, view)


# --- interoperability -----------------------------------------------------------------------------------


class PositionOut(BaseModel):
    nation: str
    status: str
    reservations: list[ReservationOut]
    implemented_on: date | None


class PairOut(BaseModel):
    nations: list[str]
    verdict: str = Field(description="interoperable, limited, not_implemented, unknown or not_interoperable")
    reasons: list[str]


class StandardInteroperabilityOut(BaseModel):
    standard_id: str
    reference: str
    status: str
    positions: list[PositionOut]
    pairs: list[PairOut]


class InteroperabilityOut(BaseModel):
    on: date
    standards: list[StandardInteroperabilityOut]
    pairs: list[PairOut] = Field(description="Over all the standards asked about: the worst verdict per pair")


def _pair(p: domain.PairVerdict) -> PairOut:
    return PairOut(nations=list(p.nations), verdict=p.verdict.label, reasons=list(p.reasons))


@interoperability_router.get(
    "", operation_id="interoperability", summary="Who ratified and implemented what, and a verdict per pair"
)
async def interoperability(
    request: Request,
    who: ActorDep,
    nations: Annotated[str, Query(max_length=400, description="Comma-separated, e.g. DEU,FRA,POL")],
    standards: Annotated[
        str,
        Query(
            max_length=2000,
            description="Comma-separated standard ids or numbers (a number means its edition in force)",
        ),
    ],
) -> InteroperabilityOut:
    chosen = nation_list(nations, "query.nations", minimum=2) or []
    refs = list(dict.fromkeys(s.strip() for s in standards.split(",") if s.strip()))
    if not refs or len(refs) > 50:
        raise invalid("query.standards", "name between 1 and 50 standards")
    report = await service.interoperability(database(request), who, nations=chosen, standards=refs)
    return InteroperabilityOut(
        on=utcnow().date(),
        standards=[
            StandardInteroperabilityOut(
                standard_id=s.standard_id,
                reference=s.reference,
                status=s.status.value,
                positions=[
                    PositionOut(
                        nation=p.nation,
                        status=p.status.value,
                        reservations=[ReservationOut.of(r) for r in p.reservations],
                        implemented_on=p.implemented_on,
                    )
                    for p in s.positions
                ],
                pairs=[_pair(p) for p in s.pairs],
            )
            for s in report.standards
        ],
        pairs=[_pair(p) for p in report.pairs],
    )


# --- interchangeability ---------------------------------------------------------------------------------


class BasisIn(_In):
    kind: BasisKind
    reference: str = Field(
        min_length=1, max_length=200, description="The standard edition's id, or the firing trial's reference"
    )


class ClearanceChange(_In):
    status: InterchangeabilityStatus
    basis: BasisIn
    nations: list[NationCode] | None = Field(default=None, max_length=40)
    restrictions: list[Annotated[str, Field(min_length=1, max_length=500)]] = Field(
        default_factory=list, max_length=20
    )

    def to_input(self) -> service.ClearanceInput:
        return service.ClearanceInput(
            status=self.status,
            basis=Basis(self.basis.kind, self.basis.reference.strip()),
            nations=None if self.nations is None else tuple(self.nations),
            restrictions=tuple(self.restrictions),
        )


class ClearanceIn(ClearanceChange):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "item": "155mm L15A1 HE round",
                    "platform": "PzH 2000",
                    "nations": ["DEU"],
                    "status": "verified",
                    "basis": {"kind": "trial", "reference": "WTD 91 firing trial 2024-17 (synthetic)"},
                }
            ]
        },
    )

    item: str = Field(min_length=1, max_length=200)
    platform: str = Field(min_length=1, max_length=200)
    nations: list[NationCode] = Field(min_length=1, max_length=40)
    releasability: ReleasabilityIn | None = Field(
        default=None, description="Default: all Allies; the nations cleared always read it"
    )


class ClearanceOut(BaseModel):
    id: str
    item: str
    platform: str
    nations: list[str]
    status: InterchangeabilityStatus
    basis: BasisOut
    restrictions: list[str]
    updated_at: datetime
    releasability: ReleasabilityOut
    version: int
    history: list[ChangeOut]

    @classmethod
    def of(cls, c: Interchangeability) -> ClearanceOut:
        return cls(
            id=c.id,
            item=c.item,
            platform=c.platform,
            nations=list(c.nations),
            status=c.status,
            basis=BasisOut(kind=c.basis.kind, reference=c.basis.reference),
            restrictions=list(c.restrictions),
            updated_at=c.updated_at,
            releasability=ReleasabilityOut.of(c.release),
            version=c.version,
            history=ChangeOut.all(c.history),
        )


class ClearancesOut(BaseModel):
    items: list[ClearanceOut]
    next: str | None


class AnswerOut(BaseModel):
    nation: str
    item: str
    platform: str
    answer: Answer
    reasons: list[str]
    clearance_id: str | None


def _clearance(response: Response, c: Interchangeability) -> ClearanceOut:
    response.headers["ETag"] = etag(c.version)
    return ClearanceOut.of(c)


@interchangeability_router.get(
    "", operation_id="canFire", summary="Can this nation use this item on that platform, and why or why not"
)
async def can_fire(
    request: Request,
    who: ActorDep,
    item: Annotated[str, Query(min_length=1, max_length=200)],
    platform: Annotated[str, Query(min_length=1, max_length=200)],
    nation: Annotated[
        str | None, Query(pattern=r"^[A-Z]{3}$", description="Default: the caller's nation")
    ] = None,
) -> AnswerOut:
    asked = nation or who.nation
    if asked not in domain.RESPONDING_NATIONS:
        raise invalid("query.nation", f"{asked} is not a nation; name one with `nation`")
    found = await service.can_fire(
        database(request), who, item=item.strip(), platform=platform.strip(), nation=asked
    )
    return AnswerOut(
        nation=found.nation,
        item=found.item,
        platform=found.platform,
        answer=found.answer,
        reasons=list(found.reasons),
        clearance_id=found.clearance_id,
    )


@interchangeability_router.post(
    "/clearances",
    status_code=201,
    operation_id="recordClearance",
    summary="Record an item's clearance for a platform",
)
async def record_clearance(
    body: ClearanceIn, request: Request, response: Response, who: ActorDep
) -> ClearanceOut:
    clearance = await service.record_clearance(
        unit_of_work(request),
        who,
        item=body.item,
        platform=body.platform,
        given=body.to_input(),
        releasability=_owned(body.releasability, who.nation),
    )
    response.headers["Location"] = f"/v1/interchangeability/clearances/{clearance.id}"
    return _clearance(response, clearance)


@interchangeability_router.get(
    "/clearances", operation_id="listClearances", summary="Clearances the caller may see"
)
async def list_clearances(
    request: Request,
    who: ActorDep,
    item: Annotated[str | None, Query(max_length=200)] = None,
    platform: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
) -> ClearancesOut:
    found, after = await service.list_clearances(
        database(request), who, item=item, platform=platform, limit=limit, after=cursor
    )
    return ClearancesOut(items=[ClearanceOut.of(c) for c in found], next=next_link(request, after))


@interchangeability_router.get(
    "/clearances/{clearance_id}", operation_id="getClearance", summary="One clearance"
)
async def get_clearance(
    clearance_id: str, request: Request, response: Response, who: ActorDep
) -> ClearanceOut:
    return _clearance(response, await service.get_clearance(database(request), who, clearance_id))


@interchangeability_router.put(
    "/clearances/{clearance_id}",
    operation_id="updateClearance",
    summary="Change a clearance's status, basis, nations or restrictions (If-Match required)",
)
async def update_clearance(
    clearance_id: str,
    body: ClearanceChange,
    request: Request,
    response: Response,
    who: ActorDep,
    expected: IfMatch,
) -> ClearanceOut:
    if expected is None:
        raise PreconditionRequired(
            "changing a clearance needs If-Match with the ETag of the version you read"
        )
    clearance = await service.update_clearance(
        unit_of_work(request), who, clearance_id, expected, body.to_input()
    )
    return _clearance(response, clearance)

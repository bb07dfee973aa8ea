"""HTTP routes of conformance claims: parse, call one use case, shape the answer."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from icep.platform.app import DatabaseDep, UnitOfWorkDep, runtime_of
from icep.platform.auth import ActorDep
from icep.platform.http import IfMatch, etag, next_link
from icep.standards.conformance import use_cases
from icep.standards.conformance.model import ConformanceClaim, ConformanceStatus, Product
from icep.standards.conformance.schemas import ClaimIn, ClaimOut, ClaimPage, EvidenceIn, VerifyIn
from icep.standards.schemas import CancelIn, owned_release
from icep.standards.settings import StandardsSettings

router = APIRouter(prefix="/v1/standards", tags=["standards"])


def _claim(response: Response, c: ConformanceClaim) -> ClaimOut:
    response.headers["ETag"] = etag(c.version)
    return ClaimOut.of(c)


@router.post(
    "/conformance", status_code=201, operation_id="claimConformance", summary="A product claims conformance"
)
async def claim_conformance(body: ClaimIn, uow: UnitOfWorkDep, response: Response, who: ActorDep) -> ClaimOut:
    claim = await use_cases.claim_conformance(
        uow,
        who,
        product=Product(body.product.manufacturer, body.product.product_code, body.product.name),
        standard_id=body.standard_id,
        level=body.level,
        evidence=tuple(body.evidence),
        releasability=owned_release(body.releasability, who.nation),
    )
    response.headers["Location"] = f"/v1/standards/conformance/{claim.id}"
    return _claim(response, claim)


@router.get("/conformance", operation_id="listConformanceClaims", summary="Conformance claims")
async def list_claims(
    request: Request,
    db: DatabaseDep,
    who: ActorDep,
    standard_id: Annotated[str | None, Query(max_length=36)] = None,
    product_code: Annotated[str | None, Query(max_length=100)] = None,
    status: ConformanceStatus | None = None,
    nation: Annotated[str | None, Query(pattern=r"^[A-Z]{3}$")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
) -> ClaimPage:
    claims, after = await use_cases.list_claims(
        db,
        who,
        standard_id=standard_id,
        product_code=product_code,
        status=status,
        nation=nation,
        limit=limit,
        after=cursor,
    )
    return ClaimPage(items=[ClaimOut.of(c) for c in claims], next=next_link(request, after))


@router.get("/conformance/{claim_id}", operation_id="getConformanceClaim", summary="One claim")
async def get_claim(claim_id: str, db: DatabaseDep, response: Response, who: ActorDep) -> ClaimOut:
    return _claim(response, await use_cases.get_claim(db, who, claim_id))


@router.post(
    "/conformance/{claim_id}/start-test", operation_id="startConformanceTest", summary="Testing starts"
)
async def start_test(
    claim_id: str,
    uow: UnitOfWorkDep,
    response: Response,
    who: ActorDep,
    expected: IfMatch,
    body: EvidenceIn | None = None,
) -> ClaimOut:
    evidence = tuple(body.evidence) if body else ()
    return _claim(response, await use_cases.start_test(uow, who, claim_id, expected, evidence))


@router.post(
    "/conformance/{claim_id}/verify", operation_id="verifyConformance", summary="Verified, until a date"
)
async def verify_claim(
    claim_id: str,
    body: VerifyIn,
    request: Request,
    uow: UnitOfWorkDep,
    response: Response,
    who: ActorDep,
    expected: IfMatch,
) -> ClaimOut:
    """Verification is independent: NATO's standards staff or another nation's test centre (standards
    staff of a nation the claim is released to) verify a claim under test. The claiming nation's own staff
    are refused with 403 unless the deployment allows self-verification
    (`ICEP_STANDARDS_ALLOW_SELF_VERIFICATION`)."""
    settings = runtime_of(request).settings_as(StandardsSettings)
    claim = await use_cases.verify_claim(
        uow,
        who,
        claim_id,
        expected,
        body.expires_on,
        tuple(body.evidence),
        allow_self_verification=settings.allow_self_verification,
    )
    return _claim(response, claim)


@router.post("/conformance/{claim_id}/reject", operation_id="rejectConformance", summary="Rejected")
async def reject_claim(
    claim_id: str, body: CancelIn, uow: UnitOfWorkDep, response: Response, who: ActorDep, expected: IfMatch
) -> ClaimOut:
    return _claim(response, await use_cases.reject_claim(uow, who, claim_id, expected, body.reason))

"""HTTP routes of conformance claims: parse, call one use case, shape the answer."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from icep.platform.app import DatabaseDep, UnitOfWorkDep, runtime_of
from icep.platform.auth import ActorDep
from icep.platform.http import IfMatch, etag, next_link
from icep.platform.openapi import CREATED_ID, from_path, links
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
    "/conformance",
    status_code=201,
    operation_id="claimConformance",
    openapi_extra=links(
        "getConformanceClaim", "startConformanceTest", status=201, if_match=True, claim_id=CREATED_ID
    ),
    summary="Claim a product's conformance to an edition",
)
async def claim_conformance(body: ClaimIn, uow: UnitOfWorkDep, response: Response, who: ActorDep) -> ClaimOut:
    """Standards staff (role `standards`) of a nation claim that a product conforms to a promulgated edition
    (at one of its levels): status `claimed`. Read by its `releasability` (default: all Allies) and always by
    NATO's standards staff, who assess claims. Raises `icep.standards.conformance.claimed.v1`. A verified
    claim is what an award in procurement needs for a required standard. 409 when the edition is not
    promulgated; 422 for an unknown level or releasing to nations the edition is not released to."""
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


@router.get(
    "/conformance", operation_id="listConformanceClaims", summary="Conformance claims the caller may see"
)
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
    """The conformance claims the caller's nation may read, in pages, narrowed by standard, product code,
    status or nation."""
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


@router.get("/conformance/{claim_id}", operation_id="getConformanceClaim", summary="One conformance claim")
async def get_claim(claim_id: str, db: DatabaseDep, response: Response, who: ActorDep) -> ClaimOut:
    """One conformance claim with its `ETag`; 404 when the caller's nation may not read it."""
    return _claim(response, await use_cases.get_claim(db, who, claim_id))


@router.post(
    "/conformance/{claim_id}/start-test",
    operation_id="startConformanceTest",
    openapi_extra=links(
        "getConformanceClaim",
        "verifyConformance",
        "rejectConformance",
        if_match=True,
        claim_id=from_path("claim_id"),
    ),
    summary="Start testing a conformance claim",
)
async def start_test(
    claim_id: str,
    uow: UnitOfWorkDep,
    response: Response,
    who: ActorDep,
    expected: IfMatch,
    body: EvidenceIn | None = None,
) -> ClaimOut:
    """The claiming nation's or NATO's standards staff start testing a claim: `claimed` -> `under_test`, with
    evidence references if any. Requires `If-Match` with the claim's `ETag` (428 without, 412 when stale).
    Raises `icep.standards.conformance.test_started.v1`."""
    evidence = tuple(body.evidence) if body else ()
    return _claim(response, await use_cases.start_test(uow, who, claim_id, expected, evidence))


@router.post(
    "/conformance/{claim_id}/verify",
    operation_id="verifyConformance",
    summary="Verify a conformance claim, until a date",
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
    (`ICEP_STANDARDS_ALLOW_SELF_VERIFICATION`). `under_test` -> `verified` until `expires_on` (then
    `expired`, raising `icep.standards.conformance.expired.v1`), resting on at least one evidence
    reference. Requires `If-Match` with the claim's `ETag` (428 without, 412 when stale). Raises
    `icep.standards.conformance.verified.v1`. 409 when not under test."""
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


@router.post(
    "/conformance/{claim_id}/reject", operation_id="rejectConformance", summary="Reject a conformance claim"
)
async def reject_claim(
    claim_id: str, body: CancelIn, uow: UnitOfWorkDep, response: Response, who: ActorDep, expected: IfMatch
) -> ClaimOut:
    """An independent verifier (NATO's standards staff or another nation's the claim is released to) rejects a
    claim under test, with a reason; the claiming nation may withdraw its claim this way too: `under_test` ->
    `rejected`. Requires `If-Match` with the claim's `ETag` (428 without, 412 when stale). Raises
    `icep.standards.conformance.rejected.v1`. 409 when not under test."""
    return _claim(response, await use_cases.reject_claim(uow, who, claim_id, expected, body.reason))

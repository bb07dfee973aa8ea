"""HTTP routes of suppliers and their adjudication."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from icep.platform.app import DatabaseDep, UnitOfWorkDep
from icep.platform.auth import ActorDep
from icep.platform.errors import PreconditionRequired
from icep.platform.http import IfMatch, etag, next_link
from icep.platform.openapi import CREATED_ID, from_path, links
from icep.procurement.schema_types import (
    Cursor,
    Limit,
    owned,
)
from icep.procurement.suppliers import use_cases
from icep.procurement.suppliers.model import (
    Owner,
    Screening,
    Supplier,
)
from icep.procurement.suppliers.schemas import (
    BlockIn,
    MitigationIn,
    SupplierCreate,
    SupplierOut,
    SupplierPage,
)

router = APIRouter(prefix="/v1/suppliers", tags=["suppliers"])


def _supplier(response: Response, s: Supplier) -> SupplierOut:
    response.headers["ETag"] = etag(s.version)
    return SupplierOut.of(s)


@router.post(
    "",
    status_code=201,
    operation_id="registerSupplier",
    openapi_extra=links(
        "getSupplier", "clearSupplier", "blockSupplier", status=201, if_match=True, supplier_id=CREATED_ID
    ),
    summary="Register a supplier (screened at once)",
)
async def register_supplier(
    body: SupplierCreate, uow: UnitOfWorkDep, response: Response, who: ActorDep
) -> SupplierOut:
    """Procurement staff (role `procurement`) register a supplier with its ownership; it is screened at once
    against the restricted countries and lists: `screening` is `clear`, `potential_match` (to be cleared or
    blocked by a named person) or `blocked`. Read by its `releasability` (default: all Allies). Raises
    `icep.procurement.supplier.registered.v1`, `icep.procurement.supplier.screened.v1` and, on a potential
    match, `icep.procurement.supplier.flagged.v1`, for its readers. Only a supplier `clear` or `cleared` can
    be awarded."""
    supplier = await use_cases.register_supplier(
        uow,
        who,
        use_cases.NewSupplier(
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
            releasability=owned(body.releasability, who.nation),
        ),
    )
    response.headers["Location"] = f"/v1/suppliers/{supplier.id}"
    return _supplier(response, supplier)


@router.get("", operation_id="listSuppliers", summary="Suppliers the caller may see")
async def list_suppliers(
    request: Request,
    db: DatabaseDep,
    who: ActorDep,
    screening: Screening | None = None,
    nation: Annotated[str | None, Query(pattern=r"^[A-Z]{3,4}$", description="Who registered it")] = None,
    organisation_id: Annotated[str | None, Query(max_length=100)] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> SupplierPage:
    """The suppliers the caller's nation may read, in pages, narrowed by screening status, registering nation
    or organisation id."""
    found, after = await use_cases.list_suppliers(
        db,
        who,
        screening=screening,
        nation=nation,
        organisation_id=organisation_id,
        limit=limit,
        after=cursor,
    )
    return SupplierPage(items=[SupplierOut.of(s) for s in found], next=next_link(request, after))


@router.get(
    "/{supplier_id}",
    operation_id="getSupplier",
    openapi_extra=links(
        "clearSupplier", "blockSupplier", if_match=True, supplier_id=from_path("supplier_id")
    ),
    summary="One supplier, with its screening",
)
async def get_supplier(supplier_id: str, db: DatabaseDep, response: Response, who: ActorDep) -> SupplierOut:
    """One supplier with its screening, matches and history, and its `ETag`; 404 when the caller's nation may
    not read it."""
    return _supplier(response, await use_cases.get_supplier(db, who, supplier_id))


@router.post(
    "/{supplier_id}/clear",
    operation_id="clearSupplier",
    summary="Clear a supplier's potential match, with its mitigation",
)
async def clear_supplier(
    supplier_id: str,
    body: MitigationIn,
    uow: UnitOfWorkDep,
    response: Response,
    who: ActorDep,
    expected: IfMatch,
) -> SupplierOut:
    """A named person clears a potential match, recording the mitigation: -> `cleared` (a re-screening that
    finds only the adjudicated matches keeps it cleared). Only the registering Ally's procurement staff or
    NATO's (NATO's alone for a supplier a partner registered) adjudicate, and only a `potential_match`; the
    adjudicator is a named person. Requires `If-Match` with the `ETag` of the version whose matches were read
    (428 without, 412 when stale). Raises `icep.procurement.supplier.cleared.v1`. 409 when the supplier is not
    a potential match."""
    s = await use_cases.clear_supplier(
        uow,
        who,
        supplier_id,
        _matches_seen(expected),
        body.mitigation,
        body.adjudicator,
    )
    return _supplier(response, s)


@router.post(
    "/{supplier_id}/block",
    operation_id="blockSupplier",
    summary="Block a supplier on a potential match",
)
async def block_supplier(
    supplier_id: str,
    body: BlockIn,
    uow: UnitOfWorkDep,
    response: Response,
    who: ActorDep,
    expected: IfMatch,
) -> SupplierOut:
    """A named person blocks a supplier on a potential match, saying why: -> `blocked` (it cannot be awarded).
    Only the registering Ally's procurement staff or NATO's (NATO's alone for a supplier a partner registered)
    adjudicate, and only a `potential_match`; the adjudicator is a named person. Requires `If-Match` with the
    `ETag` of the version whose matches were read (428 without, 412 when stale). Raises
    `icep.procurement.supplier.blocked.v1`. 409 when the supplier is not a potential match."""
    s = await use_cases.block_supplier(
        uow, who, supplier_id, _matches_seen(expected), body.reason, body.adjudicator
    )
    return _supplier(response, s)


def _matches_seen(expected: int | None) -> int:
    """A person adjudicates the matches they saw: the version they read, as If-Match."""
    if expected is None:
        raise PreconditionRequired(
            "adjudicating a supplier needs If-Match with the ETag of the version whose matches you read"
        )
    return expected

"""HTTP routes of the OCDS export: an initiative's (or a call-off's) releases as a release package or a
record package, at the configured public URL."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request

from icep.platform.app import DatabaseDep, runtime_of
from icep.platform.auth import ActorDep
from icep.platform.events import utcnow
from icep.procurement.ocds import packages, use_cases
from icep.procurement.settings import ProcurementSettings

#: Under the initiatives' prefix and tag: the export is part of the initiatives' API.
router = APIRouter(prefix="/v1/initiatives", tags=["initiatives"])


def public_url(request: Request) -> str:
    """This request's path under the configured public URL (`ICEP_PROCUREMENT_PUBLIC_URL`): never from
    the request's Host or X-Forwarded-* headers, which a caller controls."""
    return f"{runtime_of(request).settings_as(ProcurementSettings).public_url}{request.url.path}"


def _published(releases: list[dict[str, Any]]) -> datetime:
    """A package is as new as its latest release: the same releases make the same package."""
    dates = [datetime.fromisoformat(str(r["date"]).replace("Z", "+00:00")) for r in releases]
    return max(dates) if dates else utcnow()


@router.get(
    "/{initiative_id}/ocds",
    operation_id="ocdsReleasePackage",
    summary="The initiative's OCDS release package",
)
async def ocds_release_package(
    initiative_id: str, request: Request, db: DatabaseDep, who: ActorDep
) -> dict[str, Any]:
    """The initiative's OCDS releases (one per change of its contracting process), as a release package. Open
    Contracting Data Standard 1.1 JSON, built from the initiative as the caller may see it (the same
    visibility and disclosure rule as `GET /v1/initiatives/{initiative_id}`); 404 when the caller's nation may
    not read the initiative."""
    _i, releases = await use_cases.ocds_releases(db, who, initiative_id)
    return packages.release_package(releases, uri=public_url(request), published_date=_published(releases))


@router.get(
    "/{initiative_id}/ocds/record",
    operation_id="ocdsRecordPackage",
    summary="The initiative's OCDS record package",
)
async def ocds_record_package(
    initiative_id: str, request: Request, db: DatabaseDep, who: ActorDep
) -> dict[str, Any]:
    """The initiative's OCDS record: every release and the compiled release, as a record package. Open
    Contracting Data Standard 1.1 JSON, built from the initiative as the caller may see it (the same
    visibility and disclosure rule as `GET /v1/initiatives/{initiative_id}`); 404 when the caller's nation may
    not read the initiative."""
    i, releases = await use_cases.ocds_releases(db, who, initiative_id)
    return packages.record_package(
        i.ocid, releases, uri=public_url(request), published_date=_published(releases)
    )


@router.get(
    "/{initiative_id}/call-offs/{call_off_id}/ocds",
    operation_id="callOffOcdsReleasePackage",
    summary="A call-off's OCDS release package",
)
async def call_off_ocds_release_package(
    initiative_id: str, call_off_id: str, request: Request, db: DatabaseDep, who: ActorDep
) -> dict[str, Any]:
    """A call-off's own OCDS process (its own `ocid`, linked to the framework contract's), as a release
    package. Open Contracting Data Standard 1.1 JSON, built from the initiative as the caller may see it (the
    same visibility and disclosure rule as `GET /v1/initiatives/{initiative_id}`); 404 when the caller's
    nation may not read the initiative."""
    _c, releases = await use_cases.call_off_releases(db, who, initiative_id, call_off_id)
    return packages.release_package(releases, uri=public_url(request), published_date=_published(releases))


@router.get(
    "/{initiative_id}/call-offs/{call_off_id}/ocds/record",
    operation_id="callOffOcdsRecordPackage",
    summary="A call-off's OCDS record package",
)
async def call_off_ocds_record_package(
    initiative_id: str, call_off_id: str, request: Request, db: DatabaseDep, who: ActorDep
) -> dict[str, Any]:
    """A call-off's OCDS record (its releases and the compiled release), as a record package. Open Contracting
    Data Standard 1.1 JSON, built from the initiative as the caller may see it (the same visibility and
    disclosure rule as `GET /v1/initiatives/{initiative_id}`); 404 when the caller's nation may not read the
    initiative."""
    c, releases = await use_cases.call_off_releases(db, who, initiative_id, call_off_id)
    return packages.record_package(
        c.ocid, releases, uri=public_url(request), published_date=_published(releases)
    )

"""Conformance claims in the database: rows <-> `ConformanceClaim`."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from icep.platform import audit
from icep.platform.domain import Actor
from icep.platform.errors import NotFound
from icep.standards.conformance.model import ConformanceClaim, ConformanceStatus, Product
from icep.standards.conformance.rows import ConformanceRow
from icep.standards.records import history_json, history_of, may_read, release_of


def to_claim(row: ConformanceRow) -> ConformanceClaim:
    return ConformanceClaim(
        id=row.id,
        nation=row.nation,
        product=Product(row.manufacturer, row.product_code, row.product_name),
        standard_id=row.standard_id,
        level=row.level,
        status=ConformanceStatus(row.status),
        evidence=tuple(row.evidence),
        expires_on=row.expires_on,
        version=row.version,
        history=history_of(row.history),
        rejection_reason=row.rejection_reason,
        releasability=release_of(row.nation, row.release_scope, row.release_nations),
    )


def store_claim(row: ConformanceRow, c: ConformanceClaim) -> None:
    row.status = c.status.value
    row.evidence = list(c.evidence)
    row.expires_on = c.expires_on
    row.rejection_reason = c.rejection_reason
    row.version = c.version
    row.history = history_json(c.history)


async def claim_row(session: AsyncSession, actor: Actor, claim_id: str, *, lock: bool) -> ConformanceRow:
    query = select(ConformanceRow).where(col(ConformanceRow.id) == claim_id)
    row = (await session.execute(query.with_for_update() if lock else query)).scalar_one_or_none()
    release = None if row is None else to_claim(row).release
    if release is not None:
        audit.subject("conformance_claim", claim_id, release.owner)
    if release is None or row is None or not may_read(release, actor.nation):
        raise NotFound(f"no conformance claim {claim_id}")
    return row

"""Conformance claims in the database: rows <-> `ConformanceClaim`, the repository a change loads and
saves them through, and the queries of the claims a caller may read."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from icep.contracts.releasability import encode_tokens
from icep.platform import audit, visibility
from icep.platform.domain import Actor, check_version
from icep.platform.errors import NotFound
from icep.platform.outbox import UnitOfWork
from icep.standards.conformance.model import ConformanceClaim, ConformanceStatus, Product
from icep.standards.conformance.rows import ConformanceRow
from icep.standards.records import history_json, history_of, may_read, readers, release_of
from icep.standards.standards.repository import reference_of


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


async def find_claims(
    session: AsyncSession,
    actor: Actor,
    *,
    standard_id: str | None,
    product_code: str | None,
    status: ConformanceStatus | None,
    nation: str | None,
    limit: int,
    after: str | None,
) -> tuple[list[ConformanceClaim], str | None]:
    """A page of the claims the caller may read, by id; the cursor is the last id of the page."""
    query = select(ConformanceRow).where(visibility.readable_by(col(ConformanceRow.readers), actor.nation))
    if standard_id:
        query = query.where(col(ConformanceRow.standard_id) == standard_id)
    if product_code:
        query = query.where(col(ConformanceRow.product_code) == product_code)
    if status:
        query = query.where(col(ConformanceRow.status) == status.value)
    if nation:
        query = query.where(col(ConformanceRow.nation) == nation)
    if after:
        query = query.where(col(ConformanceRow.id) > after)
    rows = (await session.execute(query.order_by(col(ConformanceRow.id)).limit(limit + 1))).scalars().all()
    claims = [c for c in (to_claim(r) for r in rows[:limit]) if may_read(c.release, actor.nation)]
    return claims, (rows[limit - 1].id if len(rows) > limit else None)


class ClaimRepository:
    """Conformance claims for a change, in one unit of work. A claim it loads carries its edition's
    reference (for its events); `save` updates the row it was read from, or adds a new claim's row, and
    hands the claim to the unit of work, which publishes what it recorded with the same commit."""

    def __init__(self, tx: UnitOfWork) -> None:
        self.tx = tx
        self.session = tx.session
        self._rows: dict[str, ConformanceRow] = {}

    async def _loaded(self, row: ConformanceRow) -> ConformanceClaim:
        self._rows[row.id] = row
        claim = to_claim(row)
        return replace(claim, standard_reference=await reference_of(self.session, claim.standard_id))

    async def get_for_update(
        self, actor: Actor, claim_id: str, expected_version: int | None
    ) -> ConformanceClaim:
        row = await claim_row(self.session, actor, claim_id, lock=True)
        check_version("conformance claim", row.version, expected_version)
        return await self._loaded(row)

    async def due(self, now: datetime, batch: int) -> list[ConformanceClaim]:
        """Up to `batch` verified claims whose date has come, locked; rows another replica holds are
        skipped (it is expiring them)."""
        query = (
            select(ConformanceRow)
            .where(
                col(ConformanceRow.status) == ConformanceStatus.VERIFIED.value,
                col(ConformanceRow.expires_on) <= now.date(),
            )
            .order_by(col(ConformanceRow.id))
            .limit(batch)
            .with_for_update(skip_locked=True)
        )
        return [await self._loaded(row) for row in (await self.session.execute(query)).scalars().all()]

    async def save(self, claim: ConformanceClaim) -> None:
        row = self._rows.get(claim.id)
        if row is None:
            row = ConformanceRow(
                id=claim.id,
                nation=claim.nation,
                manufacturer=claim.product.manufacturer,
                product_code=claim.product.product_code,
                product_name=claim.product.name,
                standard_id=claim.standard_id,
                level=claim.level,
                status=claim.status.value,
                version=claim.version,
                release_scope=claim.release.scope.value,
                release_nations=list(claim.release.nations),
                readers=encode_tokens(readers(claim.release)),
            )
            store_claim(row, claim)
            self.session.add(row)
            self._rows[claim.id] = row
        else:
            store_claim(row, claim)
        self.tx.collect(claim)

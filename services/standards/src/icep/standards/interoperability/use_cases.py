"""The read side: interoperability verdicts between nations and each nation's progress, from the
standards and answers the caller may read.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from icep.platform.db import Database
from icep.platform.domain import Actor, invalid
from icep.platform.events import utcnow
from icep.standards.answers.repository import responses_to
from icep.standards.interoperability import model
from icep.standards.interoperability.model import InteroperabilityReport, NationProgress
from icep.standards.standards.model import Standard, StandardStatus
from icep.standards.standards.repository import find_standard, visible_standards


async def resolve_standards(session: AsyncSession, actor: Actor, refs: Sequence[str]) -> list[Standard]:
    """Standards named by id, or by number (its edition in force, else its latest edition)."""
    found: list[Standard] = []
    for ref in refs:
        by_id = await find_standard(session, actor, ref)
        if by_id is not None:
            found.append(by_id)
            continue
        editions = await visible_standards(session, actor, number=ref)
        if not editions:
            raise invalid("query.standards", f"no standard {ref!r}")
        in_force = [s for s in editions if s.in_force]
        found.append(max(in_force or editions, key=lambda s: s.edition))
    return list({s.id: s for s in found}.values())


async def interoperability(
    db: Database, actor: Actor, *, nations: Sequence[str], standards: Sequence[str]
) -> InteroperabilityReport:
    async with db.sessions() as session:
        chosen = await resolve_standards(session, actor, standards)
        responses = await responses_to(session, [s.id for s in chosen])
    return model.interoperability(chosen, responses, nations, utcnow().date())


async def progress(db: Database, actor: Actor, nations: Sequence[str]) -> list[NationProgress]:
    async with db.sessions() as session:
        standards = await visible_standards(session, actor, status=StandardStatus.PROMULGATED)
        responses = await responses_to(session, [s.id for s in standards])
    today = utcnow().date()
    return [model.progress(n, standards, responses, today) for n in nations]

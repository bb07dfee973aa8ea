"""Use cases of the standards service: each change is one unit of work (rows and events in one transaction).

Reads apply one visibility rule (the record's reader tokens meet the caller's) in SQL and again in Python,
so a list, an answer or a count never shows what the caller may not read.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from icep.contracts import EventPayload, Releasability, ReleasabilityScope
from icep.contracts.releasability import encode_tokens
from icep.contracts.standards import (
    ConformanceClaimed,
    ConformanceExpired,
    ConformanceRejected,
    ConformanceTestStarted,
    ConformanceVerified,
    ImplementationForecast,
    InterchangeabilityUpdated,
    ReservationFigure,
    ReservationRecorded,
    ReservationWithdrawn,
    ResponseImplemented,
    ResponseRatified,
    ResponseRecorded,
    StandardCancelled,
    StandardCirculated,
    StandardDrafted,
    StandardPromulgated,
    StandardSuperseded,
)
from icep.platform import audit, visibility
from icep.platform.db import Database, advisory_key
from icep.platform.domain import invalid
from icep.platform.errors import Conflict, NotFound, PreconditionFailed
from icep.platform.events import OutgoingEvent, utcnow
from icep.platform.ids import new_id
from icep.platform.outbox import UnitOfWork, UnitOfWorkFactory
from icep.platform.telemetry import tracer
from icep.standards import domain
from icep.standards.domain import (
    ALLIES_RELEASE,
    Actor,
    Basis,
    BasisKind,
    Change,
    ConformanceClaim,
    ConformanceStatus,
    Interchangeability,
    InterchangeabilityAnswer,
    InterchangeabilityStatus,
    InteroperabilityReport,
    NationalResponse,
    NationProgress,
    Product,
    Reservation,
    ReservationKind,
    ResponseStatus,
    Standard,
    StandardKind,
    StandardStatus,
)
from icep.standards.models import ClearanceRow, ConformanceRow, ResponseRow, StandardRow

log = logging.getLogger("icep.standards")


# --- storage codec ---------------------------------------------------------------------------------------


def _history_json(history: Sequence[Change]) -> list[list[str]]:
    return [[c.action, c.status, c.by, c.at.isoformat(), c.note] for c in history]


def _history(rows: Sequence[Sequence[str]]) -> tuple[Change, ...]:
    return tuple(Change(a, s, by, datetime.fromisoformat(at), note) for a, s, by, at, note in rows)


def _release(owner: str, scope: str, nations: Sequence[str]) -> Releasability:
    return Releasability(owner=owner, scope=ReleasabilityScope(scope), nations=tuple(nations))


def _standard(row: StandardRow) -> Standard:
    return Standard(
        id=row.id,
        kind=StandardKind(row.kind),
        number=row.number,
        edition=row.edition,
        title=row.title,
        covering_publications=tuple(row.covering_publications),
        domain=row.domain,
        capability_areas=tuple(row.capability_areas),
        status=StandardStatus(row.status),
        version=row.version,
        history=_history(row.history),
        levels=tuple(row.levels),
        supersedes=row.supersedes,
        superseded_by=row.superseded_by,
        promulgated_on=row.promulgated_on,
        cancellation_reason=row.cancellation_reason,
        releasability=_release("NATO", row.release_scope, row.release_nations),
    )


def _store_standard(row: StandardRow, s: Standard) -> None:
    row.status = s.status.value
    row.version = s.version
    row.superseded_by = s.superseded_by
    row.promulgated_on = s.promulgated_on
    row.cancellation_reason = s.cancellation_reason
    row.history = _history_json(s.history)


def _new_standard_row(s: Standard, now: datetime) -> StandardRow:
    return StandardRow(
        id=s.id,
        kind=s.kind.value,
        number=s.number,
        edition=s.edition,
        title=s.title,
        covering_publications=list(s.covering_publications),
        domain=s.domain,
        capability_areas=list(s.capability_areas),
        levels=list(s.levels),
        status=s.status.value,
        version=s.version,
        supersedes=s.supersedes,
        release_scope=s.releasability.scope.value,
        release_nations=list(s.releasability.nations),
        readers=encode_tokens(domain.readers(s.releasability)),
        history=_history_json(s.history),
        created_at=now,
    )


def _reservation_json(r: Reservation) -> dict[str, str]:
    return {"clause": r.clause, "kind": r.kind.value, "detail": r.detail}


def _response(row: ResponseRow) -> NationalResponse:
    return NationalResponse(
        standard_id=row.standard_id,
        nation=row.nation,
        status=ResponseStatus(row.status),
        reservations=tuple(
            Reservation(r["clause"], ReservationKind(r["kind"]), r["detail"]) for r in row.reservations
        ),
        implementation_forecast=row.implementation_forecast,
        implemented_on=row.implemented_on,
        version=row.version,
        history=_history(row.history),
    )


def _store_response(row: ResponseRow, r: NationalResponse) -> None:
    row.status = r.status.value
    row.reservations = [_reservation_json(x) for x in r.reservations]
    row.implementation_forecast = r.implementation_forecast
    row.implemented_on = r.implemented_on
    row.version = r.version
    row.history = _history_json(r.history)


def _claim(row: ConformanceRow) -> ConformanceClaim:
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
        history=_history(row.history),
        rejection_reason=row.rejection_reason,
        releasability=_release(row.nation, row.release_scope, row.release_nations),
    )


def _store_claim(row: ConformanceRow, c: ConformanceClaim) -> None:
    row.status = c.status.value
    row.evidence = list(c.evidence)
    row.expires_on = c.expires_on
    row.rejection_reason = c.rejection_reason
    row.version = c.version
    row.history = _history_json(c.history)


def _clearance(row: ClearanceRow) -> Interchangeability:
    return Interchangeability(
        id=row.id,
        item=row.item,
        platform=row.platform,
        nations=tuple(row.nations),
        status=InterchangeabilityStatus(row.status),
        basis=Basis(BasisKind(row.basis_kind), row.basis_reference),
        restrictions=tuple(row.restrictions),
        updated_at=row.updated_at,
        version=row.version,
        history=_history(row.history),
        releasability=_release(row.owner, row.release_scope, row.release_nations),
    )


def _store_clearance(row: ClearanceRow, c: Interchangeability) -> None:
    row.nations = list(c.nations)
    row.status = c.status.value
    row.basis_kind = c.basis.kind.value
    row.basis_reference = c.basis.reference
    row.restrictions = list(c.restrictions)
    row.updated_at = c.updated_at
    row.version = c.version
    row.history = _history_json(c.history)
    row.release_scope = c.release.scope.value
    row.release_nations = list(c.release.nations)
    row.readers = encode_tokens(domain.readers(c.release))


# --- visibility ------------------------------------------------------------------------------------------


def _readable_by(column: Any, actor: Actor) -> Any:
    """SQL: the reader tokens in `column` share one with the caller's."""
    return visibility.readable_by(column, actor.nation)


def _check_version(kind: str, version: int, expected: int | None) -> None:
    if expected is not None and expected != version:
        raise PreconditionFailed(
            f"the {kind} is at version {version}, not {expected}", current_version=version
        )


async def _standard_row(
    session: AsyncSession, actor: Actor, standard_id: str, *, lock: bool, share: bool = False
) -> StandardRow:
    """The standard, if the caller may read it; locked for an update, or (`share`) so that it does not
    change while something that depends on its state (a national answer) is recorded."""
    query = select(StandardRow).where(col(StandardRow.id) == standard_id)
    if lock or share:
        query = query.with_for_update(read=share and not lock)
    row = (await session.execute(query)).scalar_one_or_none()
    if row is None or not domain.may_read(_standard(row).releasability, actor.nation):
        raise NotFound(f"no standard {standard_id}")
    return row


# --- events ----------------------------------------------------------------------------------------------


def _publish(tx: UnitOfWork, subject: str, release: Releasability, payload: EventPayload) -> None:
    tx.publish(OutgoingEvent(payload=payload, subject=subject, releasability=release))


def _standard_fields(s: Standard) -> dict[str, Any]:
    return {
        "standard_id": s.id,
        "kind": s.kind.value,
        "number": s.number,
        "edition": s.edition,
        "title": s.title,
        "version": s.version,
    }


def _reservation_figure(r: Reservation) -> ReservationFigure:
    return ReservationFigure(clause=r.clause, kind=r.kind.value, detail=r.detail)


# --- the catalogue ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DraftStandard:
    kind: StandardKind
    number: str
    edition: int
    title: str
    domain: str
    covering_publications: tuple[str, ...] = ()
    capability_areas: tuple[str, ...] = ()
    levels: tuple[str, ...] = ()
    supersedes: str | None = None
    releasability: Releasability = ALLIES_RELEASE


async def draft_standard(uow: UnitOfWorkFactory, actor: Actor, draft: DraftStandard) -> Standard:
    now = utcnow()
    async with uow() as tx:
        older = None
        if draft.supersedes is not None:
            older = _standard(await _standard_row(tx.session, actor, draft.supersedes, lock=False))
        standard = Standard.draft(
            id=new_id(),
            actor=actor,
            kind=draft.kind,
            number=draft.number,
            edition=draft.edition,
            title=draft.title,
            domain=draft.domain,
            now=now,
            covering_publications=draft.covering_publications,
            capability_areas=draft.capability_areas,
            levels=draft.levels,
            supersedes=older,
            releasability=draft.releasability,
        )
        same = await tx.session.execute(
            select(col(StandardRow.id)).where(
                col(StandardRow.kind) == standard.kind.value,
                col(StandardRow.number) == standard.number,
                col(StandardRow.edition) == standard.edition,
            )
        )
        if same.first() is not None:
            raise Conflict(f"{standard.reference} is already in the catalogue")
        tx.session.add(_new_standard_row(standard, now))
        _publish(
            tx,
            standard.id,
            standard.releasability,
            StandardDrafted(
                **_standard_fields(standard),
                covering_publications=list(standard.covering_publications),
                domain=standard.domain,
                capability_areas=list(standard.capability_areas),
                levels=list(standard.levels),
                supersedes=standard.supersedes,
                drafted_by=actor.id,
                drafted_at=now,
            ),
        )
    log.info("%s drafted by %s", standard.reference, actor.id)
    return standard


async def _change_standard(
    uow: UnitOfWorkFactory,
    actor: Actor,
    standard_id: str,
    expected: int | None,
    change: Callable[[Standard, datetime], Standard],
    announce: Callable[[Standard, datetime], EventPayload],
) -> Standard:
    async with uow() as tx:
        row = await _standard_row(tx.session, actor, standard_id, lock=True)
        standard = _standard(row)
        _check_version("standard", standard.version, expected)
        now = utcnow()
        changed = change(standard, now)
        _store_standard(row, changed)
        _publish(tx, changed.id, changed.releasability, announce(changed, now))
    log.info("%s is %s after %s", changed.reference, changed.status.value, actor.id)
    return changed


async def circulate_standard(
    uow: UnitOfWorkFactory, actor: Actor, standard_id: str, expected: int | None
) -> Standard:
    return await _change_standard(
        uow,
        actor,
        standard_id,
        expected,
        lambda s, now: s.circulate_for_ratification(actor, now),
        lambda s, now: StandardCirculated(**_standard_fields(s), circulated_by=actor.id, circulated_at=now),
    )


async def promulgate_standard(
    uow: UnitOfWorkFactory, actor: Actor, standard_id: str, expected: int | None
) -> Standard:
    """One edition of a standard is in force: promulgating an edition supersedes every promulgated lower
    edition of the same standard in the same transaction, and is refused while a higher one is in force."""
    async with uow() as tx:
        first = _standard(await _standard_row(tx.session, actor, standard_id, lock=False))
        if tx.session.bind is not None and tx.session.bind.dialect.name == "postgresql":
            # Two promulgations of editions of one standard see each other: one at a time.
            key = advisory_key(f"icep-standards-{first.kind.value}-{first.number}")
            await tx.session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})
        row = await _standard_row(tx.session, actor, standard_id, lock=True)
        standard = _standard(row)
        _check_version("standard", standard.version, expected)
        siblings = (
            (
                await tx.session.execute(
                    select(StandardRow)
                    .where(
                        col(StandardRow.kind) == standard.kind.value,
                        col(StandardRow.number) == standard.number,
                        col(StandardRow.status) == StandardStatus.PROMULGATED.value,
                        col(StandardRow.id) != standard.id,
                    )
                    .order_by(col(StandardRow.edition))
                    .with_for_update()
                )
            )
            .scalars()
            .all()
        )
        now = utcnow()
        changed = standard.promulgate(actor, now)  # who may, and from which state: before what is in force
        newer = [_standard(r).reference for r in siblings if r.edition > standard.edition]
        if newer:
            raise Conflict(f"{newer[-1]} is in force: {standard.reference} can no longer be promulgated")
        _store_standard(row, changed)
        _publish(
            tx,
            changed.id,
            changed.releasability,
            StandardPromulgated(
                **_standard_fields(changed),
                promulgated_by=actor.id,
                promulgated_at=now,
                promulgated_on=changed.promulgated_on or now.date(),
                supersedes=changed.supersedes,
            ),
        )
        for older_row in siblings:
            replaced = _standard(older_row).supersede(actor, changed, now)
            _store_standard(older_row, replaced)
            _publish(
                tx,
                replaced.id,
                replaced.releasability,
                StandardSuperseded(**_standard_fields(replaced), superseded_by=changed.id, superseded_at=now),
            )
    log.info("%s promulgated by %s; superseded %d older editions", changed.reference, actor.id, len(siblings))
    return changed


async def cancel_standard(
    uow: UnitOfWorkFactory, actor: Actor, standard_id: str, expected: int | None, reason: str
) -> Standard:
    return await _change_standard(
        uow,
        actor,
        standard_id,
        expected,
        lambda s, now: s.cancel(actor, reason, now),
        lambda s, now: StandardCancelled(
            **_standard_fields(s),
            reason=s.cancellation_reason or reason,
            cancelled_by=actor.id,
            cancelled_at=now,
        ),
    )


async def get_standard(db: Database, actor: Actor, standard_id: str) -> Standard:
    async with db.sessions() as session:
        return _standard(await _standard_row(session, actor, standard_id, lock=False))


async def _visible_standards(session: AsyncSession, actor: Actor, *where: Any) -> list[Standard]:
    query = select(StandardRow).where(_readable_by(col(StandardRow.readers), actor), *where)
    rows = (await session.execute(query)).scalars().all()
    found = [_standard(r) for r in rows]
    return [s for s in found if domain.may_read(s.releasability, actor.nation)]


async def search_standards(
    db: Database,
    actor: Actor,
    *,
    number: str | None,
    text: str | None,
    capability_area: str | None,
    status: StandardStatus | None,
    limit: int,
    after: str | None,
) -> tuple[list[Standard], str | None]:
    """The catalogue search, ordered by kind, number and edition; the cursor is the last standard shown
    (`STANAG|4569|3`), so the next page starts right after it even if that one has changed since."""
    where = []
    if number:
        where.append(col(StandardRow.number) == number.strip())
    if status:
        where.append(col(StandardRow.status) == status.value)
    async with db.sessions() as session:
        candidates = await _visible_standards(session, actor, *where)
    found = domain.search(
        candidates, number=number, text=text, capability_area=capability_area, status=status
    )
    if after:
        kind, _, rest = after.partition("|")
        number, _, edition = rest.rpartition("|")
        last = (kind, number, int(edition) if edition.isdigit() else 0)
        found = [s for s in found if (s.kind.value, s.number, s.edition) > last]
    page = found[:limit]
    more = len(found) > limit
    return page, (f"{page[-1].kind.value}|{page[-1].number}|{page[-1].edition}" if more else None)


# --- national responses ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResponseView:
    standard: Standard
    response: NationalResponse


async def _responses(session: AsyncSession, standard_ids: Sequence[str]) -> list[NationalResponse]:
    if not standard_ids:
        return []
    rows = (
        await session.execute(select(ResponseRow).where(col(ResponseRow.standard_id).in_(standard_ids)))
    ).scalars()
    return [_response(r) for r in rows]


async def list_responses(db: Database, actor: Actor, standard_id: str) -> list[ResponseView]:
    """Every nation's recorded answer to one edition (nations not listed are pending)."""
    async with db.sessions() as session:
        standard = _standard(await _standard_row(session, actor, standard_id, lock=False))
        responses = await _responses(session, [standard.id])
    return [ResponseView(standard, r) for r in sorted(responses, key=lambda r: r.nation)]


async def get_response(db: Database, actor: Actor, standard_id: str, nation: str) -> ResponseView:
    async with db.sessions() as session:
        standard = _standard(await _standard_row(session, actor, standard_id, lock=False))
        row = await session.get(ResponseRow, (standard_id, nation))
    if row is None:
        return ResponseView(standard, NationalResponse.pending(standard, nation))
    audit.read("national_response", f"{standard_id}/{nation}", nation)
    return ResponseView(standard, _response(row))


ResponseChange = Callable[[NationalResponse, Standard, datetime], NationalResponse]
ResponseAnnounce = Callable[[NationalResponse, dict[str, Any]], EventPayload]


async def _change_response(
    uow: UnitOfWorkFactory,
    actor: Actor,
    standard_id: str,
    nation: str,
    expected: int | None,
    change: ResponseChange,
    announce: ResponseAnnounce,
) -> ResponseView:
    async with uow() as tx:
        audit.subject("national_response", f"{standard_id}/{nation}", nation)
        standard = _standard(await _standard_row(tx.session, actor, standard_id, lock=False, share=True))
        row = (
            await tx.session.execute(
                select(ResponseRow)
                .where(col(ResponseRow.standard_id) == standard_id, col(ResponseRow.nation) == nation)
                .with_for_update()
            )
        ).scalar_one_or_none()
        current = NationalResponse.pending(standard, nation) if row is None else _response(row)
        _check_version("response", current.version, expected)
        now = utcnow()
        changed = change(current, standard, now)
        if row is None:
            row = ResponseRow(
                standard_id=standard_id,
                nation=nation,
                status=changed.status.value,
                version=changed.version,
                readers=encode_tokens(domain.readers(NationalResponse.releasability_for(standard, nation))),
            )
            tx.session.add(row)
        _store_response(row, changed)
        fields = {
            "standard_id": standard.id,
            "standard_reference": standard.reference,
            "nation": nation,
            "status": changed.status.value,
            "version": changed.version,
            "recorded_by": actor.id,
            "recorded_by_nation": actor.nation,
            "recorded_at": now,
        }
        _publish(
            tx,
            f"{standard.id}:{nation}",
            NationalResponse.releasability_for(standard, nation),
            announce(changed, fields),
        )
    log.info("%s answered %s: %s (by %s)", nation, standard.reference, changed.status.value, actor.id)
    return ResponseView(standard, changed)


async def ratify(
    uow: UnitOfWorkFactory,
    actor: Actor,
    standard_id: str,
    nation: str,
    expected: int | None,
    reservations: Sequence[Reservation],
) -> ResponseView:
    return await _change_response(
        uow,
        actor,
        standard_id,
        nation,
        expected,
        lambda r, s, now: r.ratify(actor, s, now, reservations),
        lambda r, f: ResponseRatified(**f, reservations=[_reservation_figure(x) for x in r.reservations]),
    )


async def decline(
    uow: UnitOfWorkFactory, actor: Actor, standard_id: str, nation: str, expected: int | None
) -> ResponseView:
    return await _change_response(
        uow,
        actor,
        standard_id,
        nation,
        expected,
        lambda r, s, now: r.decline(actor, s, now),
        lambda r, f: ResponseRecorded(**f),
    )


async def record_reservation(
    uow: UnitOfWorkFactory,
    actor: Actor,
    standard_id: str,
    nation: str,
    expected: int | None,
    reservation: Reservation,
) -> ResponseView:
    return await _change_response(
        uow,
        actor,
        standard_id,
        nation,
        expected,
        lambda r, s, now: r.record_reservation(actor, s, reservation, now),
        lambda r, f: ReservationRecorded(**f, reservation=_reservation_figure(reservation)),
    )


async def withdraw_reservation(
    uow: UnitOfWorkFactory, actor: Actor, standard_id: str, nation: str, expected: int | None, clause: str
) -> ResponseView:
    return await _change_response(
        uow,
        actor,
        standard_id,
        nation,
        expected,
        lambda r, s, now: r.withdraw_reservation(actor, s, clause, now),
        lambda r, f: ReservationWithdrawn(**f, clause=clause),
    )


async def forecast_implementation(
    uow: UnitOfWorkFactory, actor: Actor, standard_id: str, nation: str, expected: int | None, by: date
) -> ResponseView:
    return await _change_response(
        uow,
        actor,
        standard_id,
        nation,
        expected,
        lambda r, s, now: r.forecast_implementation(actor, s, by, now),
        lambda r, f: ImplementationForecast(**f, implementation_forecast=by),
    )


async def record_implementation(
    uow: UnitOfWorkFactory, actor: Actor, standard_id: str, nation: str, expected: int | None, on: date
) -> ResponseView:
    return await _change_response(
        uow,
        actor,
        standard_id,
        nation,
        expected,
        lambda r, s, now: r.record_implementation(actor, s, on, now),
        lambda r, f: ResponseImplemented(**f, implemented_on=on),
    )


# --- conformance ----------------------------------------------------------------------------------------


def _claim_fields(c: ConformanceClaim, standard_reference: str) -> dict[str, Any]:
    return {
        "claim_id": c.id,
        "nation": c.nation,
        "manufacturer": c.product.manufacturer,
        "product_code": c.product.product_code,
        "product_name": c.product.name,
        "standard_id": c.standard_id,
        "standard_reference": standard_reference,
        "level": c.level,
        "version": c.version,
    }


async def _reference(session: AsyncSession, standard_id: str) -> str:
    row = await session.get(StandardRow, standard_id)
    return _standard(row).reference if row is not None else standard_id


async def claim_conformance(
    uow: UnitOfWorkFactory,
    actor: Actor,
    *,
    product: Product,
    standard_id: str,
    level: str | None,
    evidence: tuple[str, ...],
    releasability: Releasability | None,
) -> ConformanceClaim:
    now = utcnow()
    async with uow() as tx:
        standard = _standard(await _standard_row(tx.session, actor, standard_id, lock=False))
        claim = ConformanceClaim.claim(
            id=new_id(),
            actor=actor,
            product=product,
            standard=standard,
            now=now,
            level=level,
            evidence=evidence,
            releasability=releasability,
        )
        row = ConformanceRow(
            id=claim.id,
            nation=claim.nation,
            manufacturer=product.manufacturer,
            product_code=product.product_code,
            product_name=product.name,
            standard_id=standard.id,
            level=claim.level,
            status=claim.status.value,
            version=claim.version,
            release_scope=claim.release.scope.value,
            release_nations=list(claim.release.nations),
            readers=encode_tokens(domain.readers(claim.release)),
        )
        _store_claim(row, claim)
        tx.session.add(row)
        _publish(
            tx,
            claim.id,
            claim.release,
            ConformanceClaimed(
                **_claim_fields(claim, standard.reference),
                evidence=list(claim.evidence),
                claimed_by=actor.id,
                claimed_at=now,
            ),
        )
    return claim


async def _claim_row(session: AsyncSession, actor: Actor, claim_id: str, *, lock: bool) -> ConformanceRow:
    query = select(ConformanceRow).where(col(ConformanceRow.id) == claim_id)
    row = (await session.execute(query.with_for_update() if lock else query)).scalar_one_or_none()
    release = None if row is None else _claim(row).release
    if release is not None:
        audit.subject("conformance_claim", claim_id, release.owner)
    if release is None or row is None or not domain.may_read(release, actor.nation):
        raise NotFound(f"no conformance claim {claim_id}")
    return row


async def _change_claim(
    uow: UnitOfWorkFactory,
    actor: Actor,
    claim_id: str,
    expected: int | None,
    change: Callable[[ConformanceClaim, datetime], ConformanceClaim],
    announce: Callable[[ConformanceClaim, dict[str, Any], datetime], EventPayload],
) -> ConformanceClaim:
    async with uow() as tx:
        row = await _claim_row(tx.session, actor, claim_id, lock=True)
        claim = _claim(row)
        _check_version("conformance claim", claim.version, expected)
        now = utcnow()
        changed = change(claim, now)
        _store_claim(row, changed)
        fields = _claim_fields(changed, await _reference(tx.session, changed.standard_id))
        _publish(tx, changed.id, changed.release, announce(changed, fields, now))
    return changed


async def start_test(
    uow: UnitOfWorkFactory, actor: Actor, claim_id: str, expected: int | None, evidence: tuple[str, ...]
) -> ConformanceClaim:
    return await _change_claim(
        uow,
        actor,
        claim_id,
        expected,
        lambda c, now: c.start_test(actor, now, evidence),
        lambda c, f, now: ConformanceTestStarted(
            **f, evidence=list(c.evidence), started_by=actor.id, started_at=now
        ),
    )


async def verify_claim(
    uow: UnitOfWorkFactory,
    actor: Actor,
    claim_id: str,
    expected: int | None,
    expires_on: date,
    evidence: tuple[str, ...],
    *,
    allow_self_verification: bool = False,
) -> ConformanceClaim:
    return await _change_claim(
        uow,
        actor,
        claim_id,
        expected,
        lambda c, now: c.verify(
            actor, expires_on, now, evidence, allow_self_verification=allow_self_verification
        ),
        lambda c, f, now: ConformanceVerified(
            **f, evidence=list(c.evidence), expires_on=expires_on, verified_by=actor.id, verified_at=now
        ),
    )


async def reject_claim(
    uow: UnitOfWorkFactory, actor: Actor, claim_id: str, expected: int | None, reason: str
) -> ConformanceClaim:
    return await _change_claim(
        uow,
        actor,
        claim_id,
        expected,
        lambda c, now: c.reject(actor, reason, now),
        lambda c, f, now: ConformanceRejected(
            **f, reason=c.rejection_reason or reason, rejected_by=actor.id, rejected_at=now
        ),
    )


async def expire_due_claims(uow: UnitOfWorkFactory, now: datetime | None = None, batch: int = 200) -> int:
    """Move every verified claim whose date has come to expired, with its event, in one transaction per
    batch. An expired claim is never due again and rows are locked (skipping ones another replica holds),
    so each expiry is recorded and announced exactly once, whatever restarts or replicas there are."""
    now = now or utcnow()
    expired = 0
    while True:
        # A run that finds nothing is no trace (its queries are not recorded); one that expires claims
        # starts a trace of its own, which its events carry on (outbox, Kafka, subscribers).
        async with AsyncExitStack() as found_work, uow() as tx:
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
            rows = (await tx.session.execute(query)).scalars().all()
            if rows:
                found_work.enter_context(
                    tracer("icep.standards").start_as_current_span(
                        "expire conformance", attributes={"icep.expired": len(rows)}
                    )
                )
            for row in rows:
                claim = _claim(row).expire(now)
                _store_claim(row, claim)
                fields = _claim_fields(claim, await _reference(tx.session, claim.standard_id))
                _publish(
                    tx,
                    claim.id,
                    claim.release,
                    ConformanceExpired(**fields, expires_on=claim.expires_on or now.date(), expired_at=now),
                )
        expired += len(rows)
        if len(rows) < batch:
            break
    if expired:
        log.info("%d conformance verifications expired", expired)
    return expired


async def get_claim(db: Database, actor: Actor, claim_id: str) -> ConformanceClaim:
    async with db.sessions() as session:
        claim = _claim(await _claim_row(session, actor, claim_id, lock=False))
    audit.read("conformance_claim", claim_id, claim.release.owner)
    return claim


async def list_claims(
    db: Database,
    actor: Actor,
    *,
    standard_id: str | None,
    product_code: str | None,
    status: ConformanceStatus | None,
    nation: str | None,
    limit: int,
    after: str | None,
) -> tuple[list[ConformanceClaim], str | None]:
    query = select(ConformanceRow).where(_readable_by(col(ConformanceRow.readers), actor))
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
    async with db.sessions() as session:
        rows = (
            (await session.execute(query.order_by(col(ConformanceRow.id)).limit(limit + 1))).scalars().all()
        )
    claims = [c for c in (_claim(r) for r in rows[:limit]) if domain.may_read(c.release, actor.nation)]
    return claims, (rows[limit - 1].id if len(rows) > limit else None)


# --- interchangeability ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClearanceInput:
    status: InterchangeabilityStatus
    basis: Basis
    nations: tuple[str, ...] | None = None
    restrictions: tuple[str, ...] = ()


async def _check_basis(session: AsyncSession, actor: Actor, basis: Basis) -> None:
    if basis.kind is BasisKind.STANDARD:
        try:
            await _standard_row(session, actor, basis.reference, lock=False)
        except NotFound:
            raise invalid("body.basis.reference", f"no standard {basis.reference}") from None


def _clearance_event(c: Interchangeability, actor: Actor) -> InterchangeabilityUpdated:
    return InterchangeabilityUpdated(
        clearance_id=c.id,
        item=c.item,
        platform=c.platform,
        nations=list(c.nations),
        status=c.status.value,
        basis_kind=c.basis.kind.value,
        basis_reference=c.basis.reference,
        restrictions=list(c.restrictions),
        version=c.version,
        updated_by=actor.id,
        updated_at=c.updated_at,
    )


async def record_clearance(
    uow: UnitOfWorkFactory,
    actor: Actor,
    *,
    item: str,
    platform: str,
    given: ClearanceInput,
    releasability: Releasability | None,
) -> Interchangeability:
    now = utcnow()
    async with uow() as tx:
        await _check_basis(tx.session, actor, given.basis)
        clearance = Interchangeability.record(
            id=new_id(),
            actor=actor,
            item=item,
            platform=platform,
            nations=given.nations or (),
            status=given.status,
            basis=given.basis,
            now=now,
            restrictions=given.restrictions,
            releasability=releasability,
        )
        same = await tx.session.execute(
            select(col(ClearanceRow.id)).where(
                col(ClearanceRow.owner) == clearance.release.owner,
                col(ClearanceRow.item) == clearance.item,
                col(ClearanceRow.platform) == clearance.platform,
            )
        )
        existing = same.scalar_one_or_none()
        if existing is not None:
            raise Conflict(
                f"{clearance.release.owner} already recorded the clearance of {clearance.item} for"
                f" {clearance.platform}: change /v1/interchangeability/clearances/{existing}"
            )
        row = ClearanceRow(
            id=clearance.id,
            owner=clearance.release.owner,
            item=clearance.item,
            platform=clearance.platform,
            status=clearance.status.value,
            basis_kind=clearance.basis.kind.value,
            basis_reference=clearance.basis.reference,
            updated_at=now,
            version=clearance.version,
            release_scope=clearance.release.scope.value,
        )
        _store_clearance(row, clearance)
        tx.session.add(row)
        _publish(tx, clearance.id, clearance.release, _clearance_event(clearance, actor))
    return clearance


async def _clearance_row(
    session: AsyncSession, actor: Actor, clearance_id: str, *, lock: bool
) -> ClearanceRow:
    query = select(ClearanceRow).where(col(ClearanceRow.id) == clearance_id)
    row = (await session.execute(query.with_for_update() if lock else query)).scalar_one_or_none()
    release = None if row is None else _clearance(row).release
    if release is not None:
        audit.subject("clearance", clearance_id, release.owner)
    if release is None or row is None or not domain.may_read(release, actor.nation):
        raise NotFound(f"no interchangeability clearance {clearance_id}")
    return row


async def update_clearance(
    uow: UnitOfWorkFactory, actor: Actor, clearance_id: str, expected: int | None, given: ClearanceInput
) -> Interchangeability:
    async with uow() as tx:
        row = await _clearance_row(tx.session, actor, clearance_id, lock=True)
        current = _clearance(row)
        _check_version("clearance", current.version, expected)
        await _check_basis(tx.session, actor, given.basis)
        changed = current.update(
            actor,
            now=utcnow(),
            status=given.status,
            nations=given.nations,
            basis=given.basis,
            restrictions=given.restrictions,
        )
        _store_clearance(row, changed)
        _publish(tx, changed.id, changed.release, _clearance_event(changed, actor))
    return changed


async def get_clearance(db: Database, actor: Actor, clearance_id: str) -> Interchangeability:
    async with db.sessions() as session:
        clearance = _clearance(await _clearance_row(session, actor, clearance_id, lock=False))
    audit.read("clearance", clearance_id, clearance.release.owner)
    return clearance


async def _visible_clearances(session: AsyncSession, actor: Actor, *where: Any) -> list[Interchangeability]:
    query = select(ClearanceRow).where(_readable_by(col(ClearanceRow.readers), actor), *where)
    found = [_clearance(r) for r in (await session.execute(query.order_by(col(ClearanceRow.id)))).scalars()]
    return [c for c in found if domain.may_read(c.release, actor.nation)]


async def list_clearances(
    db: Database,
    actor: Actor,
    *,
    item: str | None,
    platform: str | None,
    limit: int = 50,
    after: str | None = None,
) -> tuple[list[Interchangeability], str | None]:
    query = select(ClearanceRow).where(_readable_by(col(ClearanceRow.readers), actor))
    if item:
        query = query.where(col(ClearanceRow.item) == item)
    if platform:
        query = query.where(col(ClearanceRow.platform) == platform)
    if after:
        query = query.where(col(ClearanceRow.id) > after)
    async with db.sessions() as session:
        rows = (await session.execute(query.order_by(col(ClearanceRow.id)).limit(limit + 1))).scalars().all()
    found = [c for c in (_clearance(r) for r in rows[:limit]) if domain.may_read(c.release, actor.nation)]
    return found, (rows[limit - 1].id if len(rows) > limit else None)


# --- the answers ----------------------------------------------------------------------------------------


async def can_fire(
    db: Database, actor: Actor, *, item: str, platform: str, nation: str
) -> InterchangeabilityAnswer:
    """From the clearances, standards and responses the caller may see: a reason never cites a record the
    caller could not read."""
    async with db.sessions() as session:
        clearances = await _visible_clearances(
            session, actor, col(ClearanceRow.item) == item, col(ClearanceRow.platform) == platform
        )
        basis_ids = [c.basis.reference for c in clearances if c.basis.kind is BasisKind.STANDARD]
        standards = (
            await _visible_standards(session, actor, col(StandardRow.id).in_(basis_ids)) if basis_ids else []
        )
        responses = await _responses(session, [s.id for s in standards])
    return domain.can_fire(nation, item, platform, clearances, standards, responses, on=utcnow().date())


async def resolve_standards(session: AsyncSession, actor: Actor, refs: Sequence[str]) -> list[Standard]:
    """Standards named by id, or by number (its edition in force, else its latest edition)."""
    found: list[Standard] = []
    for ref in refs:
        by_id = await session.get(StandardRow, ref)
        if by_id is not None and domain.may_read(_standard(by_id).releasability, actor.nation):
            found.append(_standard(by_id))
            continue
        editions = await _visible_standards(session, actor, col(StandardRow.number) == ref)
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
        responses = await _responses(session, [s.id for s in chosen])
    return domain.interoperability(chosen, responses, nations, utcnow().date())


async def progress(db: Database, actor: Actor, nations: Sequence[str]) -> list[NationProgress]:
    async with db.sessions() as session:
        standards = await _visible_standards(
            session, actor, col(StandardRow.status) == StandardStatus.PROMULGATED.value
        )
        responses = await _responses(session, [s.id for s in standards])
    today = utcnow().date()
    return [domain.progress(n, standards, responses, today) for n in nations]

"""Standards and conformance, from the standards service's events: each standard edition's status, and each
product's conformance claims (an award needs verified, unexpired conformance). A required edition
superseded or cancelled flags the open initiatives that require it. Both keep the releasability of the
event they copy (owner nation, `releasableto` marking, reader tokens) and a claim its manufacturer: an
award counts only a claim every reader of the initiative may read that names the supplier's product.

Like every handler, each applies an event only if it is not older than the copy it holds (its `version`)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from icep.contracts import Releasability
from icep.contracts.nations import NATO
from icep.contracts.releasability import encode_tokens, reader_tokens
from icep.contracts.standards import (
    ConformanceClaimed,
    ConformanceExpired,
    ConformanceRejected,
    ConformanceTestStarted,
    ConformanceVerified,
    StandardCancelled,
    StandardCirculated,
    StandardDrafted,
    StandardPromulgated,
    StandardSuperseded,
)
from icep.platform.events import ReceivedEvent, utcnow
from icep.procurement.initiatives import use_cases
from icep.procurement.read_models.rows import (
    KnownConformanceRow,
    KnownStandardRow,
)

StandardEvent = (
    StandardDrafted | StandardCirculated | StandardPromulgated | StandardSuperseded | StandardCancelled
)
#: The status of a standard edition after each event.
STANDARD_STATUS: dict[type[StandardEvent], str] = {
    StandardDrafted: "study",
    StandardCirculated: "ratification_draft",
    StandardPromulgated: "promulgated",
    StandardSuperseded: "superseded",
    StandardCancelled: "cancelled",
}
#: The payload class of each event type the copy follows.
STANDARD_EVENTS: dict[str, type[StandardEvent]] = {payload.event_type: payload for payload in STANDARD_STATUS}
#: Statuses that flag the open initiatives requiring the edition.
WITHDRAWN_STANDARD = frozenset({"superseded", "cancelled"})


async def standard_changed(session: AsyncSession, event: ReceivedEvent) -> None:
    s = event.payload(STANDARD_EVENTS[event.type])
    standard_id, version = s.standard_id, s.version
    status = STANDARD_STATUS[type(s)]
    row = await session.get(KnownStandardRow, standard_id, with_for_update=True)
    if row is not None and row.version > version:
        return
    if row is None:
        row = KnownStandardRow(
            id=standard_id,
            kind=s.kind,
            number=s.number,
            edition=s.edition,
            status=status,
            version=version,
            updated_at=utcnow(),
        )
        session.add(row)
    row.kind, row.number, row.edition = s.kind, s.number, s.edition
    row.status, row.version, row.updated_at = status, version, utcnow()
    _keep_releasability(row, event, event.nation or NATO)
    if status in WITHDRAWN_STANDARD:
        await use_cases.flag_initiatives(session, row.number, row.edition, status, utcnow())


ConformanceEvent = (
    ConformanceClaimed
    | ConformanceTestStarted
    | ConformanceVerified
    | ConformanceRejected
    | ConformanceExpired
)
#: The status of a conformance claim after each event.
CONFORMANCE_STATUS: dict[type[ConformanceEvent], str] = {
    ConformanceClaimed: "claimed",
    ConformanceTestStarted: "under_test",
    ConformanceVerified: "verified",
    ConformanceRejected: "rejected",
    ConformanceExpired: "expired",
}
#: The payload class of each event type the copy follows.
CONFORMANCE_EVENTS: dict[str, type[ConformanceEvent]] = {
    payload.event_type: payload for payload in CONFORMANCE_STATUS
}


async def conformance_changed(session: AsyncSession, event: ReceivedEvent) -> None:
    c = event.payload(CONFORMANCE_EVENTS[event.type])
    claim_id, version = c.claim_id, c.version
    row = await session.get(KnownConformanceRow, claim_id, with_for_update=True)
    if row is not None and row.version > version:
        return
    if row is None:
        row = KnownConformanceRow(
            claim_id=claim_id, product_code="", standard_id="", status="", version=0, updated_at=utcnow()
        )
        session.add(row)
    row.manufacturer = c.manufacturer
    row.product_code = c.product_code
    row.standard_id = c.standard_id
    row.level = c.level
    row.status = CONFORMANCE_STATUS[type(c)]
    # Only a verification (and its expiry) has a date; any other step leaves the claim without one.
    row.expires_on = c.expires_on if isinstance(c, ConformanceVerified | ConformanceExpired) else None
    row.version = version
    row.updated_at = utcnow()
    _keep_releasability(row, event, event.nation or c.nation)


def _keep_releasability(
    row: KnownStandardRow | KnownConformanceRow, event: ReceivedEvent, owner: str
) -> None:
    """The copy is released exactly as the event it came from: its owner nation and marking, and the
    reader tokens derived from them."""
    row.nation = owner
    row.releasable_to = event.releasable_to
    row.readers = encode_tokens(reader_tokens(Releasability.from_marking(owner, event.releasable_to)))

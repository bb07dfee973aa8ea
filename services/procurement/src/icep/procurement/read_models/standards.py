"""Standards and conformance, from the standards service's events: each standard edition's status, and each
product's conformance claims (an award needs verified, unexpired conformance). A required edition
superseded or cancelled flags the open initiatives that require it. Both keep the releasability of the
event they copy (owner nation, `releasableto` marking, reader tokens) and a claim its manufacturer: an
award counts only a claim every reader of the initiative may read that names the supplier's product.

Like every handler, each applies an event only if it is not older than the copy it holds (its `version`)."""

from __future__ import annotations

from datetime import date

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

#: The status of a standard edition after each event.
STANDARD_STATUS = {
    StandardDrafted.event_type: "study",
    StandardCirculated.event_type: "ratification_draft",
    StandardPromulgated.event_type: "promulgated",
    StandardSuperseded.event_type: "superseded",
    StandardCancelled.event_type: "cancelled",
}
#: Statuses that flag the open initiatives requiring the edition.
WITHDRAWN_STANDARD = frozenset({"superseded", "cancelled"})


async def standard_changed(session: AsyncSession, event: ReceivedEvent) -> None:
    data = event.data
    standard_id, version = str(data["standard_id"]), int(data["version"])
    status = STANDARD_STATUS[event.type]
    row = await session.get(KnownStandardRow, standard_id, with_for_update=True)
    if row is not None and row.version > version:
        return
    if row is None:
        row = KnownStandardRow(
            id=standard_id,
            kind=str(data["kind"]),
            number=str(data["number"]),
            edition=int(data["edition"]),
            status=status,
            version=version,
            updated_at=utcnow(),
        )
        session.add(row)
    row.kind, row.number, row.edition = str(data["kind"]), str(data["number"]), int(data["edition"])
    row.status, row.version, row.updated_at = status, version, utcnow()
    _keep_releasability(row, event, event.nation or NATO)
    if status in WITHDRAWN_STANDARD:
        await use_cases.flag_initiatives(session, row.number, row.edition, status, utcnow())


#: The status of a conformance claim after each event.
CONFORMANCE_STATUS = {
    ConformanceClaimed.event_type: "claimed",
    ConformanceTestStarted.event_type: "under_test",
    ConformanceVerified.event_type: "verified",
    ConformanceRejected.event_type: "rejected",
    ConformanceExpired.event_type: "expired",
}


async def conformance_changed(session: AsyncSession, event: ReceivedEvent) -> None:
    data = event.data
    claim_id, version = str(data["claim_id"]), int(data["version"])
    row = await session.get(KnownConformanceRow, claim_id, with_for_update=True)
    if row is not None and row.version > version:
        return
    if row is None:
        row = KnownConformanceRow(
            claim_id=claim_id, product_code="", standard_id="", status="", version=0, updated_at=utcnow()
        )
        session.add(row)
    expires = data.get("expires_on")
    row.manufacturer = str(data["manufacturer"])
    row.product_code = str(data["product_code"])
    row.standard_id = str(data["standard_id"])
    row.level = None if data.get("level") is None else str(data["level"])
    row.status = CONFORMANCE_STATUS[event.type]
    row.expires_on = date.fromisoformat(str(expires)) if expires else None
    row.version = version
    row.updated_at = utcnow()
    _keep_releasability(row, event, event.nation or str(data["nation"]))


def _keep_releasability(
    row: KnownStandardRow | KnownConformanceRow, event: ReceivedEvent, owner: str
) -> None:
    """The copy is released exactly as the event it came from: its owner nation and marking, and the
    reader tokens derived from them."""
    row.nation = owner
    row.releasable_to = event.releasable_to
    row.readers = encode_tokens(reader_tokens(Releasability.from_marking(owner, event.releasable_to)))

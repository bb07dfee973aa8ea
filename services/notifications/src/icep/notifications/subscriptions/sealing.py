"""Webhook signing secrets at rest: sealed (`icep.platform.secrets`), never `whsec_` in the database.

`SubscriptionRow.secret` and `previous_secret` are `Sealed` columns: the service reads and writes plain
secrets, the database holds `icep-sealed:v1:...`. Secrets written before sealing existed (plaintext) still
read; at start `reseal_secrets` seals them, and moves those sealed under an older key to the current one,
so after a key rotation the old key can be removed once this has run (see docs/operations/secrets.md).
"""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa

from icep.platform import secrets
from icep.platform.app import Runtime
from icep.platform.db import Database
from icep.platform.secrets import SecretBox

log = logging.getLogger("icep.notifications.sealing")

#: The table as stored, without the sealing column type: what this module rewrites is the raw value.
_raw = sa.table(
    "subscriptions",
    sa.column("id", sa.String()),
    sa.column("secret", sa.String()),
    sa.column("previous_secret", sa.String()),
)


def _unchanged(column: sa.ColumnClause[Any], value: str | None) -> sa.ColumnElement[bool]:
    return column.is_(None) if value is None else column == value


async def reseal_secrets(db: Database, box: SecretBox, batch: int = 200) -> int:
    """Seal every signing secret that is plaintext or sealed under an older key with the current key; how
    many subscriptions changed. A row changed meanwhile (a rotation) is left as it is now: it is current."""
    async with db.sessions() as session:
        rows = (await session.execute(sa.select(_raw.c.id, _raw.c.secret, _raw.c.previous_secret))).all()
    stale = [
        r
        for r in rows
        if not box.is_current(r.secret)
        or (r.previous_secret is not None and not box.is_current(r.previous_secret))
    ]
    for start in range(0, len(stale), batch):
        async with db.transaction() as session:
            for r in stale[start : start + batch]:
                values = {
                    name: box.seal(box.open(value))
                    for name, value in (("secret", r.secret), ("previous_secret", r.previous_secret))
                    if value is not None and not box.is_current(value)
                }
                await session.execute(
                    sa.update(_raw)
                    .where(
                        _raw.c.id == r.id,
                        _unchanged(_raw.c.secret, r.secret),
                        _unchanged(_raw.c.previous_secret, r.previous_secret),
                    )
                    .values(**values)
                )
    return len(stale)


async def reseal_at_start(runtime: Runtime) -> None:
    """A background task of the service: once, at start."""
    assert runtime.db is not None
    try:
        changed = await reseal_secrets(runtime.db, secrets.installed())
    except Exception:
        log.exception("could not reseal signing secrets; they stay readable, and are resealed at next start")
        return
    if changed:
        log.info("sealed the signing secrets of %d subscriptions with the current secret key", changed)

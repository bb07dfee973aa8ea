"""The platform's own tables, added to each service's metadata: the outbox, the inbox and the
idempotency keys.

They live in the service's database so that domain rows and events commit in one transaction (outbox),
a handler's effects and its "seen" mark commit together (inbox), and a POST's `Idempotency-Key` is
claimed where its effects are written (idempotency keys).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


@dataclass(frozen=True)
class PlatformTables:
    outbox: sa.Table
    inbox: sa.Table
    idempotency: sa.Table


def outbox_columns() -> list[sa.Column[Any]]:
    return [
        # `position` gives the publication order; SQLite needs INTEGER PRIMARY KEY to autoincrement.
        sa.Column("position", BigId, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(36), nullable=False, unique=True),
        sa.Column("topic", sa.String(200), nullable=False),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("type", sa.String(200), nullable=False),
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("nation", sa.String(8), nullable=False),
        sa.Column("releasable_to", sa.String(400), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("traceparent", sa.String(100), nullable=True),
        sa.Column("tracestate", sa.String(500), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text(), nullable=True),
    ]


def inbox_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("consumer", sa.String(200), primary_key=True),
        sa.Column("event_id", sa.String(36), primary_key=True),
        sa.Column("event_type", sa.String(200), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False),
    ]


def idempotency_columns() -> list[sa.Column[Any]]:
    return [
        # Keys are the caller's: two clients may use the same key without meeting. A client id longer than
        # the column is kept as `sha256:<hex>` of it.
        sa.Column("client_id", sa.String(200), primary_key=True),
        sa.Column("key", sa.String(255), primary_key=True),
        #: sha256 of method, path, query, content type and body: the same key with another request is 422.
        sa.Column("fingerprint", sa.String(64), nullable=False),
        #: `processing` while the first request runs, `committed` once its use case's transaction committed
        #: (marked in that transaction), `completed` once its answer is stored (`icep.platform.idempotency`).
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("headers", sa.JSON(), nullable=True),
        sa.Column("body", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        #: Until when the request holds the key (after that another may take over a `processing` key; a
        #: `committed` one is never run again). Its value as claimed tells this hold from a later one.
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
    ]


IDEMPOTENCY_TABLE = "idempotency_keys"


def platform_tables(metadata: sa.MetaData) -> PlatformTables:
    outbox = sa.Table("outbox", metadata, *outbox_columns())
    sa.Index("ix_outbox_unsent", outbox.c.sent_at, outbox.c.position)
    inbox = sa.Table("inbox", metadata, *inbox_columns())
    idempotency = sa.Table(IDEMPOTENCY_TABLE, metadata, *idempotency_columns())
    sa.Index("ix_idempotency_keys_expires_at", idempotency.c.expires_at)
    return PlatformTables(outbox=outbox, inbox=inbox, idempotency=idempotency)


def create_platform_tables_v1() -> None:
    """Alembic: create the outbox and inbox as of platform schema v1 (frozen: later changes add v2)."""
    from alembic import op

    op.create_table("outbox", *outbox_columns())
    op.create_index("ix_outbox_unsent", "outbox", ["sent_at", "position"])
    op.create_table("inbox", *inbox_columns())


def drop_platform_tables_v1() -> None:
    from alembic import op

    op.drop_table("inbox")
    op.drop_index("ix_outbox_unsent", table_name="outbox")
    op.drop_table("outbox")


def create_idempotency_table_v1() -> None:
    """Alembic: create the idempotency keys as of platform schema v1 (frozen: later changes add v2)."""
    from alembic import op

    op.create_table(IDEMPOTENCY_TABLE, *idempotency_columns())
    op.create_index("ix_idempotency_keys_expires_at", IDEMPOTENCY_TABLE, ["expires_at"])


def drop_idempotency_table_v1() -> None:
    from alembic import op

    op.drop_index("ix_idempotency_keys_expires_at", table_name=IDEMPOTENCY_TABLE)
    op.drop_table(IDEMPOTENCY_TABLE)

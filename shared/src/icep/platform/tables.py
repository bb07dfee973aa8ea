"""The platform's own tables, added to each service's metadata: the outbox, the inbox, the
idempotency keys, the audit log and the dead letters.

They live in the service's database so that domain rows and events commit in one transaction (outbox),
a handler's effects and its "seen" mark commit together (inbox), and a POST's `Idempotency-Key` is
claimed where its effects are written (idempotency keys).

Versions are frozen: `*_v1` (and `outbox_parking_columns`, `inbox_origin_columns`, ... after it) are what
the services' migrations created, and the live tables are their sum. A change to a platform table is a new
function and a new migration in every service, never an edit of a version's function: an edit would
change what an old migration creates on a new database and leave every existing one without it
(`shared/tests/test_tables.py` pins the frozen columns).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from icep.platform.db import UtcDateTime

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


@dataclass(frozen=True)
class PlatformTables:
    outbox: sa.Table
    inbox: sa.Table
    idempotency: sa.Table
    audit: sa.Table
    dead_letters: sa.Table


def outbox_columns_v1() -> list[sa.Column[Any]]:
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


def outbox_parking_columns() -> list[sa.Column[Any]]:
    """Platform schema v2 of the outbox: an operator parks a row that cannot be published, so the relay
    skips it (`icep.platform.outbox_admin`). Migrations add these as plain columns of their own (frozen)."""
    return [
        sa.Column("parked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("parked_reason", sa.String(500), nullable=True),
    ]


def inbox_columns_v1() -> list[sa.Column[Any]]:
    return [
        sa.Column("consumer", sa.String(200), primary_key=True),
        sa.Column("event_id", sa.String(36), primary_key=True),
        sa.Column("event_type", sa.String(200), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False),
    ]


def inbox_origin_columns() -> list[sa.Column[Any]]:
    """The inbox's columns since platform schema v2 (migrations add them with their own frozen copy):
    where the handled record was read, NULL for older rows. Reprocessing a group from an offset or a time
    deletes the group's rows at or after it (`icep.platform.operations`)."""
    return [
        sa.Column("origin_topic", sa.String(255), nullable=True),
        sa.Column("origin_partition", sa.Integer(), nullable=True),
        sa.Column("origin_offset", sa.BigInteger(), nullable=True),
    ]


INBOX_ORIGIN_INDEX = "ix_inbox_origin"
DEAD_LETTERS_TABLE = "dead_letters"
DEAD_LETTER_STATUSES = ("waiting", "redriven", "resolved")


def dead_letter_columns() -> list[sa.Column[Any]]:
    """A record this service's consumer gave up on (`icep.platform.consumer`), kept until an operator
    purges it; the Kafka topic `icep.dlq.<group>` holds the durable copy (`icep.platform.operations`)."""
    return [
        #: UUIDv7: the list's order and cursor.
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("consumer", sa.String(200), nullable=False),
        #: The event's id; for a record that is no event, `<topic>/<partition>/<offset>`.
        sa.Column("event_id", sa.String(300), nullable=False),
        sa.Column("event_type", sa.String(200), nullable=True),
        #: The event's owner nation (its operators may see the dead letter; NATO's see all).
        sa.Column("owner_nation", sa.String(8), nullable=True),
        sa.Column("origin_topic", sa.String(255), nullable=False),
        sa.Column("origin_partition", sa.Integer(), nullable=False),
        sa.Column("origin_offset", sa.BigInteger(), nullable=False),
        sa.Column("dlq_topic", sa.String(255), nullable=False),
        sa.Column("dlq_partition", sa.Integer(), nullable=False),
        sa.Column("dlq_offset", sa.BigInteger(), nullable=False),
        sa.Column("record_key", sa.LargeBinary(), nullable=True),
        sa.Column("record_value", sa.LargeBinary(), nullable=True),
        #: The record's headers as [name, value] pairs (values as text), without `icep_dlq_*`.
        sa.Column("headers", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("dead_lettered_at", UtcDateTime(), nullable=False),
        #: waiting | redriven | resolved
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("redriven_at", UtcDateTime(), nullable=True),
        sa.Column("resolved_at", UtcDateTime(), nullable=True),
        sa.Column("redrive_count", sa.Integer(), nullable=False, server_default="0"),
    ]


def idempotency_columns_v1() -> list[sa.Column[Any]]:
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
AUDIT_TABLE = "audit_log"


def audit_columns_v1() -> list[sa.Column[Any]]:
    """Who touched which record, how, when and with what outcome (`icep.platform.audit`). Append-only."""
    return [
        #: UUIDv7: the newest-first order and the cursor, across services too.
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("time", UtcDateTime(), nullable=False),
        sa.Column("client_id", sa.String(200), nullable=False),
        sa.Column("client_nation", sa.String(8), nullable=False),
        #: The caller's roles, comma-separated and sorted.
        sa.Column("roles", sa.String(200), nullable=False),
        #: The operation id (`submitPlan`, `getPlan`).
        sa.Column("action", sa.String(100), nullable=False),
        #: `read` or `change`.
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("resource_type", sa.String(100), nullable=False),
        sa.Column("resource_id", sa.String(200), nullable=True),
        #: The record's owner nation, whose operators may read the entry; NULL when unknown (NATO only).
        sa.Column("owner_nation", sa.String(8), nullable=True),
        #: `success`, `refused` (4xx) or `failed` (5xx).
        sa.Column("outcome", sa.String(10), nullable=False),
        sa.Column("status", sa.Integer(), nullable=True),
        #: The problem type of a refusal (`https://icep.nato.int/problems/not-found`).
        sa.Column("problem_type", sa.String(200), nullable=True),
        sa.Column("trace_id", sa.String(32), nullable=True),
        sa.Column("method", sa.String(10), nullable=False),
        sa.Column("path", sa.String(500), nullable=False),
    ]


AUDIT_INDEXES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("ix_audit_log_owner_id", ("owner_nation", "id")),
    ("ix_audit_log_resource", ("resource_type", "resource_id")),
)


def platform_tables(metadata: sa.MetaData) -> PlatformTables:
    outbox = sa.Table("outbox", metadata, *outbox_columns_v1(), *outbox_parking_columns())
    sa.Index("ix_outbox_unsent", outbox.c.sent_at, outbox.c.position)
    inbox = sa.Table("inbox", metadata, *inbox_columns_v1(), *inbox_origin_columns())
    sa.Index("ix_inbox_processed_at", inbox.c.processed_at)  # the retention purge
    idempotency = sa.Table(IDEMPOTENCY_TABLE, metadata, *idempotency_columns_v1())
    sa.Index("ix_idempotency_keys_expires_at", idempotency.c.expires_at)
    audit = sa.Table(AUDIT_TABLE, metadata, *audit_columns_v1())
    for name, columns in AUDIT_INDEXES:
        sa.Index(name, *(audit.c[c] for c in columns))
    sa.Index(
        INBOX_ORIGIN_INDEX,
        inbox.c.consumer,
        inbox.c.origin_topic,
        inbox.c.origin_partition,
        inbox.c.origin_offset,
    )
    dead_letters = sa.Table(
        DEAD_LETTERS_TABLE,
        metadata,
        *dead_letter_columns(),
        # One row per group and event: dead-lettered again, the row is updated.
        sa.UniqueConstraint("consumer", "event_id", name="uq_dead_letters_consumer_event"),
    )
    sa.Index("ix_dead_letters_status", dead_letters.c.status, dead_letters.c.dlq_topic)
    return PlatformTables(
        outbox=outbox, inbox=inbox, idempotency=idempotency, audit=audit, dead_letters=dead_letters
    )


def create_platform_tables_v1() -> None:
    """Alembic: create the outbox and inbox as of platform schema v1 (frozen: later changes add v2)."""
    from alembic import op

    op.create_table("outbox", *outbox_columns_v1())
    op.create_index("ix_outbox_unsent", "outbox", ["sent_at", "position"])
    op.create_table("inbox", *inbox_columns_v1())


def drop_platform_tables_v1() -> None:
    from alembic import op

    op.drop_table("inbox")
    op.drop_index("ix_outbox_unsent", table_name="outbox")
    op.drop_table("outbox")


def create_idempotency_table_v1() -> None:
    """Alembic: create the idempotency keys as of platform schema v1 (frozen: later changes add v2)."""
    from alembic import op

    op.create_table(IDEMPOTENCY_TABLE, *idempotency_columns_v1())
    op.create_index("ix_idempotency_keys_expires_at", IDEMPOTENCY_TABLE, ["expires_at"])


def drop_idempotency_table_v1() -> None:
    from alembic import op

    op.drop_index("ix_idempotency_keys_expires_at", table_name=IDEMPOTENCY_TABLE)
    op.drop_table(IDEMPOTENCY_TABLE)


#: PostgreSQL: the audit log refuses UPDATE, DELETE and TRUNCATE, whoever sends them.
_AUDIT_GUARD = """
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
END
$$
"""


def create_audit_table_v1() -> None:
    """Alembic: create the audit log as of platform schema v1 (frozen: later changes add v2); triggers
    refuse every UPDATE and DELETE of it (and TRUNCATE on PostgreSQL)."""
    from alembic import op

    op.create_table(AUDIT_TABLE, *audit_columns_v1())
    for name, columns in AUDIT_INDEXES:
        op.create_index(name, AUDIT_TABLE, list(columns))
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_log_no_{verb.lower()} BEFORE {verb} ON {AUDIT_TABLE}"
                f" BEGIN SELECT RAISE(ABORT, 'the audit log is append-only: {verb} refused'); END"
            )
    if dialect == "postgresql":
        op.execute(_AUDIT_GUARD)
        op.execute(
            f"CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON {AUDIT_TABLE}"
            " FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()"
        )
        op.execute(
            f"CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON {AUDIT_TABLE}"
            " FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()"
        )


def drop_audit_table_v1() -> None:
    from alembic import op

    op.drop_table(AUDIT_TABLE)  # its triggers go with it
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS audit_log_append_only()")


#: PostgreSQL: a commit that inserted into a watched table wakes every replica (`icep.platform.wakeups`).
#: The trigger sends the NOTIFY inside the INSERT itself, so the application sends no statement for it;
#: identical notifications of one transaction are folded into one and delivered at its commit.
_WAKEUP_FUNCTION = """
CREATE OR REPLACE FUNCTION icep_wakeup() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(TG_ARGV[0], '');
    RETURN NULL;
END
$$
"""


def wakeup_trigger_statements_v1(channels: dict[str, str]) -> list[str]:
    """PostgreSQL: after every INSERT statement on each table of `channels` (table name -> channel),
    NOTIFY the channel. The trigger is named `icep_wakeup` and its one argument is the channel: `Wakeups`
    looks for exactly that and then stops sending the NOTIFY itself."""
    statements = [_WAKEUP_FUNCTION]
    for table, channel in channels.items():
        if not re.fullmatch(r"[a-z0-9_]{1,63}", channel) or not re.fullmatch(r"[a-z0-9_]{1,63}", table):
            raise ValueError(f"not a table and channel name: {table!r}, {channel!r}")
        statements.append(
            f"CREATE TRIGGER icep_wakeup AFTER INSERT ON {table}"
            f" FOR EACH STATEMENT EXECUTE FUNCTION icep_wakeup('{channel}')"
        )
    return statements


def create_wakeup_triggers_v1(channels: dict[str, str]) -> None:
    """Alembic (PostgreSQL only): the wake-up triggers of `wakeup_trigger_statements_v1`."""
    from alembic import op

    if op.get_bind().dialect.name != "postgresql":
        return
    for statement in wakeup_trigger_statements_v1(channels):
        op.execute(statement)


def drop_wakeup_triggers_v1(tables: list[str]) -> None:
    from alembic import op

    if op.get_bind().dialect.name != "postgresql":
        return
    for table in tables:
        op.execute(f"DROP TRIGGER IF EXISTS icep_wakeup ON {table}")
    op.execute("DROP FUNCTION IF EXISTS icep_wakeup()")

"""The platform tables' frozen versions stay as the services' migrations created them: a column added to
or changed in a `*_v1` function would reach new databases only, and leave every existing one without it
(see `icep.platform.tables`). A change to a platform table is a new version and a migration."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from icep.platform import tables

#: What the services' 0001 migrations created: "name TYPE [pk] [null]" per column, in order.
FROZEN: dict[str, list[str]] = {
    "outbox_columns_v1": [
        "position BIGINT pk",
        "id VARCHAR(36)",
        "topic VARCHAR(200)",
        "key VARCHAR(200)",
        "type VARCHAR(200)",
        "source VARCHAR(200)",
        "time TIMESTAMP WITH TIME ZONE",
        "nation VARCHAR(8)",
        "releasable_to VARCHAR(400)",
        "data TEXT",
        "traceparent VARCHAR(100) null",
        "tracestate VARCHAR(500) null",
        "created_at TIMESTAMP WITH TIME ZONE",
        "sent_at TIMESTAMP WITH TIME ZONE null",
        "attempts INTEGER",
        "last_error TEXT null",
    ],
    "inbox_columns_v1": [
        "consumer VARCHAR(200) pk",
        "event_id VARCHAR(36) pk",
        "event_type VARCHAR(200)",
        "processed_at TIMESTAMP WITH TIME ZONE",
    ],
    "idempotency_columns_v1": [
        "client_id VARCHAR(200) pk",
        "key VARCHAR(255) pk",
        "fingerprint VARCHAR(64)",
        "state VARCHAR(20)",
        "status INTEGER null",
        "headers JSON null",
        "body BYTEA null",
        "created_at TIMESTAMP WITH TIME ZONE",
        "expires_at TIMESTAMP WITH TIME ZONE",
        "locked_until TIMESTAMP WITH TIME ZONE null",
    ],
    "audit_columns_v1": [
        "id VARCHAR(36) pk",
        "time TIMESTAMP WITH TIME ZONE",
        "client_id VARCHAR(200)",
        "client_nation VARCHAR(8)",
        "roles VARCHAR(200)",
        "action VARCHAR(100)",
        "kind VARCHAR(10)",
        "resource_type VARCHAR(100)",
        "resource_id VARCHAR(200) null",
        "owner_nation VARCHAR(8) null",
        "outcome VARCHAR(10)",
        "status INTEGER null",
        "problem_type VARCHAR(200) null",
        "trace_id VARCHAR(32) null",
        "method VARCHAR(10)",
        "path VARCHAR(500)",
    ],
}


def described(columns: list[sa.Column[Any]]) -> list[str]:
    return [
        f"{c.name} {c.type.compile(dialect=postgresql.dialect())}"
        + (" pk" if c.primary_key else "")
        + (" null" if c.nullable and not c.primary_key else "")
        for c in columns
    ]


def test_the_frozen_versions_are_what_the_migrations_created() -> None:
    assert {name: described(getattr(tables, name)()) for name in FROZEN} == FROZEN


def test_the_live_tables_are_the_frozen_versions_and_the_later_ones() -> None:
    live = tables.platform_tables(sa.MetaData())
    assert [c.name for c in live.outbox.columns] == [
        c.name for c in [*tables.outbox_columns_v1(), *tables.outbox_parking_columns()]
    ]
    assert [c.name for c in live.inbox.columns] == [
        c.name for c in [*tables.inbox_columns_v1(), *tables.inbox_origin_columns()]
    ]
    assert described(list(live.idempotency.columns)) == FROZEN["idempotency_columns_v1"]
    assert described(list(live.audit.columns)) == FROZEN["audit_columns_v1"]

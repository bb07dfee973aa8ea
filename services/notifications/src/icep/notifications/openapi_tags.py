"""The notifications service's tags in the API documents: what each covers, and who sees what.

`docs/visibility.md` has the same rules for every service.
"""

from __future__ import annotations

from typing import Any

from icep.platform.openapi import markdown_table

_SUBSCRIPTIONS = markdown_table(
    ("Resource", "Who reads it and acts on it"),
    [
        ("A subscription (every state: `active`, `paused`, `disabled`)", "the client that created it alone"),
        (
            "Its deliveries and their attempts",
            "its client; operators (role `operator`) of its nation; NATO's operators, only for deliveries "
            "of events released to NATO",
        ),
        (
            "Its events (`icep.notifications.*`)",
            "published on Kafka only, marked for the subscription's nation; never delivered by webhook, "
            "feed or stream",
        ),
        (
            "What it receives",
            'every event of its `event_types` (default `["*"]`) whose `releasableto` allows the '
            "subscription's nation, narrowed by its filters; checked again on redelivery and replay",
        ),
    ],
)

SUBSCRIPTIONS = f"""Webhook subscriptions: signed (Standard Webhooks) deliveries of the events a nation may
see, at least once and in order per subject (deduplicate by `webhook-id`), with their delivery history.
Anyone but the subscription's client gets `404`.

{_SUBSCRIPTIONS}"""

EVENTS = """The catch-up feed (`GET /v1/events`) and the live stream (`GET /v1/events/stream`): the events of
plans, procurement and standards whose `releasableto` marking allows the caller's nation (the same rule
as the API's reads, so a nation is told of exactly the records it may read, except the declared
exceptions in `docs/visibility.md`), read with the `subscriber` role."""

TAGS: list[dict[str, Any]] = [
    {"name": "subscriptions", "description": SUBSCRIPTIONS},
    {"name": "events", "description": EVENTS},
]

"""Events the standards service consumes. The consumer runs; no handler is registered yet."""

from __future__ import annotations

from icep.platform.consumer import Handler

HANDLERS: dict[str, Handler] = {}
SUBSCRIBED_TOPICS: list[str] = []

"""All of the notifications service's tables in one `metadata`, and the platform's tables in it (migrations,
the app and the platform's operations commands read `metadata` and `tables` from here): importing this
module registers every aggregate's row classes."""

from __future__ import annotations

import icep.notifications.deliveries.rows
import icep.notifications.read_models.feed.rows
import icep.notifications.subscriptions.rows  # noqa: F401  (imported for their tables)
from icep.notifications.tables import metadata, tables

__all__ = ["metadata", "tables"]

"""Events the plans service consumes: none yet (it is a producer); the room is kept for later."""

from __future__ import annotations

from icep.platform.consumer import Handler

HANDLERS: dict[str, Handler] = {}

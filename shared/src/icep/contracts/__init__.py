"""The published language of ICEP: event payloads, one module per producing service.

Each event type is one Pydantic model; its `event_type` reads `icep.<service>.<aggregate>.<verb>.v<N>`.
Removing or retyping a field is a breaking change and needs a new `v<N+1>` type.
"""

from icep.contracts.base import EventPayload, all_event_types
from icep.contracts.nations import NationCode
from icep.contracts.releasability import Releasability, ReleasabilityScope

__all__ = ["EventPayload", "NationCode", "Releasability", "ReleasabilityScope", "all_event_types"]

from __future__ import annotations

from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Strict

#: An amount of money: a JSON number (an integer is fine), never `true` (which lax parsing reads as 1) nor
#: a string. Every money field of the contracts and of the APIs is one of these.
MoneyAmount = Annotated[float, Strict()]

_registry: dict[str, type[EventPayload]] = {}


class EventPayload(BaseModel):
    """The `data` of one CloudEvent type. Consumers ignore fields they do not know (forward compatible)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    event_type: ClassVar[str]
    #: The aggregate this event is about, e.g. `plan`; its id is the CloudEvent subject and record key.
    aggregate: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        event_type = cls.__dict__.get("event_type")
        if event_type:
            if event_type in _registry and _registry[event_type] is not cls:
                raise TypeError(f"event type {event_type} is defined twice")
            _registry[event_type] = cls


def all_event_types() -> dict[str, type[EventPayload]]:
    """Every contract known to the process (modules must be imported first)."""
    return dict(_registry)

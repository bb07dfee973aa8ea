from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Strict

#: An amount of money: a JSON number (an integer is fine), never `true` (which lax parsing reads as 1) nor
#: a string. Every money field of the contracts and of the APIs is one of these.
MoneyAmount = Annotated[float, Strict()]

_registry: dict[str, type[EventPayload]] = {}


@dataclass(frozen=True)
class Audience:
    """Who an event goes to (its `releasableto`), against who may read its aggregate (the resource its
    subject names). By default exactly the aggregate's readers: a nation told of a change may read the
    record, and every nation that may read it is told. An event that goes further or less far says so
    here, next to its contract, with the reason (docs/visibility.md lists them).
    """

    relation: Literal["same_as_aggregate", "wider", "narrower"] = "same_as_aggregate"
    #: `wider`: the part of the aggregate the event carries, released further than the whole.
    part: str = ""
    #: `narrower`: the only readers of the aggregate told: payload fields naming a nation
    #: (e.g. `lead_nation`), or `NATO` (NATO staff, when they may read the aggregate).
    only: tuple[str, ...] = ()
    reason: str = ""
    #: `narrower`: a payload field and value for which the event goes to every reader of the aggregate
    #: after all (e.g. demand as published, once disclosure control lets it out).
    except_when: tuple[str, str] | None = None

    def for_payload(self, data: Mapping[str, Any]) -> Audience:
        """The audience of one event of this type, given its payload (`except_when` applied)."""
        if self.except_when is not None and str(data.get(self.except_when[0])) == self.except_when[1]:
            return SAME_AS_AGGREGATE
        return self

    @classmethod
    def wider(cls, part: str, reason: str) -> Audience:
        return cls("wider", part=part, reason=reason)

    @classmethod
    def narrower(
        cls, only: tuple[str, ...], reason: str, *, except_when: tuple[str, str] | None = None
    ) -> Audience:
        return cls("narrower", only=only, reason=reason, except_when=except_when)


SAME_AS_AGGREGATE = Audience()


@dataclass(frozen=True)
class Subject:
    """What an event's CloudEvent `subject` (also its Kafka record key) is: a template over the event's
    payload fields, and the API path that reads the resource it names (None: no path takes it whole).

    Most subjects are the id of the aggregate (`{plan_id}`); a nation's answer to a standard edition is
    `{standard_id}:{nation}`, which no path accepts as one parameter: its two parts are the path's two.
    """

    template: str
    #: The API path (gateway) that reads what the subject names, with the template's fields as parameters.
    read_at: str | None = None
    #: What the id names, in words (default: the aggregate's name).
    noun: str = ""
    #: Anything else a subscriber should know about it.
    note: str = ""

    def of(self, data: Mapping[str, Any]) -> str:
        """The subject of one event of this type, given its payload."""
        return self.template.format_map(data)

    @property
    def fields(self) -> list[str]:
        """The payload fields the subject is made of."""
        return [name for _text, name, _spec, _conv in string.Formatter().parse(self.template) if name]

    def describe(self, aggregate: str) -> str:
        """The subject in words, as the API documents state it."""
        shown = self.template.replace("{", "<").replace("}", ">")
        if len(self.fields) == 1:
            noun = self.noun or aggregate.replace("_", " ")
            text = f"`{shown}`: the {noun}'s id (`{self.fields[0]}` in the payload)"
        else:
            made_of = " and ".join(f"`{name}`" for name in self.fields)
            text = f"`{shown}`: the payload's {made_of}, joined as shown (no path takes it as one value)"
        if self.read_at:
            text += f"; read it at `GET {self.read_at}`"
        return f"{text}. {self.note}" if self.note else f"{text}."


class EventPayload(BaseModel):
    """The `data` of one CloudEvent type. Consumers ignore fields they do not know (forward compatible)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    event_type: ClassVar[str]
    #: The aggregate this event is about, e.g. `plan`; `subject` says what names it (usually its id).
    aggregate: ClassVar[str]
    #: Who receives it, against who may read the aggregate (see `Audience`).
    audience: ClassVar[Audience] = SAME_AS_AGGREGATE
    #: Its CloudEvent subject and record key (see `Subject`); the service's `events.py` sets it so, and
    #: the API documents state it per event type.
    subject: ClassVar[Subject]

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


def audiences() -> dict[str, Audience]:
    """Event type -> its declared audience, for every contract known to the process."""
    return {t: cls.audience for t, cls in _registry.items()}

"""What the API documents are generated from: each process's own OpenAPI document (from its app,
without running it), the event types of `icep.contracts` with their producers and JSON Schemas, and
the services that consume them.

The platform imports no service statically: services are found by import string.
"""

from __future__ import annotations

import copy
import importlib
import pkgutil
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from pydantic.json_schema import models_json_schema

from icep.contracts import EventPayload, all_event_types
from icep.platform.launcher import SERVICES
from icep.platform.settings import ServiceSettings

Json = dict[str, Any]


class MergeError(ValueError):
    """The services' documents cannot be merged as they are (a clash the code must resolve)."""


def _factory(name: str) -> Callable[[], FastAPI]:
    module, attr = SERVICES[name][0].split(":")
    factory: Callable[[], FastAPI] = getattr(importlib.import_module(module), attr)
    return factory


def service_documents() -> dict[str, Json]:
    """Each process's own OpenAPI document (gateway included), from its app without running it."""
    return {name: copy.deepcopy(_factory(name)().openapi()) for name in SERVICES}


def contracts() -> dict[str, type[EventPayload]]:
    """Every event type of `icep.contracts`, in type order (importing each contract module first)."""
    import icep.contracts as package

    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{module.name}")
    # Only the contracts' own types: a process may have registered others (tests define their own).
    prefix = f"{package.__name__}."
    return {
        event_type: model
        for event_type, model in sorted(all_event_types().items())
        if model.__module__.startswith(prefix)
    }


def producer_of(event_type: str, model: type[EventPayload]) -> str:
    """The service that publishes `event_type`: its contract module, which its type names too."""
    service = model.__module__.rsplit(".", 1)[-1]
    if not event_type.startswith(f"icep.{service}."):
        raise MergeError(f"{event_type} is defined in {model.__module__}, not in its service's contracts")
    return service


def _names(service: str) -> ServiceSettings:
    """A service's settings in no namespace: the logical names of its topic, group and dead letters
    (a deployment prefixes them all with `ICEP_TOPIC_NAMESPACE`)."""
    return ServiceSettings.model_construct(service_name=service, topic_namespace="")


def topic_of(service: str) -> str:
    """The logical topic a service publishes to."""
    return _names(service).topic


@dataclass(frozen=True)
class Consumer:
    service: str
    topics: tuple[str, ...]
    #: The event types it handles; `*` for every type of its topics.
    handles: frozenset[str]

    @property
    def group(self) -> str:
        return _names(self.service).consumer_group

    @property
    def dead_letter_topic(self) -> str:
        return _names(self.service).dead_letter_topic


def consumers() -> list[Consumer]:
    """The services that consume events: `SUBSCRIBED_TOPICS` and `HANDLERS` of their `handlers` module."""
    found = []
    for name in SERVICES:
        try:
            module = importlib.import_module(f"icep.{name}.handlers")
        except ModuleNotFoundError:
            continue
        topics = tuple(getattr(module, "SUBSCRIBED_TOPICS", ()))
        if topics:
            found.append(Consumer(name, topics, frozenset(getattr(module, "HANDLERS", {}))))
    return found


def _pascal(text: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[^A-Za-z0-9]+", text) if part)


def _doc(model: type) -> str:
    text = (model.__doc__ or "").strip()
    return " ".join(text.split())


def _payload_schemas(models: list[type[EventPayload]], prefix: str) -> tuple[dict[type, Json], Json]:
    """(model -> `$ref` of its schema, schema name -> JSON Schema) under `#/components/schemas/<prefix>`."""
    refs, top = models_json_schema(
        [(m, "serialization") for m in models], ref_template=f"#/components/schemas/{prefix}{{model}}"
    )
    by_model = {model: refs[(model, "serialization")] for model in models}
    return by_model, {f"{prefix}{name}": schema for name, schema in top.get("$defs", {}).items()}


def _delivery() -> tuple[set[str], str | None]:
    """What the notifications service delivers: its subscribed topics, and its ping's type."""
    try:
        handlers = importlib.import_module("icep.notifications.handlers")
        domain = importlib.import_module("icep.notifications.domain")
    except ModuleNotFoundError:
        return set(), None
    return set(getattr(handlers, "SUBSCRIBED_TOPICS", ())), getattr(domain, "PING_EVENT_TYPE", None)

"""The platform's published API documents, generated from the code: `icep docs` writes them.

- `openapi.json`: one OpenAPI 3.1 document of everything a partner reaches through the gateway: the
  gateway's own endpoints and the four services' `/v1` APIs (each completed by `icep.platform.openapi`),
  with the webhooks a subscriber receives in its `webhooks` section.
- `asyncapi.json`: an AsyncAPI 3.0 document of the Kafka topics, generated from `icep.contracts`: who
  sends and who receives each event type, its payload schema, its CloudEvents headers and its key.

Both are built from the apps' `openapi()` and the contract models, without starting anything (no broker,
no database). The gateway serves the checked-in files (`icep.gateway.docs`), and a test fails when they
drift from the code. The platform imports no service statically: services are found by import string.
"""

from __future__ import annotations

import copy
import importlib
import json
import pkgutil
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from pydantic.json_schema import models_json_schema

from icep.contracts import EventPayload, all_event_types
from icep.platform.launcher import SERVICES
from icep.platform.settings import ServiceSettings

Json = dict[str, Any]

OPENAPI_FILE = "openapi.json"
ASYNCAPI_FILE = "asyncapi.json"
#: Where `icep docs` writes, relative to the repository root (the gateway serves them from there too).
DEFAULT_DIR = Path("docs/api")

OPENAPI_VERSION = "3.1.0"
ASYNCAPI_VERSION = "3.0.0"
#: Placeholder broker address in the AsyncAPI document (each deployment has its own).
KAFKA_HOST = "kafka:9092"
KAFKA_BINDING_VERSION = "0.5.0"
#: The tag of the webhooks in the OpenAPI document.
EVENTS_TAG = "webhooks"


class MergeError(ValueError):
    """The services' documents cannot be merged as they are (a clash the code must resolve)."""


# --- the services' own documents ------------------------------------------------------------------------


def _factory(name: str) -> Callable[[], FastAPI]:
    module, attr = SERVICES[name][0].split(":")
    factory: Callable[[], FastAPI] = getattr(importlib.import_module(module), attr)
    return factory


def service_documents() -> dict[str, Json]:
    """Each process's own OpenAPI document (gateway included), from its app without running it."""
    return {name: copy.deepcopy(_factory(name)().openapi()) for name in SERVICES}


# --- events ---------------------------------------------------------------------------------------------


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


ENVELOPE_SCHEMA: Json = {
    "title": "EventEnvelope",
    "type": "object",
    "description": (
        "An ICEP event as subscribers receive it (webhooks, the feed and the stream): the CloudEvents 1.0 "
        "attributes, the `nation` and `releasableto` extensions, and the event's `data`."
    ),
    "required": ["id", "type", "source", "subject", "time", "nation", "releasableto", "data"],
    "properties": {
        "id": {
            "type": "string",
            "description": "The event id (UUIDv7): the same on Kafka (`ce_id`) and as `webhook-id`",
        },
        "type": {"type": "string", "description": "`icep.<service>.<aggregate>.<verb>.v<N>`"},
        "source": {"type": "string", "description": "`/icep/<service>`", "examples": ["/icep/plans"]},
        "subject": {"type": "string", "description": "The id of the aggregate the event is about"},
        "time": {"type": "string", "format": "date-time", "description": "When it happened (UTC)"},
        "nation": {"type": "string", "description": "The owning nation", "examples": ["DEU"]},
        "releasableto": {
            "type": "string",
            "description": "Who may see it: `DEU`, `DEU,FRA`, `ALLIES`, `ALLIES,UKR`",
        },
        "data": {"type": "object", "description": "The payload of the event type"},
    },
}

#: The `data` of the test message `POST /v1/subscriptions/{id}/ping` sends.
PING_DATA_SCHEMA: Json = {
    "title": "PingData",
    "type": "object",
    "required": ["subscription_id", "message"],
    "properties": {"subscription_id": {"type": "string"}, "message": {"type": "string", "const": "ping"}},
}

_WEBHOOK_HEADERS: dict[str, Json] = {
    "WebhookId": {
        "name": "webhook-id",
        "in": "header",
        "required": True,
        "description": (
            "The message id: the event's id, the same on every attempt and replay. Receivers deduplicate "
            "by it (delivery is at least once)."
        ),
        "schema": {"type": "string"},
    },
    "WebhookTimestamp": {
        "name": "webhook-timestamp",
        "in": "header",
        "required": True,
        "description": "Unix seconds when this attempt was sent; refuse messages far from your clock",
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    },
    "WebhookSignature": {
        "name": "webhook-signature",
        "in": "header",
        "required": True,
        "description": (
            "Standard Webhooks signature(s), space-separated `v1,<base64 HMAC-SHA256>` of "
            "`<webhook-id>.<webhook-timestamp>.<body>` with the subscription's secret (`whsec_...`); "
            "while a rotated-out secret is in its grace period, one signature per secret"
        ),
        "schema": {"type": "string", "pattern": r"^v1,[A-Za-z0-9+/=]+( v1,[A-Za-z0-9+/=]+)*$"},
    },
    "Traceparent": {
        "name": "traceparent",
        "in": "header",
        "required": False,
        "description": "W3C trace context of the delivery, continuing the trace of the change",
        "schema": {"type": "string"},
    },
}


def _webhook(event_type: str, source: str, data: Json, summary: str, description: str) -> Json:
    return {
        "post": {
            "operationId": f"receive{_pascal(event_type.removeprefix('icep.'))}",
            "tags": [EVENTS_TAG],
            "summary": summary,
            "description": description,
            "parameters": [{"$ref": f"#/components/parameters/{name}"} for name in _WEBHOOK_HEADERS],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "allOf": [{"$ref": "#/components/schemas/EventEnvelope"}],
                            "type": "object",
                            "properties": {
                                "type": {"const": event_type},
                                "source": {"const": source},
                                "data": data,
                            },
                        }
                    }
                },
            },
            "responses": {
                "2XX": {"description": "Received (the body of the answer is ignored)"},
                "410": {"description": "Gone: the subscription is disabled and nothing more is sent to it"},
                "default": {
                    "description": (
                        "Any other answer, or none in time: the delivery is tried again on the retry "
                        "schedule (a `Retry-After` is honoured); later events of the same aggregate wait"
                    )
                },
            },
        }
    }


_WEBHOOK_RULES = (
    "Sent as `POST` with a JSON body to each subscription whose filters accept the event and whose "
    "nation may see it, signed per Standard Webhooks. Delivery is at least once and in order per "
    "aggregate (`subject`): deduplicate by `webhook-id`."
)


def webhooks(
    events: Mapping[str, type[EventPayload]], delivered_topics: set[str], ping_type: str | None
) -> tuple[Json, Json]:
    """(`webhooks` section, component schemas it needs): one webhook per event type on a topic the
    notifications service delivers from, and the ping."""
    delivered = {t: m for t, m in events.items() if topic_of(producer_of(t, m)) in delivered_topics}
    refs, schemas = _payload_schemas(list(delivered.values()), "event.")
    schemas["EventEnvelope"] = ENVELOPE_SCHEMA
    section: Json = {}
    for event_type, model in delivered.items():
        service = producer_of(event_type, model)
        doc = _doc(model)
        section[event_type] = _webhook(
            event_type,
            f"/icep/{service}",
            refs[model],
            f"{model.__name__}: {event_type}",
            (f"{doc}\n\n" if doc else "") + f"Published by the {service} service. {_WEBHOOK_RULES}",
        )
    if ping_type is not None:
        schemas["event.PingData"] = PING_DATA_SCHEMA
        section[ping_type] = _webhook(
            ping_type,
            "/icep/notifications",
            {"$ref": "#/components/schemas/event.PingData"},
            f"Ping: {ping_type}",
            "The test message `POST /v1/subscriptions/{id}/ping` sends (never on Kafka), signed like "
            "every other message, so an endpoint can be checked before events flow.",
        )
    return section, schemas


def _delivery() -> tuple[set[str], str | None]:
    """What the notifications service delivers: its subscribed topics, and its ping's type."""
    try:
        handlers = importlib.import_module("icep.notifications.handlers")
        domain = importlib.import_module("icep.notifications.domain")
    except ModuleNotFoundError:
        return set(), None
    return set(getattr(handlers, "SUBSCRIBED_TOPICS", ())), getattr(domain, "PING_EVENT_TYPE", None)


# --- the merged OpenAPI document -------------------------------------------------------------------------

_COMPONENT_SECTIONS = ("schemas", "responses", "parameters", "headers", "securitySchemes")

GATEWAY_NOTES = """

**Conventions.** Paths live under `/v1/`. Errors are RFC 9457 problem details
(`application/problem+json`). A `POST` may carry an `Idempotency-Key`: a retry with the same key
gets the first answer. Mutable resources carry an `ETag`; a change takes it back as `If-Match` (412
when it is stale, 428 where it is required and missing). Lists page with `limit` and `cursor` and link
the `next` page. Answers carry the caller's `RateLimit-*` fields; a refusal is 429 with `Retry-After`.

**Events.** Subscribers receive events as signed webhooks (see `webhooks`), the catch-up feed
(`GET /v1/events`) or the live stream (`GET /v1/events/stream`). The Kafka topics behind them are
described by the AsyncAPI document at `/asyncapi.json`."""


def _walk_refs(node: Any, rename: Callable[[str], str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            node["$ref"] = rename(ref)
        for value in node.values():
            _walk_refs(value, rename)
    elif isinstance(node, list):
        for value in node:
            _walk_refs(value, rename)


def _rename_refs(node: Any, targets: Mapping[str, str]) -> None:
    _walk_refs(node, lambda ref: targets.get(ref, ref))


def _prefix(service: str) -> str:
    return _pascal(service)


def _resolve_schema_clashes(documents: Mapping[str, Json]) -> None:
    """Schemas of one name but different content in several documents get their service's name as a
    prefix in each of those documents (`ReleasabilityIn` -> `PlansReleasabilityIn`), refs included."""
    variants: dict[str, set[str]] = {}
    for doc in documents.values():
        for name, schema in doc.get("components", {}).get("schemas", {}).items():
            variants.setdefault(name, set()).add(json.dumps(schema, sort_keys=True))
    clashing = {name for name, found in variants.items() if len(found) > 1}
    for service, doc in documents.items():
        schemas: Json = doc.get("components", {}).get("schemas", {})
        renames = {name: f"{_prefix(service)}{name}" for name in clashing if name in schemas}
        if not renames:
            continue
        for old, new in renames.items():
            if new in variants:
                raise MergeError(f"cannot rename {service}'s schema {old} to {new}: that name is taken")
            schema = schemas.pop(old)
            if schema.get("title") == old:
                schema["title"] = new
            schemas[new] = schema
        targets = {f"#/components/schemas/{o}": f"#/components/schemas/{n}" for o, n in renames.items()}
        _rename_refs(doc, targets)


def _merge_components(target: Json, service: str, components: Json) -> None:
    for section in _COMPONENT_SECTIONS:
        into = target.setdefault(section, {})
        for name, value in components.get(section, {}).items():
            if name in into and into[name] != value:
                raise MergeError(f"components/{section}/{name} of {service} differs from another service's")
            into[name] = value
    unknown = set(components) - set(_COMPONENT_SECTIONS)
    if unknown:
        raise MergeError(f"{service} has components the merge does not know: {sorted(unknown)}")


def _operations(doc: Json) -> Iterator[tuple[str, str, Json]]:
    for path, item in doc.get("paths", {}).items():
        for method, operation in item.items():
            if isinstance(operation, dict) and "responses" in operation:
                yield path, method, operation


def merge_openapi(
    gateway_doc: Json,
    service_docs: Mapping[str, Json],
    *,
    webhooks_section: Json | None = None,
    webhook_schemas: Json | None = None,
) -> Json:
    """One document: the gateway's own paths and each service's, their components merged, one tag group
    per service. Fails (`MergeError`) on a path or operation id documented twice or a component that
    differs between documents and cannot be renamed apart."""
    documents = {"gateway": copy.deepcopy(gateway_doc)} | {
        name: copy.deepcopy(doc) for name, doc in service_docs.items()
    }
    # A path the gateway serves itself for every service (the audit trail, fanned out) is the gateway's.
    for service, doc in documents.items():
        if service != "gateway":
            for path in set(doc.get("paths", {})) & set(gateway_doc.get("paths", {})):
                del doc["paths"][path]
    _resolve_schema_clashes(documents)
    info = gateway_doc.get("info", {})
    merged: Json = {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "ICEP API",
            "version": info.get("version", "0.1.0"),
            "description": (info.get("description", "") + GATEWAY_NOTES).strip(),
        },
        "servers": [{"url": "/", "description": "The gateway"}],
        "externalDocs": {"description": "Event topics (AsyncAPI 3)", "url": "/asyncapi.json"},
        "paths": {},
        "components": {},
    }
    owner_of_path: dict[str, str] = {}
    owner_of_id: dict[str, str] = {}
    tag_groups: dict[str, list[str]] = {}
    owner_of_tag: dict[str, str] = {}
    for service, doc in documents.items():
        for path, item in doc.get("paths", {}).items():
            if path in owner_of_path:
                raise MergeError(f"{path} is documented by both {owner_of_path[path]} and {service}")
            owner_of_path[path] = service
            merged["paths"][path] = item
        for path, method, operation in _operations(doc):
            op_id = operation.get("operationId")
            if not op_id:
                raise MergeError(f"{method.upper()} {path} of {service} has no operationId")
            if op_id in owner_of_id:
                raise MergeError(f"operationId {op_id} is used by both {owner_of_id[op_id]} and {service}")
            owner_of_id[op_id] = service
            for tag in operation.get("tags", []):
                if owner_of_tag.setdefault(tag, service) != service:
                    raise MergeError(f"tag {tag!r} is used by both {owner_of_tag[tag]} and {service}")
                if tag not in tag_groups.setdefault(service, []):
                    tag_groups[service].append(tag)
        _merge_components(merged["components"], service, doc.get("components", {}))

    titles = {service: doc.get("info", {}).get("title", service) for service, doc in documents.items()}
    merged["tags"] = [
        {"name": tag, "description": f"{titles[service]} (the `{service}` service)"}
        for service, tags in tag_groups.items()
        for tag in tags
    ]
    merged["x-tagGroups"] = [
        {"name": titles[service], "tags": tags} for service, tags in tag_groups.items() if tags
    ]
    if webhooks_section:
        merged["webhooks"] = webhooks_section
        merged["tags"].append(
            {
                "name": EVENTS_TAG,
                "description": "What a subscription's endpoint receives (sent by the notifications service)",
            }
        )
        merged["x-tagGroups"].append({"name": "Webhooks", "tags": [EVENTS_TAG]})
        _merge_components(
            merged["components"],
            "webhooks",
            {"schemas": webhook_schemas or {}, "parameters": dict(_WEBHOOK_HEADERS)},
        )
        for _event, _method, operation in _operations({"paths": webhooks_section}):
            op_id = operation["operationId"]
            if op_id in owner_of_id:
                raise MergeError(f"operationId {op_id} of a webhook is used by {owner_of_id[op_id]} too")
            owner_of_id[op_id] = "webhooks"
    _check_refs(merged)
    return merged


def _check_refs(document: Json) -> None:
    """Every local `$ref` resolves (a rename or merge gone wrong shows here, not in a client)."""
    missing: set[str] = set()

    def check(ref: str) -> str:
        node: Any = document
        if ref.startswith("#/"):
            for part in ref[2:].split("/"):
                part = part.replace("~1", "/").replace("~0", "~")
                if not isinstance(node, dict) or part not in node:
                    missing.add(ref)
                    break
                node = node[part]
        return ref

    _walk_refs(copy.deepcopy(document), check)
    if missing:
        raise MergeError(f"unresolved references: {sorted(missing)}")


def openapi_document() -> Json:
    docs = service_documents()
    gateway = docs.pop("gateway")
    delivered_topics, ping_type = _delivery()
    section, schemas = webhooks(contracts(), delivered_topics, ping_type)
    return merge_openapi(gateway, docs, webhooks_section=section, webhook_schemas=schemas)


# --- the AsyncAPI document -------------------------------------------------------------------------------

CLOUDEVENT_HEADERS: Json = {
    "title": "CloudEventHeaders",
    "type": "object",
    "description": (
        "CloudEvents 1.0 in Kafka binary mode: the attributes as `ce_*` headers (UTF-8 strings), the "
        "data as the record value, plus the W3C trace context of the change that raised the event."
    ),
    "required": [
        "ce_id",
        "ce_source",
        "ce_type",
        "ce_specversion",
        "ce_time",
        "ce_subject",
        "ce_nation",
        "ce_releasableto",
        "content-type",
    ],
    "properties": {
        "ce_id": {
            "type": "string",
            "description": (
                "The event id (UUIDv7): the outbox row, the consumers' inbox key and the `webhook-id`"
            ),
        },
        "ce_source": {"type": "string", "description": "`/icep/<service>`"},
        "ce_type": {"type": "string", "description": "`icep.<service>.<aggregate>.<verb>.v<N>`"},
        "ce_specversion": {"type": "string", "const": "1.0"},
        "ce_time": {"type": "string", "format": "date-time", "description": "When it happened (UTC)"},
        "ce_subject": {"type": "string", "description": "The aggregate id (also the record key)"},
        "ce_nation": {"type": "string", "description": "Extension: the owning nation"},
        "ce_releasableto": {
            "type": "string",
            "description": "Extension: who may see it (`DEU`, `DEU,FRA`, `ALLIES`, `ALLIES,UKR`)",
        },
        "content-type": {"type": "string", "const": "application/json"},
        "traceparent": {"type": "string", "description": "W3C trace context"},
        "tracestate": {"type": "string", "description": "W3C trace context"},
    },
}

DEAD_LETTER_HEADERS: Json = {
    "title": "DeadLetterHeaders",
    "type": "object",
    "description": "The original record's headers, plus why and where from it was dead-lettered.",
    "required": [
        "icep_dlq_error",
        "icep_dlq_attempts",
        "icep_dlq_origin_topic",
        "icep_dlq_origin_partition",
        "icep_dlq_origin_offset",
        "icep_dlq_group",
        "icep_dlq_time",
    ],
    "properties": {
        "icep_dlq_error": {"type": "string", "description": "The handler's error (type: message)"},
        "icep_dlq_attempts": {"type": "string", "pattern": "^[0-9]+$"},
        "icep_dlq_origin_topic": {"type": "string"},
        "icep_dlq_origin_partition": {"type": "string", "pattern": "^[0-9]+$"},
        "icep_dlq_origin_offset": {"type": "string", "pattern": "^[0-9]+$"},
        "icep_dlq_group": {"type": "string", "description": "The consumer group that gave up"},
        "icep_dlq_time": {"type": "string", "description": "When (ISO 8601)"},
    },
}

_NAMESPACE_PARAMETER: Json = {
    "description": (
        "The deployment's topic namespace (`ICEP_TOPIC_NAMESPACE`, e.g. `staging.`): empty by default, so "
        "the plain names apply. It prefixes every topic and consumer group, so deployments can share a "
        "cluster."
    ),
    "default": "",
    "examples": ["", "staging."],
}

ASYNCAPI_DESCRIPTION = """Every event ICEP publishes, generated from `icep.contracts`.

Each producing service publishes to one topic, `icep.<service>.events` (6 partitions by default). A record is
a CloudEvent 1.0 in Kafka binary mode: the attributes travel as `ce_*` headers, the value is the event's
`data` as JSON, and the key is the aggregate id (`ce_subject`), so the events of one aggregate stay in order
on one partition. Publishing goes through a transactional outbox, consuming through an inbox keyed by
`ce_id`: at least once on the wire, exactly once in effect. A consumer that gives up on a record after its
retries moves it to its group's dead-letter topic, `icep.dlq.<consumer group>`.

Partner systems do not read Kafka: they receive the same events (those their nation may see) as signed
webhooks, the catch-up feed `GET /v1/events` or the live stream `GET /v1/events/stream` of the gateway,
in the envelope described by the gateway's OpenAPI document (`/openapi.json`, section `webhooks`)."""


def _channel_id(text: str) -> str:
    return text[:1].lower() + _pascal(text)[1:]


def asyncapi_document(version: str = "0.1.0") -> Json:
    events = contracts()
    models = list(events.values())
    refs, schemas = _payload_schemas(models, "")
    schemas["CloudEventHeaders"] = CLOUDEVENT_HEADERS
    schemas["DeadLetterHeaders"] = DEAD_LETTER_HEADERS
    schemas["EventEnvelope"] = ENVELOPE_SCHEMA
    messages: Json = {}
    channels: Json = {}
    operations: Json = {}
    by_service: dict[str, list[tuple[str, str]]] = {}  # service -> [(message key, event type)]
    for event_type, model in events.items():
        service = producer_of(event_type, model)
        key = model.__name__
        if key in messages:
            raise MergeError(f"two event models are named {key}; message names must be unique")
        doc = _doc(model)
        messages[key] = {
            "name": event_type,
            "title": key,
            "summary": doc or f"{event_type}, published by the {service} service",
            "contentType": "application/json",
            "headers": {
                "allOf": [
                    {"$ref": "#/components/schemas/CloudEventHeaders"},
                    {
                        "type": "object",
                        "properties": {
                            "ce_type": {"const": event_type},
                            "ce_source": {"const": f"/icep/{service}"},
                        },
                    },
                ]
            },
            "payload": refs[model],
            "bindings": {
                "kafka": {
                    "key": {
                        "type": "string",
                        "description": f"The {model.aggregate} id (the `ce_subject`)",
                    },
                    "bindingVersion": KAFKA_BINDING_VERSION,
                }
            },
        }
        by_service.setdefault(service, []).append((key, event_type))

    namespace = {"namespace": {"$ref": "#/components/parameters/namespace"}}
    kafka = [{"$ref": "#/servers/kafka"}]
    for service, keys in by_service.items():
        channel = _channel_id(f"{service} events")
        channels[channel] = {
            "address": "{namespace}" + topic_of(service),
            "title": topic_of(service),
            "description": f"Every event of the {service} service, in order per aggregate (the record key).",
            "servers": kafka,
            "parameters": namespace,
            "messages": {key: {"$ref": f"#/components/messages/{key}"} for key, _t in keys},
        }
        operations[_channel_id(f"{service} publishes events")] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{channel}"},
            "title": f"The {service} service publishes its events",
            "summary": "Through the transactional outbox: written with the change, sent after the commit.",
            "messages": [{"$ref": f"#/channels/{channel}/messages/{key}"} for key, _t in keys],
        }

    messages["DeadLetter"] = {
        "name": "dead-letter",
        "title": "DeadLetter",
        "summary": "A record a consumer gave up on: the original key, value and headers, plus why.",
        "contentType": "application/json",
        "headers": {
            "allOf": [
                {"$ref": "#/components/schemas/DeadLetterHeaders"},
                {"type": "object", "additionalProperties": {"type": "string"}},
            ]
        },
        "payload": {"description": "The original record's value, unchanged"},
    }
    for consumer in consumers():
        for topic in consumer.topics:
            producing = topic.removeprefix("icep.").removesuffix(".events")
            channel = _channel_id(f"{producing} events")
            if channel not in channels:
                raise MergeError(f"{consumer.service} subscribes to {topic}, which no contract publishes to")
            handled = [
                key
                for key, event_type in by_service[producing]
                if "*" in consumer.handles or event_type in consumer.handles
            ]
            operations[_channel_id(f"{consumer.service} consumes {producing} events")] = {
                "action": "receive",
                "channel": {"$ref": f"#/channels/{channel}"},
                "title": f"The {consumer.service} service consumes {topic}",
                "summary": (
                    f"Consumer group `{{namespace}}{consumer.group}`; each event handled once, in one "
                    "transaction with its inbox row"
                    + ("" if "*" in consumer.handles else "; other types are skipped")
                ),
                "messages": [{"$ref": f"#/channels/{channel}/messages/{key}"} for key in handled],
            }
        dlq = _channel_id(f"{consumer.service} dead letters")
        channels[dlq] = {
            "address": "{namespace}" + consumer.dead_letter_topic,
            "title": consumer.dead_letter_topic,
            "description": (
                f"Records the {consumer.service} service could not handle after its retries; they can be "
                "listed and redriven through the same handler."
            ),
            "servers": kafka,
            "parameters": namespace,
            "messages": {"DeadLetter": {"$ref": "#/components/messages/DeadLetter"}},
        }
        operations[_channel_id(f"{consumer.service} dead letters")] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{dlq}"},
            "title": f"The {consumer.service} service dead-letters a record",
            "messages": [{"$ref": f"#/channels/{dlq}/messages/DeadLetter"}],
        }

    messages["StreamedEvent"] = {
        "name": "stream-event",
        "title": "StreamedEvent",
        "summary": "One Server-Sent Events message of the live stream",
        "description": (
            "`id:` the feed position (send it back as `Last-Event-ID` to resume), `event:` the event type, "
            "`data:` the event in the subscriber envelope, whose `data` is the payload of that type (see "
            "the messages of the Kafka channels)."
        ),
        "contentType": "application/json",
        "payload": {"$ref": "#/components/schemas/EventEnvelope"},
    }
    channels["eventStream"] = {
        "address": "/v1/events/stream",
        "title": "GET /v1/events/stream",
        "description": (
            "The live stream partners read through the gateway (`text/event-stream`, OAuth2 bearer token): "
            "the events of the plans, procurement and standards topics the caller's nation may see, as "
            "they are logged. The catch-up feed `GET /v1/events` pages through the same events."
        ),
        "servers": [{"$ref": "#/servers/gateway"}],
        "messages": {"StreamedEvent": {"$ref": "#/components/messages/StreamedEvent"}},
    }
    operations["partnersReadTheStream"] = {
        "action": "receive",
        "channel": {"$ref": "#/channels/eventStream"},
        "title": "A partner system reads the live stream",
        "messages": [{"$ref": "#/channels/eventStream/messages/StreamedEvent"}],
    }

    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {"title": "ICEP events", "version": version, "description": ASYNCAPI_DESCRIPTION},
        "defaultContentType": "application/json",
        "servers": {
            "kafka": {
                "host": KAFKA_HOST,
                "protocol": "kafka",
                "description": "The deployment's Kafka (`KAFKA_BOOTSTRAP_SERVERS`); a placeholder here",
            },
            "gateway": {
                "host": "localhost:8000",
                "protocol": "http",
                "description": "The ICEP gateway (its address in your deployment)",
            },
        },
        "channels": channels,
        "operations": operations,
        "components": {
            "schemas": schemas,
            "messages": messages,
            "parameters": {"namespace": _NAMESPACE_PARAMETER},
        },
    }


# --- files ------------------------------------------------------------------------------------------------


def render(document: Json) -> str:
    """The checked-in form: sorted keys, two-space indent, UTF-8, a trailing newline."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def documents() -> dict[str, str]:
    """File name -> content of every generated document."""
    openapi = openapi_document()
    return {
        OPENAPI_FILE: render(openapi),
        ASYNCAPI_FILE: render(asyncapi_document(openapi["info"]["version"])),
    }


def write(directory: Path = DEFAULT_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, content in documents().items():
        path = directory / name
        path.write_text(content, encoding="utf-8")
        written.append(path)
    return written


def differences(old: Any, new: Any, where: str = "", limit: int = 20) -> list[str]:
    """Where two JSON values differ, as JSON-pointer-like paths (at most `limit` of them)."""
    found: list[str] = []

    def walk(a: Any, b: Any, at: str) -> None:
        if len(found) >= limit or a == b:
            return
        if isinstance(a, dict) and isinstance(b, dict):
            for key in sorted(set(a) | set(b)):
                child = f"{at}/{str(key).replace('~', '~0').replace('/', '~1')}"
                if key not in a:
                    found.append(f"{child} (added)")
                elif key not in b:
                    found.append(f"{child} (removed)")
                else:
                    walk(a[key], b[key], child)
                if len(found) >= limit:
                    return
        elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
            for index, (x, y) in enumerate(zip(a, b, strict=True)):
                walk(x, y, f"{at}/{index}")
        else:
            found.append(at or "/")

    walk(old, new, where)
    return found


def drift(directory: Path = DEFAULT_DIR) -> dict[str, list[str]]:
    """File name -> where the checked-in file differs from what the code generates (empty: none)."""
    drifted: dict[str, list[str]] = {}
    for name, content in documents().items():
        path = directory / name
        if not path.exists():
            drifted[name] = ["the file is missing"]
            continue
        current = path.read_text(encoding="utf-8")
        if current == content:
            continue
        try:
            where = differences(json.loads(current), json.loads(content))
        except ValueError:
            where = ["the file is not valid JSON"]
        drifted[name] = where or ["formatting (run `icep docs` to rewrite it)"]
    return drifted

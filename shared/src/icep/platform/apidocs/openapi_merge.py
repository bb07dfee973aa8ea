"""The merged OpenAPI 3.1 document: the gateway's own paths and each service's `/v1` API in one
document, clashing schema names renamed apart, components merged, one tag group per service, the
webhooks added, and every local `$ref` checked.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from icep.platform.apidocs.openapi_webhooks import _WEBHOOK_HEADERS, EVENTS_TAG, webhooks
from icep.platform.apidocs.sources import Json, MergeError, _delivery, _pascal, contracts, service_documents

OPENAPI_VERSION = "3.1.0"


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


_OPERATIONS_TAG = """Operators' tools for the {service} service's event plumbing: its transactional outbox
(backlog, failing and parked rows) and, for a consuming service, its dead letters. Operators only (role
`operator`): a nation's operators see and act on the rows of events their nation owns, NATO's operators on
all."""


def _tag_description(doc: Json, tag: str, service: str, title: str) -> str:
    """The service's own description of a tag (who reads what, in which state), with the service named."""
    own = next((t.get("description", "") for t in doc.get("tags", []) if t.get("name") == tag), "")
    if not own and tag == f"{service} operations":
        own = _OPERATIONS_TAG.format(service=service)
    served = f"*{title} (the `{service}` service).*"
    return f"{own}\n\n{served}" if own else served


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
        {"name": tag, "description": _tag_description(documents[service], tag, service, titles[service])}
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
            for escaped in ref[2:].split("/"):
                part = escaped.replace("~1", "/").replace("~0", "~")
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

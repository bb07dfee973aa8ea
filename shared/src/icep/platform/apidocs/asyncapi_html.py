"""The AsyncAPI document as one static HTML page (`asyncapi.html`), written by `icep docs` beside the JSON.

The gateway serves it at `/docs/asyncapi`. It needs no script and loads nothing: every channel (topic) with
who publishes and who receives on it, its messages (event types) with their headers and key, and every
payload schema as a table of its fields plus the schema itself. Like the JSON files it is generated, checked
in, and checked for drift (`icep docs --check`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jinja2
from markdown_it import MarkdownIt
from markupsafe import Markup

from icep.platform.apidocs.sources import Json

_SCHEMA_REF = "#/components/schemas/"
_MESSAGE_REF = "#/components/messages/"


@dataclass(frozen=True)
class Field:
    name: str
    type: str
    required: bool
    description: str
    #: The component schema the field's type names, if one (the page links to it).
    link: str | None = None
    #: The one value the field may have, as JSON (`"1.0"`), if the schema fixes it.
    const: str | None = None


@dataclass(frozen=True)
class Message:
    key: str
    name: str
    title: str
    summary: str
    description: str
    content_type: str
    payload: str | None
    fields: list[Field]
    headers: list[Field]
    #: The component schema the headers extend (the CloudEvents attributes), if one.
    header_schema: str | None
    record_key: str


@dataclass(frozen=True)
class Channel:
    key: str
    address: str
    title: str
    description: str
    servers: list[str]
    senders: list[str]
    receivers: list[str]
    messages: list[Message]


@dataclass(frozen=True)
class Schema:
    name: str
    description: str
    fields: list[Field]
    text: str
    used_by: list[str] = field(default_factory=list)


def _ref_name(node: Any, prefix: str) -> str | None:
    ref = node.get("$ref") if isinstance(node, Mapping) else None
    return ref.removeprefix(prefix) if isinstance(ref, str) and ref.startswith(prefix) else None


def _type_of(node: Any) -> tuple[str, str | None]:
    """A short reading of a schema's type and the component it names (`array of AwardFigure`)."""
    if not isinstance(node, Mapping):
        return "any", None
    named = _ref_name(node, _SCHEMA_REF)
    if named:
        return named, named
    for combinator in ("anyOf", "oneOf"):
        if combinator in node:
            parts = [_type_of(option) for option in node[combinator]]
            return " | ".join(text for text, _ in parts), next((link for _, link in parts if link), None)
    if "const" in node:
        return json.dumps(node["const"]), None
    if "enum" in node:
        return " | ".join(json.dumps(value) for value in node["enum"]), None
    kind = node.get("type", "any")
    if isinstance(kind, list):
        kind = " | ".join(str(k) for k in kind)
    if kind == "array":
        inner, link = _type_of(node.get("items"))
        return f"array of {inner}", link
    if kind == "object" and isinstance(node.get("additionalProperties"), Mapping):
        inner, link = _type_of(node["additionalProperties"])
        return f"object of {inner}", link
    if "format" in node:
        return f"{kind} ({node['format']})", None
    return str(kind), None


def _fields(schema: Any, schemas: Mapping[str, Any]) -> list[Field]:
    """The top-level fields of an object schema (following a `$ref` and merging an `allOf`)."""
    named = _ref_name(schema, _SCHEMA_REF)
    if named:
        schema = schemas.get(named, {})
    if not isinstance(schema, Mapping):
        return []
    found: dict[str, Field] = {}
    parts = [*(_fields(part, schemas) for part in schema.get("allOf", [])), _own_fields(schema)]
    for part_fields in parts:
        for item in part_fields:
            earlier = found.get(item.name)
            # A later part fixing an inherited field's value (`ce_type` of one event type).
            found[item.name] = (
                Field(
                    item.name,
                    f"{earlier.type.split(',', 1)[0]}, always {item.const}",
                    earlier.required or item.required,
                    earlier.description,
                    earlier.link,
                    item.const,
                )
                if earlier is not None and item.const is not None
                else item
            )
    return list(found.values())


def _own_fields(schema: Mapping[str, Any]) -> list[Field]:
    required = set(schema.get("required", []))
    fields = []
    for name, node in schema.get("properties", {}).items():
        text, link = _type_of(node)
        known = isinstance(node, Mapping)
        description = str(node.get("description", "")) if known else ""
        const = json.dumps(node["const"]) if known and "const" in node else None
        fields.append(Field(name, text, name in required, description, link, const))
    return fields


def _who(document: Json, channel_key: str, action: str) -> list[str]:
    """Operation ids of `action` ("send"/"receive") on the channel."""
    return sorted(
        key
        for key, operation in document.get("operations", {}).items()
        if operation.get("action") == action
        and operation.get("channel", {}).get("$ref") == f"#/channels/{channel_key}"
    )


def _messages(document: Json, channel: Json, schemas: Mapping[str, Any]) -> list[Message]:
    components = document.get("components", {}).get("messages", {})
    messages = []
    for key, node in sorted(channel.get("messages", {}).items()):
        message = components.get(_ref_name(node, _MESSAGE_REF) or "", node)
        payload = message.get("payload", {})
        record_key = message.get("bindings", {}).get("kafka", {}).get("key", {}).get("description", "")
        messages.append(
            Message(
                key=key,
                name=str(message.get("name", key)),
                title=str(message.get("title", key)),
                summary=str(message.get("summary", "")),
                description=str(message.get("description", "")),
                content_type=str(message.get("contentType", document.get("defaultContentType", ""))),
                payload=_ref_name(payload, _SCHEMA_REF),
                fields=_fields(payload, schemas),
                headers=_fields(message.get("headers", {}), schemas),
                header_schema=next(
                    (
                        name
                        for part in message.get("headers", {}).get("allOf", [])
                        if (name := _ref_name(part, _SCHEMA_REF))
                    ),
                    None,
                ),
                record_key=str(record_key),
            )
        )
    return messages


def page_model(document: Json) -> dict[str, Any]:
    """What the template shows, read from the AsyncAPI document."""
    schemas: Mapping[str, Any] = document.get("components", {}).get("schemas", {})
    channels = [
        Channel(
            key=key,
            address=str(channel.get("address", key)),
            title=str(channel.get("title", key)),
            description=str(channel.get("description", "")),
            servers=sorted(
                str(server.get("$ref", "")).removeprefix("#/servers/")
                for server in channel.get("servers", [])
            ),
            senders=_who(document, key, "send"),
            receivers=_who(document, key, "receive"),
            messages=_messages(document, channel, schemas),
        )
        for key, channel in sorted(document.get("channels", {}).items())
    ]
    used: dict[str, list[str]] = {}
    for channel in channels:
        for message in channel.messages:
            if message.payload:
                used.setdefault(message.payload, []).append(message.name)
    return {
        "info": document.get("info", {}),
        "asyncapi": document.get("asyncapi", ""),
        "servers": document.get("servers", {}),
        "channels": channels,
        "schemas": [
            Schema(
                name=name,
                description=str(schema.get("description", "")),
                fields=_fields(schema, schemas),
                text=json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False),
                used_by=sorted(set(used.get(name, []))),
            )
            for name, schema in sorted(schemas.items())
        ],
    }


#: CommonMark without raw HTML: descriptions are written in Markdown (`code`, *emphasis*, links).
_markdown = MarkdownIt("commonmark", {"html": False})


def _md(text: str) -> Markup:
    return Markup(_markdown.render(text))


def _md_inline(text: str) -> Markup:
    return Markup(_markdown.renderInline(text))


_environment = jinja2.Environment(
    loader=jinja2.PackageLoader("icep.platform.apidocs", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
)
_environment.filters["md"] = _md
_environment.filters["md_inline"] = _md_inline


def render_asyncapi_html(document: Json) -> str:
    """The page: deterministic for one document (the drift check compares it byte for byte)."""
    return _environment.get_template("asyncapi.html.j2").render(page_model(document))

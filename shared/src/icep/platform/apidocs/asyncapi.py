"""The AsyncAPI 3.0 document of the Kafka topics: who sends and who receives each event type, its
payload schema, its CloudEvents headers and its key; the consumers' dead-letter topics; and the live
stream partners read through the gateway.
"""

from __future__ import annotations

from icep.platform.apidocs.openapi_webhooks import ENVELOPE_SCHEMA
from icep.platform.apidocs.sources import (
    Json,
    MergeError,
    _doc,
    _pascal,
    _payload_schemas,
    consumers,
    contracts,
    producer_of,
    topic_of,
)

ASYNCAPI_VERSION = "3.0.0"


#: Placeholder broker address in the AsyncAPI document (each deployment has its own).
KAFKA_HOST = "kafka:9092"


KAFKA_BINDING_VERSION = "0.5.0"


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
        "ce_subject": {
            "type": "string",
            "description": (
                "What the event is about (also the record key): for most types the aggregate's id, for a "
                "nation's answer to a standard `<standard_id>:<nation>`; each message states its own"
            ),
        },
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
`data` as JSON, and the key is the event's subject (`ce_subject`), so the events of one aggregate stay in
order on one partition. The subject is the id of the aggregate the event is about (`plan_id` for every plans
event, progress and capacity included; `initiative_id` for every initiative event, bids, contracts and
call-offs included), except for a nation's answer to a standard edition, which has no id of its own: its
subject is `<standard_id>:<nation>`, which no path takes as one value (read it at
`GET /v1/standards/{standard_id}/responses/{nation}`). Each message states its subject.

Publishing goes through a transactional outbox, consuming through an inbox keyed by `ce_id`: at least once
on the wire, exactly once in effect. A consumer that gives up on a record after its retries moves it to its
group's dead-letter topic, `icep.dlq.<consumer group>`.

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
        subject = model.subject.describe(model.aggregate)
        messages[key] = {
            "name": event_type,
            "title": key,
            "summary": doc or f"{event_type}, published by the {service} service",
            "description": f"**Subject** (`ce_subject`, the record key): {subject}",
            "contentType": "application/json",
            "headers": {
                "allOf": [
                    {"$ref": "#/components/schemas/CloudEventHeaders"},
                    {
                        "type": "object",
                        "properties": {
                            "ce_type": {"const": event_type},
                            "ce_source": {"const": f"/icep/{service}"},
                            "ce_subject": {"description": subject},
                        },
                    },
                ]
            },
            "payload": refs[model],
            "bindings": {
                "kafka": {
                    "key": {
                        "type": "string",
                        "description": f"The subject (`ce_subject`): {subject}",
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

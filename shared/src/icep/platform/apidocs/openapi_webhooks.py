"""The `webhooks` section of the OpenAPI document: what a subscription's endpoint receives, one
webhook per event type the notifications service delivers, plus the ping, in the subscriber envelope
with the Standard Webhooks headers.
"""

from __future__ import annotations

from collections.abc import Mapping

from icep.contracts import EventPayload
from icep.platform.apidocs.sources import Json, _doc, _pascal, _payload_schemas, producer_of, topic_of

#: The tag of the webhooks in the OpenAPI document.
EVENTS_TAG = "webhooks"


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
        "subject": {
            "type": "string",
            "description": (
                "What the event is about: the id of its aggregate (`plan_id`, `initiative_id`, ...), except "
                "for a nation's answer to a standard edition: `<standard_id>:<nation>`. Each event type "
                "states its own; events of one subject arrive in order."
            ),
        },
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


def _webhook(
    event_type: str, source: str, data: Json, summary: str, description: str, subject: str | None = None
) -> Json:
    return {
        "post": {
            "operationId": f"receive{_pascal(event_type.removeprefix('icep.'))}",
            "tags": [EVENTS_TAG],
            # No bearer token: the receiver authenticates the sender by the `webhook-signature` header.
            "security": [],
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
                            }
                            | ({"subject": {"description": subject}} if subject else {}),
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
        subject = model.subject.describe(model.aggregate)
        section[event_type] = _webhook(
            event_type,
            f"/icep/{service}",
            refs[model],
            f"{model.__name__}: {event_type}",
            (f"{doc}\n\n" if doc else "")
            + f"**Subject:** {subject}\n\nPublished by the {service} service. {_WEBHOOK_RULES}",
            subject,
        )
    if ping_type is not None:
        schemas["event.PingData"] = PING_DATA_SCHEMA
        section[ping_type] = _webhook(
            ping_type,
            "/icep/notifications",
            {"$ref": "#/components/schemas/event.PingData"},
            f"Ping: {ping_type}",
            "The test message `POST /v1/subscriptions/{id}/ping` sends (never on Kafka), signed like "
            "every other message, so an endpoint can be checked before events flow. **Subject:** the "
            "subscription's id.",
            "`<subscription_id>`: the subscription's id",
        )
    return section, schemas

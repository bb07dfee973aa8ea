"""Operator-role routes of a consuming service: `/v1/operations/<service>/dead-letters`.

Thin: each route authorizes (role `operator`; a nation's operators see the dead letters of events their
nation owns, NATO's operators all, as for the audit trail), calls one `DeadLetters` method and shapes the
answer. The gateway routes `/v1/operations/<service>` to that service.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, Field

from icep.platform.auth import NATO, Principal, require_role
from icep.platform.http import next_link
from icep.platform.operations.dead_letters import DeadLetterQuery, DeadLetters, key_text

if TYPE_CHECKING:
    from icep.platform.app import Runtime

OPERATOR = "operator"
Status = Literal["waiting", "redriven", "resolved"]
Operator = Annotated[Principal, Depends(require_role(OPERATOR))]
DeadLetterId = Annotated[str, Path(min_length=1, max_length=36, description="The dead letter's id")]
EventType = Annotated[
    str | None, Query(alias="type", min_length=1, max_length=200, description="Only this event type")
]


class Position(BaseModel):
    topic: str
    partition: int
    offset: int


class RecordHeader(BaseModel):
    name: str
    value: str | None = Field(default=None, description="The value, when it is UTF-8 text")
    base64: str | None = Field(default=None, description="The value in base64, when it is not text")


class DeadLetterSummary(BaseModel):
    id: str = Field(description="UUIDv7 of the dead letter; lists sort by it, newest first")
    service: str
    consumer_group: str
    event_id: str = Field(description="The event's id (`ce_id`); `<topic>/<partition>/<offset>` for no event")
    event_type: str | None
    owner_nation: str | None
    status: Status = Field(description="waiting, redriven (sent to its origin again) or resolved (handled)")
    error: str = Field(description="The last failure: exception type and message")
    attempts: int = Field(description="The handler's tries before it was dead-lettered (the last time)")
    origin: Position = Field(description="Where the consumer read the record (the last time)")
    dead_letter: Position = Field(description="Its copy on the dead-letter topic")
    dead_lettered_at: datetime
    redriven_at: datetime | None
    resolved_at: datetime | None
    redrive_count: int


class DeadLetterOut(DeadLetterSummary):
    key: str | None = Field(description="The record key (the event's subject)")
    headers: list[RecordHeader] = Field(description="The record's headers, without the dead-letter ones")
    payload: Any = Field(description="The record's value: its JSON, or the text when it is no JSON")


class DeadLetterPage(BaseModel):
    items: list[DeadLetterSummary]
    next: str | None


class RedriveResult(BaseModel):
    redriven: int = Field(description="How many dead letters were sent to their origin topic again")
    items: list[DeadLetterSummary]


class PurgeResult(BaseModel):
    purged: int


def _summary(row: dict[str, Any], service: str) -> dict[str, Any]:
    return {
        "id": row["id"],
        "service": service,
        "consumer_group": row["consumer"],
        "event_id": row["event_id"],
        "event_type": row["event_type"],
        "owner_nation": row["owner_nation"],
        "status": row["status"],
        "error": row["error"],
        "attempts": row["attempts"],
        "origin": Position(
            topic=row["origin_topic"], partition=row["origin_partition"], offset=row["origin_offset"]
        ),
        "dead_letter": Position(
            topic=row["dlq_topic"], partition=row["dlq_partition"], offset=row["dlq_offset"]
        ),
        "dead_lettered_at": row["dead_lettered_at"],
        "redriven_at": row["redriven_at"],
        "resolved_at": row["resolved_at"],
        "redrive_count": row["redrive_count"],
    }


def summary(row: dict[str, Any], service: str) -> DeadLetterSummary:
    return DeadLetterSummary(**_summary(row, service))


def detail(row: dict[str, Any], service: str) -> DeadLetterOut:
    value = row["record_value"]
    payload: Any
    try:
        payload = None if value is None else json.loads(value)
    except ValueError:
        payload = value.decode(errors="replace")
    return DeadLetterOut(
        **_summary(row, service),
        key=key_text(row["record_key"]),
        headers=[RecordHeader(**h) for h in row["headers"]],
        payload=payload,
    )


def dead_letters_of(runtime: Runtime) -> DeadLetters:
    """The service's dead letters, as its running consumer records them."""
    assert runtime.db is not None and runtime.spec.tables is not None
    settings = runtime.settings
    return DeadLetters(
        runtime.db,
        runtime.spec.tables.dead_letters,
        group=settings.consumer_group,
        service=settings.service_name,
        bootstrap=settings.kafka_bootstrap_servers,
        dlq_topic=settings.dead_letter_topic,
    )


def _store(request: Request) -> DeadLetters:
    return dead_letters_of(request.app.state.runtime)


Store = Annotated[DeadLetters, Depends(_store)]


def _nation(principal: Principal) -> str | None:
    """None (all) for NATO's operators; a nation's operators only see their nation's events."""
    return None if principal.nation == NATO else principal.nation


_OPERATORS = (
    "Operators only (role `operator`; others 403): a nation's operators act on the dead letters of events "
    "their nation owns (others are 404 to them); NATO's operators on all."
)


def _pascal(service: str) -> str:
    return "".join(part.capitalize() for part in service.replace("_", "-").split("-"))


def router_for(service: str) -> APIRouter:
    """The routes of `service`: under its own prefix, with its own operation ids and tag, so the merged
    API document keeps the services apart."""
    name = _pascal(service)
    prefix = f"/v1/operations/{service}/dead-letters"
    router = APIRouter(tags=[f"{service} operations"])

    @router.get(
        prefix,
        operation_id=f"list{name}DeadLetters",
        summary=f"The dead letters of {service}'s consumer group (operators)",
        description=(
            "Records the consumer gave up on after its retries, newest first: their event, error, attempts "
            "and origin. A nation's operators see those of events their nation owns; NATO's operators see "
            "all. Operators only (role `operator`; others 403)."
        ),
        response_model=DeadLetterPage,
    )
    async def list_dead_letters(
        request: Request,
        principal: Operator,
        store: Store,
        status: Annotated[Status | None, Query(description="Only dead letters in this state")] = None,
        event_type: EventType = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        cursor: Annotated[str | None, Query(max_length=64)] = None,
    ) -> DeadLetterPage:
        rows, after = await store.query(
            DeadLetterQuery(
                status=status,
                event_type=event_type,
                owner_nation=_nation(principal),
                cursor=cursor,
                limit=limit,
            )
        )
        return DeadLetterPage(items=[summary(r, service) for r in rows], next=next_link(request, after))

    @router.get(
        prefix + "/{dead_letter_id}",
        operation_id=f"get{name}DeadLetter",
        summary=f"One dead letter of {service} (operators)",
        description=f"The dead letter's error, origin, headers and payload. {_OPERATORS}",
        response_model=DeadLetterOut,
    )
    async def get_dead_letter(
        dead_letter_id: DeadLetterId, principal: Operator, store: Store
    ) -> DeadLetterOut:
        return detail(await store.get(dead_letter_id, _nation(principal)), service)

    @router.post(
        prefix + "/{dead_letter_id}/redrive",
        operation_id=f"redrive{name}DeadLetter",
        summary=f"Redrive one dead letter of {service} (operators)",
        description=(
            "The record goes to its origin topic again with an `icep_redrive` header; the consumer group "
            "handles it once (other groups skip it as a duplicate) and marks the dead letter resolved. "
            f"A resolved dead letter is refused (409). {_OPERATORS}"
        ),
        response_model=DeadLetterSummary,
    )
    async def redrive_dead_letter(
        dead_letter_id: DeadLetterId, principal: Operator, store: Store
    ) -> DeadLetterSummary:
        return summary(await store.redrive(dead_letter_id, _nation(principal)), service)

    @router.post(
        prefix + "/redrive",
        operation_id=f"redriveAll{name}DeadLetters",
        summary=f"Redrive the waiting dead letters of {service} (operators)",
        description=(
            "Every dead letter in the given state (default `waiting`), optionally of one event type, goes "
            f"to its origin topic again, as with the redrive of one. {_OPERATORS}"
        ),
        response_model=RedriveResult,
    )
    async def redrive_all_dead_letters(
        principal: Operator,
        store: Store,
        event_type: EventType = None,
        status: Annotated[
            Literal["waiting", "redriven"],
            Query(description="Those in this state: waiting, or redriven ones not handled yet"),
        ] = "waiting",
    ) -> RedriveResult:
        rows = await store.redrive_all(event_type=event_type, owner_nation=_nation(principal), status=status)
        return RedriveResult(redriven=len(rows), items=[summary(r, service) for r in rows])

    @router.delete(
        prefix + "/{dead_letter_id}",
        operation_id=f"purge{name}DeadLetter",
        summary=f"Delete one dead letter of {service} (operators)",
        description=f"Its copy on the Kafka dead-letter topic stays, for its own retention. {_OPERATORS}",
        status_code=204,
        response_class=Response,
    )
    async def purge_dead_letter(dead_letter_id: DeadLetterId, principal: Operator, store: Store) -> Response:
        await store.purge(dead_letter_id=dead_letter_id, owner_nation=_nation(principal))
        return Response(status_code=204)

    @router.post(
        prefix + "/purge",
        operation_id=f"purge{name}DeadLetters",
        summary=f"Delete the dead letters of {service} in one state (operators)",
        description=f"The Kafka dead-letter topic keeps its copies for its own retention. {_OPERATORS}",
        response_model=PurgeResult,
    )
    async def purge_dead_letters(
        principal: Operator,
        store: Store,
        status: Annotated[Status, Query(description="Delete the dead letters in this state")],
    ) -> PurgeResult:
        return PurgeResult(purged=await store.purge(status=status, owner_nation=_nation(principal)))

    return router

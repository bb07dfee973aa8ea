"""`icep dead-letters ...` and `icep consumer ...`: the operators' commands for a consuming service.

They run where the service runs (a shell in its pod: `kubectl exec`), with its settings from the same
environment: its database URL, its Kafka bootstrap servers and topic namespace, so they see what the
service sees. The logic is in `dead_letters` and `reprocess`; this module only parses and prints.
"""

from __future__ import annotations

import asyncio
import importlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import sqlalchemy as sa
import typer
from rich.console import Console
from rich.panel import Panel
from rich.syntax import Syntax
from rich.table import Table

from icep.platform.db import Database
from icep.platform.errors import DomainError
from icep.platform.operations import reprocess as reprocessing
from icep.platform.operations.dead_letters import (
    DeadLetterQuery,
    DeadLetters,
    headers_from_json,
    key_text,
    payload_text,
    when,
)
from icep.platform.settings import ServiceSettings

console = Console()
T = TypeVar("T")

dead_letters_app = typer.Typer(
    help="Dead letters of a service's consumer group: list, show, redrive, purge "
    "(docs/operations/dead-letters.md).",
    no_args_is_help=True,
)
consumer_app = typer.Typer(
    help="A service's consumer group: lag, and reprocessing from an offset or a time.", no_args_is_help=True
)

ServiceArg = Annotated[str, typer.Argument(help="A consuming service: procurement or notifications")]


@dataclass
class ServiceContext:
    name: str
    settings: ServiceSettings
    inbox: sa.Table
    dead_letters: sa.Table
    topics: list[str]

    def store(self, db: Database) -> DeadLetters:
        return DeadLetters(
            db,
            self.dead_letters,
            group=self.settings.consumer_group,
            service=self.name,
            bootstrap=self.settings.kafka_bootstrap_servers,
            dlq_topic=self.settings.dead_letter_topic,
        )


def service_context(name: str) -> ServiceContext:
    """The service's settings (from the environment), tables and subscribed topics, found by name (the
    platform imports no service statically)."""
    try:
        settings_module = importlib.import_module(f"icep.{name}.settings")
        models = importlib.import_module(f"icep.{name}.models")
        handlers = importlib.import_module(f"icep.{name}.handlers")
    except ModuleNotFoundError:
        raise typer.BadParameter(f"{name!r} is no service with a consumer group") from None
    topics: list[str] = list(getattr(handlers, "SUBSCRIBED_TOPICS", []))
    if not topics:
        raise typer.BadParameter(f"{name} consumes no events: it has no dead letters")
    cls = next(
        v for k, v in vars(settings_module).items() if k.endswith("Settings") and k != "ServiceSettings"
    )
    settings: ServiceSettings = cls()
    return ServiceContext(
        name=name,
        settings=settings,
        inbox=models.tables.inbox,
        dead_letters=models.tables.dead_letters,
        topics=[settings.topic_name(t) for t in topics],
    )


def _run(name: str, work: Callable[[ServiceContext, Database], Awaitable[T]]) -> T:
    """Run `work` against the service's database; a refusal is printed and exits 1."""
    context = service_context(name)

    async def main() -> T:
        db = Database(context.settings.database_url)
        try:
            return await work(context, db)
        finally:
            await db.dispose()

    try:
        return asyncio.run(main())
    except DomainError as exc:
        console.print(f"[red]{exc.title}:[/] {exc.detail}", soft_wrap=True)
        raise typer.Exit(1) from exc


StatusOpt = Annotated[
    str | None, typer.Option("--status", help="waiting, redriven or resolved", show_default=False)
]
TypeOpt = Annotated[str | None, typer.Option("--type", help="An event type", show_default=False)]


@dead_letters_app.command("list")
def list_dead_letters(
    service: ServiceArg,
    status: StatusOpt = None,
    event_type: TypeOpt = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line")] = False,
) -> None:
    """The dead letters of the service's consumer group, newest first."""

    async def work(context: ServiceContext, db: Database) -> list[dict[str, Any]]:
        rows, _ = await context.store(db).query(
            DeadLetterQuery(status=status, event_type=event_type, limit=limit)
        )
        return rows

    rows = _run(service, work)
    if as_json:
        for row in rows:
            typer.echo(json.dumps(_brief(row), default=str))
        return
    table = Table(title=f"dead letters of {service} ({len(rows)})")
    for column in ("id", "status", "event type", "event id", "origin", "attempts", "dead-lettered", "error"):
        table.add_column(column, overflow="fold")
    for row in rows:
        brief = _brief(row)
        table.add_row(
            row["id"],
            row["status"],
            row["event_type"] or "",
            row["event_id"],
            brief["origin"],
            str(row["attempts"]),
            when(row["dead_lettered_at"]),
            row["error"][:120],
        )
    console.print(table)


def _brief(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "status": row["status"],
        "event_id": row["event_id"],
        "event_type": row["event_type"],
        "origin": f"{row['origin_topic']}[{row['origin_partition']}]@{row['origin_offset']}",
        "attempts": row["attempts"],
        "redrive_count": row["redrive_count"],
        "dead_lettered_at": when(row["dead_lettered_at"]),
        "error": row["error"],
    }


@dead_letters_app.command("show")
def show_dead_letter(
    service: ServiceArg, dead_letter_id: Annotated[str, typer.Argument(help="The dead letter's id")]
) -> None:
    """One dead letter: its error, origin, headers and the payload."""

    async def work(context: ServiceContext, db: Database) -> dict[str, Any]:
        return await context.store(db).get(dead_letter_id)

    row = _run(service, work)
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column(overflow="fold")
    for label, value in (
        ("id", row["id"]),
        ("status", row["status"]),
        ("consumer group", row["consumer"]),
        ("event", f"{row['event_id']} ({row['event_type']})"),
        ("owner nation", row["owner_nation"] or ""),
        (
            "origin",
            f"{row['origin_topic']} partition {row['origin_partition']} offset {row['origin_offset']}",
        ),
        (
            "dead-letter copy",
            f"{row['dlq_topic']} partition {row['dlq_partition']} offset {row['dlq_offset']}",
        ),
        ("attempts", str(row["attempts"])),
        ("dead-lettered at", when(row["dead_lettered_at"])),
        ("redriven", f"{row['redrive_count']} time(s), last {when(row['redriven_at']) or 'never'}"),
        ("resolved at", when(row["resolved_at"])),
        ("key", key_text(row["record_key"]) or ""),
    ):
        facts.add_row(label, value)
    console.print(Panel(facts, title=f"dead letter of {service}"))
    console.print(Panel(row["error"], title="error", border_style="red"))
    headers = Table("header", "value", title="headers")
    for name, value in headers_from_json(row["headers"]):
        headers.add_row(name, value.decode(errors="replace"))
    console.print(headers)
    console.print(Panel(Syntax(payload_text(row["record_value"]), "json", word_wrap=True), title="payload"))


@dead_letters_app.command("redrive")
def redrive(
    service: ServiceArg,
    dead_letter_id: Annotated[str | None, typer.Argument(help="The dead letter's id")] = None,
    everything: Annotated[bool, typer.Option("--all", help="Every waiting dead letter")] = False,
    event_type: TypeOpt = None,
    status: Annotated[
        str, typer.Option("--status", help="With --all: waiting, or redriven (sent, not handled yet)")
    ] = "waiting",
) -> None:
    """Send a dead letter (or all waiting ones, optionally of one type) to its origin topic again: the
    consumer group handles it once more and marks it resolved."""
    if (dead_letter_id is None) == (not everything):
        raise typer.BadParameter("name one dead letter, or --all")
    if (event_type is not None or status != "waiting") and not everything:
        raise typer.BadParameter("--type and --status go with --all")

    async def work(context: ServiceContext, db: Database) -> list[dict[str, Any]]:
        store = context.store(db)
        if dead_letter_id is not None:
            return [await store.redrive(dead_letter_id)]
        return await store.redrive_all(event_type=event_type, status=status)

    rows = _run(service, work)
    for row in rows:
        console.print(f"redriven {row['id']} ({row['event_type']}, event {row['event_id']})", soft_wrap=True)
    console.print(f"[green]{len(rows)} dead letter(s) redriven[/] to their origin topic")


@dead_letters_app.command("purge")
def purge(
    service: ServiceArg,
    dead_letter_id: Annotated[str | None, typer.Argument(help="The dead letter's id")] = None,
    everything: Annotated[bool, typer.Option("--all", help="Every dead letter")] = False,
    status: StatusOpt = None,
) -> None:
    """Delete dead letters: one, those with a status, or all (the Kafka topic keeps its copies)."""
    if sum((dead_letter_id is not None, everything, status is not None)) != 1:
        raise typer.BadParameter("name one dead letter, or --status, or --all")

    async def work(context: ServiceContext, db: Database) -> int:
        return await context.store(db).purge(
            dead_letter_id=dead_letter_id, status=status, everything=everything
        )

    console.print(f"[green]{_run(service, work)} dead letter(s) purged[/]")


@consumer_app.command("lag")
def consumer_lag(service: ServiceArg) -> None:
    """Per partition of the group's topics: its committed offset, the end offset, the lag."""

    async def work(context: ServiceContext, _db: Database) -> tuple[str, list[reprocessing.PartitionLag]]:
        group = context.settings.consumer_group
        bootstrap = context.settings.kafka_bootstrap_servers
        state, members = await reprocessing.group_state(bootstrap, group)
        return f"{state}, {members} member(s)", await reprocessing.lag(bootstrap, group, context.topics)

    state, lags = _run(service, work)
    table = Table(title=f"consumer group of {service} ({state})")
    for column in ("topic", "partition", "committed", "end", "lag"):
        table.add_column(column, justify="left" if column == "topic" else "right")
    for p in lags:
        table.add_row(
            p.topic,
            str(p.partition),
            "-" if p.committed is None else str(p.committed),
            str(p.end),
            str(p.lag),
        )
    table.caption = f"total lag {sum(p.lag for p in lags)}"
    console.print(table)


def _time(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is no ISO 8601 time (e.g. 2026-12-06T21:00:00Z)") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


@consumer_app.command("reprocess")
def reprocess(
    service: ServiceArg,
    from_time: Annotated[
        str | None, typer.Option("--from-time", help="ISO 8601 time (UTC when no offset is given)")
    ] = None,
    from_offset: Annotated[int | None, typer.Option("--from-offset", min=0)] = None,
    topic: Annotated[str | None, typer.Option(help="Only this topic (its full name)")] = None,
    partition: Annotated[int | None, typer.Option(min=0, help="Only this partition (with --topic)")] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do it without asking")] = False,
) -> None:
    """Handle the group's events again from an offset or a time, after a handler fix, each once.

    The service's consumers must be stopped (refused otherwise). Moves the group's offsets there and
    deletes its inbox rows of those records; start the service again and it handles them once."""
    if (from_time is None) == (from_offset is None):
        raise typer.BadParameter("give --from-time or --from-offset")
    since = _time(from_time) if from_time is not None else None

    async def plan(context: ServiceContext, db: Database) -> reprocessing.ReprocessPlan:
        return await reprocessing.plan_reprocess(
            context.settings.kafka_bootstrap_servers,
            db,
            context.inbox,
            group=context.settings.consumer_group,
            topics=context.topics,
            from_offset=from_offset,
            from_time=since,
            topic=topic,
            partition=partition,
        )

    the_plan = _run(service, plan)
    table = Table(title=f"reprocess {the_plan.group}")
    for column in ("topic", "partition", "committed", "new offset", "end", "records again"):
        table.add_column(column, justify="left" if column == "topic" else "right")
    for m in the_plan.moves:
        table.add_row(
            m.topic,
            str(m.partition),
            "-" if m.committed is None else str(m.committed),
            str(m.target),
            str(m.end),
            str(m.end - m.target),
        )
    console.print(table)
    console.print(f"inbox rows to delete: {the_plan.inbox_rows + (the_plan.legacy_rows if since else 0)}")
    for note in the_plan.notes:
        console.print(f"[yellow]note:[/] {note}", soft_wrap=True)
    if not yes and not typer.confirm("Move the offsets and delete these inbox rows?"):
        raise typer.Exit(1)

    async def apply(context: ServiceContext, db: Database) -> int:
        return await reprocessing.apply_reprocess(
            context.settings.kafka_bootstrap_servers, db, context.inbox, the_plan
        )

    deleted = _run(service, apply)
    console.print(
        f"[green]offsets moved, {deleted} inbox row(s) deleted[/]: start {service}'s consumers again",
        soft_wrap=True,
    )

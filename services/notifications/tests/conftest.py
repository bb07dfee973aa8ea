"""Notifications test fixtures: a migrated database of the configured kind, real local receivers, and
dispatchers that are closed after each test.

Test modules cannot import this file (importlib import mode), so everything they share is a fixture.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import col, select

from icep.notifications.app import MIGRATIONS
from icep.notifications.deliveries.dispatcher import WebhookDispatcher
from icep.notifications.deliveries.model import DeliveryStatus
from icep.notifications.deliveries.rows import AttemptRow, DeliveryRow
from icep.notifications.events import notifications_events
from icep.notifications.models import tables
from icep.notifications.settings import NotificationsSettings
from icep.notifications.subscriptions.model import SubscriptionStatus, new_signing_secret
from icep.notifications.subscriptions.rows import SubscriptionRow
from icep.platform import migrations, secrets
from icep.platform.db import Database
from icep.platform.events import utcnow
from icep.platform.ids import new_id
from icep.platform.outbox import UnitOfWorkFactory
from icep.platform.testing import WebhookReceiver


def _aware(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; the service stores UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=utcnow().tzinfo)
    return value


@dataclass
class Store:
    """The service's database, with the rows a test needs written and read directly."""

    url: str
    db: Database
    uow: UnitOfWorkFactory
    extra: list[Database] = field(default_factory=list)

    def another_connection(self) -> Database:
        """A second `Database` on the same database, as another replica (or a restart) would open."""
        db = Database(self.url)
        self.extra.append(db)
        return db

    async def add_subscription(
        self,
        url: str,
        *,
        status: SubscriptionStatus = SubscriptionStatus.ACTIVE,
        nation: str = "DEU",
        event_types: list[str] | None = None,
        secret: str | None = None,
    ) -> SubscriptionRow:
        now = utcnow()
        row = SubscriptionRow(
            id=new_id(),
            owner=f"client-{nation.lower()}",
            nation=nation,
            url=url,
            description="",
            event_types=event_types or ["*"],
            status=status.value,
            secret=secret or new_signing_secret(),
            version=1,
            created_at=now,
            updated_at=now,
        )
        async with self.db.transaction() as session:
            session.add(row)
        return row

    async def add_delivery(
        self,
        sub: SubscriptionRow,
        subject: str,
        *,
        next_attempt_at: datetime | None = None,
        event_type: str = "icep.plans.plan.submitted.v1",
    ) -> DeliveryRow:
        now = utcnow()
        event_id = new_id()
        row = DeliveryRow(
            id=new_id(),
            subscription_id=sub.id,
            event_id=event_id,
            event_type=event_type,
            subject=subject,
            body=f'{{"id":"{event_id}","subject":"{subject}"}}',
            status=DeliveryStatus.PENDING.value,
            next_attempt_at=next_attempt_at or now,
            created_at=now,
        )
        async with self.db.transaction() as session:
            session.add(row)
        return row

    async def add_deliveries(self, rows: list[dict[str, Any]]) -> None:
        """Many deliveries in one statement (columns as in `DeliveryRow`)."""
        async with self.db.transaction() as session:
            await session.execute(sa.insert(DeliveryRow.__table__), rows)  # type: ignore[attr-defined]

    async def delivery(self, delivery_id: str) -> DeliveryRow:
        async with self.db.sessions() as session:
            row = await session.get(DeliveryRow, delivery_id)
        assert row is not None
        row.next_attempt_at = _aware(row.next_attempt_at)
        return row

    async def subscription(self, subscription_id: str) -> SubscriptionRow:
        async with self.db.sessions() as session:
            row = await session.get(SubscriptionRow, subscription_id)
        assert row is not None
        return row

    async def attempts(self, delivery_id: str) -> list[AttemptRow]:
        async with self.db.sessions() as session:
            rows = await session.execute(
                select(AttemptRow)
                .where(col(AttemptRow.delivery_id) == delivery_id)
                .order_by(col(AttemptRow.attempted_at))
            )
            return list(rows.scalars().all())

    async def status_of(self, delivery_id: str) -> str:
        return (await self.delivery(delivery_id)).status

    async def has_status(self, delivery_id: str, status: DeliveryStatus) -> bool:
        """For `wait_for(lambda: store.has_status(...))`."""
        return await self.status_of(delivery_id) == status

    async def outbox(self) -> list[dict[str, Any]]:
        async with self.db.sessions() as session:
            rows = await session.execute(sa.select(tables.outbox).order_by(tables.outbox.c.position))
            return [dict(r) for r in rows.mappings().all()]

    async def set_due_now(self, delivery_id: str) -> None:
        async with self.db.transaction() as session:
            await session.execute(
                sa.update(DeliveryRow.__table__)  # type: ignore[attr-defined]
                .where(DeliveryRow.__table__.c.id == delivery_id)  # type: ignore[attr-defined]
                .values(next_attempt_at=utcnow())
            )


@pytest.fixture(autouse=True)
def secret_box() -> Iterator[secrets.SecretBox]:
    """Signing secrets are sealed at rest: the process's box, as a started service installs it."""
    box = secrets.SecretBox([secrets.new_key()])
    secrets.install(box)
    try:
        yield box
    finally:
        secrets.install(None)


@pytest.fixture
async def store(make_database_url: Callable[[str], str]) -> AsyncIterator[Store]:
    url = make_database_url("notifications")
    await asyncio.to_thread(migrations.upgrade, MIGRATIONS, url)
    db = Database(url)
    found = Store(
        url,
        db,
        UnitOfWorkFactory(
            db, tables.outbox, "notifications", "icep.notifications.events", notifications_events
        ),
    )
    try:
        yield found
    finally:
        for extra in found.extra:
            await extra.dispose()
        await db.dispose()


@pytest.fixture
def receivers() -> Iterator[Callable[[], WebhookReceiver]]:
    """`receivers()` starts another real webhook endpoint on 127.0.0.1; all stop after the test."""
    started: list[WebhookReceiver] = []

    def start() -> WebhookReceiver:
        receiver = WebhookReceiver().start()
        started.append(receiver)
        return receiver

    yield start
    for receiver in started:
        receiver.stop()


@pytest.fixture
def receiver(receivers: Callable[[], WebhookReceiver]) -> WebhookReceiver:
    return receivers()


@dataclass
class BlackHole:
    """An endpoint that accepts connections and never answers: the slowest receiver there is."""

    url: str
    connections: int = 0


@pytest.fixture
async def black_hole() -> AsyncIterator[BlackHole]:
    hole = BlackHole(url="")
    held: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hole.connections += 1
        held.append(writer)
        with contextlib.suppress(Exception):
            while await reader.read(65536):
                pass

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    hole.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/hooks"
    try:
        yield hole
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


def quick_settings(**overrides: Any) -> NotificationsSettings:
    values: dict[str, Any] = {
        "retry_schedule_seconds": [0.05, 0.05],
        "allow_loopback_endpoints": True,
        "dispatch_poll_seconds": 0.05,
        "request_timeout_seconds": 30.0,
        **overrides,
    }
    return NotificationsSettings(**values)


@pytest.fixture
async def dispatchers(store: Store) -> AsyncIterator[Callable[..., WebhookDispatcher]]:
    """`dispatchers(db=None, **settings)` makes a dispatcher on the test database (or another
    connection to it) with a short retry schedule and loopback endpoints allowed; all are closed after
    the test."""
    made: list[WebhookDispatcher] = []

    def make(db: Database | None = None, **overrides: Any) -> WebhookDispatcher:
        db = db or store.db
        uow = UnitOfWorkFactory(
            db, tables.outbox, "notifications", "icep.notifications.events", notifications_events
        )
        dispatcher = WebhookDispatcher(db, uow, quick_settings(**overrides))
        made.append(dispatcher)
        return dispatcher

    yield make
    for dispatcher in made:
        await dispatcher.aclose()


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


@pytest.fixture
async def running(
    dispatchers: Callable[..., WebhookDispatcher],
) -> AsyncIterator[Callable[[WebhookDispatcher], asyncio.Task[None]]]:
    """`running(dispatcher)` runs its loop as a task, stopped (if still running) after the test and
    before the dispatchers are closed."""
    tasks: list[asyncio.Task[None]] = []

    def start(dispatcher: WebhookDispatcher) -> asyncio.Task[None]:
        task = asyncio.create_task(dispatcher.run(), name="webhook-dispatcher")
        tasks.append(task)
        return task

    yield start
    for task in tasks:
        await stop(task)


@pytest.fixture
def stop_task() -> Callable[[asyncio.Task[None]], Any]:
    """`await stop_task(task)`: cancel a dispatcher's loop and wait until it has wound down."""
    return stop

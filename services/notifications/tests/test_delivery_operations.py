"""Delivery against a real database and real receivers on 127.0.0.1: subscriptions that fail too long or
are gone (and the events that say so), connections that dial the checked address, capped answers, and
what subscribers and operators may do with deliveries (list, read, redeliver, replay)."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from prometheus_client import REGISTRY
from sqlmodel import col, select

from icep.notifications.deliveries import use_cases as deliveries
from icep.notifications.deliveries.dispatcher import WebhookDispatcher
from icep.notifications.deliveries.egress import (
    BlockedAddress,
    CheckedAiohttpResolver,
    CheckedResolver,
    webhook_client,
)
from icep.notifications.deliveries.model import DeliveryStatus
from icep.notifications.deliveries.rows import DeliveryRow
from icep.notifications.read_models.fan_out import fan_out as fan_out_event
from icep.notifications.settings import NotificationsSettings
from icep.notifications.subscriptions.model import Subscriber, SubscriptionStatus
from icep.notifications.subscriptions.rows import SubscriptionRow
from icep.platform.errors import IllegalTransition, NotFound
from icep.platform.events import ReceivedEvent, utcnow
from icep.platform.ids import new_id
from icep.platform.testing import WebhookReceiver, wait_for

Dispatchers = Callable[..., WebhookDispatcher]
Running = Callable[[WebhookDispatcher], "asyncio.Task[None]"]

DISABLED = "icep.notifications.subscription.disabled.v1"
FAILED = "icep.notifications.delivery.failed.v1"
#: `store.add_subscription` makes subscriptions owned by `client-<nation>`.
OWNER = Subscriber("client-deu", "DEU", frozenset({"subscriber"}))
STRANGER = Subscriber("client-fra", "FRA", frozenset({"subscriber"}))
OPERATOR = Subscriber("nato-reviewer", "NATO", frozenset({"reviewer", "operator"}))
DEU_OPERATOR = Subscriber("deu-ops", "DEU", frozenset({"operator"}))
SETTINGS = NotificationsSettings(allow_loopback_endpoints=True)


def port_of(receiver: WebhookReceiver) -> int:
    port = urlsplit(receiver.url).port
    assert port is not None
    return port


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def events_of(store: Any, type: str) -> list[dict[str, Any]]:
    return [r for r in await store.outbox() if r["type"] == type]


async def fan_out(store: Any, subject: str, releasable_to: str, **data: Any) -> DeliveryRow:
    """A DEU event released as `releasable_to` (a `releasableto` marking), delivered as the consumer
    delivers it, to the test's one subscription; the delivery it made."""
    event = ReceivedEvent(
        id=new_id(),
        type="icep.plans.plan.submitted.v1",
        source="/icep/plans",
        subject=subject,
        time=utcnow(),
        nation="DEU",
        releasable_to=releasable_to,
        data={"plan_id": subject, **data},
    )
    async with store.db.transaction() as session:
        assert await fan_out_event(session, event) == 1
    async with store.db.sessions() as session:  # written as the transaction commits
        found = await session.execute(select(DeliveryRow).where(col(DeliveryRow.event_id) == event.id))
        row: DeliveryRow = found.scalar_one()
    return row


async def drain(dispatcher: WebhookDispatcher) -> None:
    """Dispatch rounds until nothing is due."""
    for _ in range(100):
        if not await dispatcher.dispatch_once():
            return
    raise AssertionError("deliveries kept coming")


# --- disabling --------------------------------------------------------------------------------------


async def test_gone_disables_the_subscription_and_tells_its_owner(
    store: Any, receiver: WebhookReceiver, dispatchers: Dispatchers
) -> None:
    receiver.script = [410]
    sub = await store.add_subscription(receiver.url, nation="FRA")
    first = await store.add_delivery(sub, "a")
    waiting = await store.add_delivery(sub, "a")
    gone_before = metric("icep_webhook_subscriptions_disabled_total", cause="gone")
    failed_before = metric("icep_webhook_deliveries_total", outcome="failed")

    assert await dispatchers().dispatch_once() == 1

    row = await store.subscription(sub.id)
    assert row.status == SubscriptionStatus.DISABLED
    assert row.disabled_reason == "the endpoint answered 410 Gone"
    assert await store.status_of(first.id) == DeliveryStatus.FAILED
    assert await store.status_of(waiting.id) == DeliveryStatus.FAILED
    [event] = await events_of(store, DISABLED)
    assert event["key"] == sub.id and event["nation"] == "FRA"
    data = json.loads(event["data"])
    assert (data["subscription_id"], data["owner"], data["cause"]) == (sub.id, "client-fra", "gone")
    assert metric("icep_webhook_subscriptions_disabled_total", cause="gone") == gone_before + 1
    assert metric("icep_webhook_deliveries_total", outcome="failed") == failed_before + 2


async def test_a_subscription_failing_for_too_long_is_disabled_and_its_owner_told(
    store: Any, receiver: WebhookReceiver, dispatchers: Dispatchers, running: Running
) -> None:
    receiver.script = [500] * 1000
    sub = await store.add_subscription(receiver.url)
    head = await store.add_delivery(sub, "a")
    behind = await store.add_delivery(sub, "a")
    other = await store.add_delivery(sub, "b")
    before = metric("icep_webhook_subscriptions_disabled_total", cause="failing")
    running(dispatchers(retry_schedule_seconds=[0.1] * 100, disable_after_failing_seconds=0.6))

    async def disabled() -> bool:
        return bool((await store.subscription(sub.id)).status == SubscriptionStatus.DISABLED)

    await wait_for(disabled, timeout=20, what="the failing subscription to be disabled")

    row = await store.subscription(sub.id)
    assert row.disabled_reason and row.disabled_reason.startswith("every attempt failed since")
    assert row.failing_since is None
    for d in (head, behind, other):
        assert await store.status_of(d.id) == DeliveryStatus.FAILED
    [event] = await events_of(store, DISABLED)
    data = json.loads(event["data"])
    assert data["cause"] == "failing" and data["reason"] == row.disabled_reason
    assert await events_of(store, FAILED) == []  # no delivery used up its schedule: the subscription ended
    assert metric("icep_webhook_subscriptions_disabled_total", cause="failing") == before + 1
    # It took at least the allowed time of failures (and several attempts) to get there.
    attempts = [*await store.attempts(head.id), *await store.attempts(other.id)]
    assert len(attempts) >= 3
    span = max(a.attempted_at for a in attempts) - min(a.attempted_at for a in attempts)
    assert span >= timedelta(seconds=0.6)


async def test_one_answer_resets_the_failing_clock(
    store: Any, receiver: WebhookReceiver, dispatchers: Dispatchers
) -> None:
    receiver.script = [500]
    sub = await store.add_subscription(receiver.url)
    delivery = await store.add_delivery(sub, "a")
    dispatcher = dispatchers(retry_schedule_seconds=[3600.0])

    assert await dispatcher.dispatch_once() == 1
    assert (await store.subscription(sub.id)).failing_since is not None
    await store.set_due_now(delivery.id)
    assert await dispatcher.dispatch_once() == 1

    assert await store.status_of(delivery.id) == DeliveryStatus.DELIVERED
    row = await store.subscription(sub.id)
    assert row.failing_since is None and row.status == SubscriptionStatus.ACTIVE


async def test_a_change_to_the_subscription_starts_the_failing_clock_again(
    store: Any, receiver: WebhookReceiver, dispatchers: Dispatchers
) -> None:
    receiver.script = [500, 500]
    sub = await store.add_subscription(receiver.url)
    delivery = await store.add_delivery(sub, "a")
    dispatcher = dispatchers(retry_schedule_seconds=[3600.0] * 3, disable_after_failing_seconds=3600.0)
    assert await dispatcher.dispatch_once() == 1
    first = (await store.subscription(sub.id)).failing_since
    assert first is not None

    # Long ago, as far as the clock is concerned; but the subscription changed since (say, resumed).
    async with store.db.transaction() as session:
        row = await session.get(SubscriptionRow, sub.id)
        assert row is not None
        row.failing_since = utcnow() - timedelta(hours=2)
        row.updated_at = utcnow() - timedelta(minutes=1)
    await store.set_due_now(delivery.id)
    assert await dispatcher.dispatch_once() == 1

    row = await store.subscription(sub.id)
    assert row.status == SubscriptionStatus.ACTIVE
    assert row.failing_since is not None
    assert row.failing_since.replace(tzinfo=None) > utcnow().replace(tzinfo=None) - timedelta(minutes=1)


async def test_running_out_of_retries_counts_a_failed_delivery(
    store: Any, receiver: WebhookReceiver, dispatchers: Dispatchers
) -> None:
    receiver.script = [500, 500]
    sub = await store.add_subscription(receiver.url)
    first = await store.add_delivery(sub, "a")
    second = await store.add_delivery(sub, "b")
    failed_before = metric("icep_webhook_deliveries_total", outcome="failed")
    delivered_before = metric("icep_webhook_deliveries_total", outcome="delivered")

    # No retries at all: the first failed attempt of each is its last.
    assert await dispatchers(retry_schedule_seconds=[]).dispatch_once() == 2

    assert await store.status_of(first.id) == DeliveryStatus.FAILED
    assert await store.status_of(second.id) == DeliveryStatus.FAILED
    assert len(await events_of(store, FAILED)) == 2
    assert metric("icep_webhook_deliveries_total", outcome="failed") == failed_before + 2
    assert metric("icep_webhook_deliveries_total", outcome="delivered") == delivered_before


# --- where connections go ---------------------------------------------------------------------------


async def test_a_name_pointing_at_loopback_is_refused_when_connecting(
    store: Any, receiver: WebhookReceiver, dispatchers: Dispatchers
) -> None:
    # The URL passes validation (a host name, https); only its address gives it away.
    sub = await store.add_subscription(f"https://partner.test:{port_of(receiver)}/hooks")
    delivery = await store.add_delivery(sub, "a")
    dispatcher = dispatchers(
        allow_loopback_endpoints=False,
        static_hosts={"partner.test": "127.0.0.1"},
        retry_schedule_seconds=[3600.0],
    )

    assert await dispatcher.dispatch_once() == 1

    [attempt] = await store.attempts(delivery.id)
    assert attempt.status_code is None and attempt.error
    assert "partner.test resolves to 127.0.0.1, which is not a public address" in attempt.error
    assert receiver.received() == []
    assert await store.status_of(delivery.id) == DeliveryStatus.PENDING


async def test_a_static_host_is_dialled_by_its_address_and_called_by_its_name(
    store: Any, receiver: WebhookReceiver, dispatchers: Dispatchers
) -> None:
    port = port_of(receiver)
    sub = await store.add_subscription(f"http://partner.test:{port}/hooks")
    delivery = await store.add_delivery(sub, "a")

    assert await dispatchers(static_hosts={"partner.test": "127.0.0.1"}).dispatch_once() == 1

    assert await store.status_of(delivery.id) == DeliveryStatus.DELIVERED
    [request] = receiver.received()
    assert request.headers["host"] == f"partner.test:{port}"


async def dialled(resolver: CheckedResolver, host: str, port: int) -> list[tuple[str, int]]:
    """What the webhook client would dial for `host`: the addresses its resolver answers with."""
    return [(r["host"], r["port"]) for r in await CheckedAiohttpResolver(resolver).resolve(host, port)]


def fake_dns(monkeypatch: pytest.MonkeyPatch, *answers: list[str]) -> list[str]:
    """The event loop's resolver answers with `answers[0]`, then `answers[1]`, ... (a rebinding name)."""
    asked: list[str] = []
    loop = asyncio.get_running_loop()

    async def getaddrinfo(host: str, port: int, **_: Any) -> list[Any]:
        asked.append(host)
        found = answers[min(len(asked), len(answers)) - 1]
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in found]

    monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)
    return asked


async def test_a_rebinding_name_is_dialled_at_the_address_that_was_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked = fake_dns(monkeypatch, ["93.184.215.14"], ["10.0.0.7"])
    resolver = CheckedResolver(allow_loopback=False)

    # One look-up, and the connection goes to its (public) answer, not to the name.
    assert await dialled(resolver, "rebind.example", 443) == [("93.184.215.14", 443)]
    assert asked == ["rebind.example"]

    # The next connection looks up again, gets the private answer, and is refused before dialling.
    with pytest.raises(BlockedAddress, match=r"10\.0\.0\.7"):
        await dialled(resolver, "rebind.example", 443)
    assert asked == ["rebind.example", "rebind.example"]


async def test_one_private_address_among_public_ones_refuses_the_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake_dns(monkeypatch, ["93.184.215.14", "169.254.169.254"])
    with pytest.raises(BlockedAddress, match=r"169\.254\.169\.254"):
        await dialled(CheckedResolver(allow_loopback=False), "mixed.example", 443)


async def test_the_client_refuses_a_blocked_answer_and_dials_the_next_checked_address(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A real client and a real receiver on 127.0.0.1; the name answers 127.0.0.2 first, where nothing
    # listens: the client goes on to the next address of the same checked answer.
    heard: list[bytes] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heard.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    asked = fake_dns(monkeypatch, ["127.0.0.2", "127.0.0.1"], ["10.0.0.7"])
    client = webhook_client(allow_loopback=True, static_hosts={}, max_connections=2)
    try:
        async with client.post(f"http://two.example:{port}/hooks", data=b"{}") as r:
            assert r.status == 204
        assert asked == ["two.example"] and len(heard) == 1
        assert b"host: two.example" in heard[0].lower()
        # A new connection asks again; a private answer is refused by the client, before any dialling.
        with pytest.raises(BlockedAddress, match=r"10\.0\.0\.7"):
            async with client.post(f"http://two.example:{port + 1}/hooks", data=b"{}"):
                pass
        assert len(heard) == 1
    finally:
        await client.close()
        server.close()
        await server.wait_closed()


async def test_hosts_the_client_dials_as_addresses_are_checked_too() -> None:
    # aiohttp dials `127.1` or `2130706433` as addresses, without asking the resolver: checked all the same.
    client = webhook_client(allow_loopback=False, static_hosts={}, max_connections=2)
    try:
        for url in ("http://127.1:9/hooks", "http://2130706433:9/hooks", "http://[::ffff:127.0.0.1]:9/hooks"):
            with pytest.raises(BlockedAddress):
                async with client.post(url, data=b"{}"):
                    pass
    finally:
        await client.close()


async def test_a_name_that_does_not_resolve_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    loop = asyncio.get_running_loop()

    async def getaddrinfo(host: str, port: int, **_: Any) -> list[Any]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)
    client = webhook_client(allow_loopback=False, static_hosts={}, max_connections=2)
    try:
        with pytest.raises(OSError, match=r"cannot resolve nowhere\.example: .*not known"):
            async with client.post("https://nowhere.example/hooks", data=b"{}"):
                pass
    finally:
        await client.close()


def _certificate_for(name: str, directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate (and its key) for `name`, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


async def test_tls_goes_to_the_checked_address_with_the_host_name_for_sni_and_the_certificate(
    tmp_path: Path,
) -> None:
    cert, key = _certificate_for("partner.test", tmp_path)
    server_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_side.load_cert_chain(cert, key)
    asked_for: list[str | None] = []
    server_side.sni_callback = lambda _sock, name, _ctx: asked_for.append(name)  # type: ignore[assignment,misc]
    hosts: list[str] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        hosts.extend(h.split(":", 1)[1].strip() for h in head.split("\r\n") if h.lower().startswith("host:"))
        writer.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=server_side)
    port = server.sockets[0].getsockname()[1]
    client_side = ssl.create_default_context(cafile=str(cert))
    client = webhook_client(
        allow_loopback=True,
        static_hosts={"partner.test": "127.0.0.1"},
        max_connections=2,
        ssl_context=client_side,
    )
    try:
        async with client.post(f"https://partner.test:{port}/hooks", data=b"{}") as r:
            assert r.status == 204
        # Dialled 127.0.0.1, yet TLS asked for (and verified the certificate of) the host name.
        assert asked_for == ["partner.test"] and hosts == [f"partner.test:{port}"]
    finally:
        await client.close()
        server.close()
        await server.wait_closed()


async def test_static_hosts_are_checked_like_dns_answers() -> None:
    resolver = CheckedResolver(allow_loopback=False, static_hosts={"Partner.Test.": "10.1.2.3"})
    with pytest.raises(BlockedAddress):
        await resolver.addresses("partner.test", 443)
    allowed = CheckedResolver(allow_loopback=True, static_hosts={"partner.test": "127.0.0.1"})
    assert await allowed.addresses("PARTNER.test.", 443) == ["127.0.0.1"]


async def test_only_the_start_of_an_answer_is_read_and_kept(
    store: Any, receiver: WebhookReceiver, dispatchers: Dispatchers
) -> None:
    receiver.script = [200]
    receiver.response_body = b"x" * 1_000_000
    sub = await store.add_subscription(receiver.url)
    delivery = await store.add_delivery(sub, "a")

    assert await dispatchers(max_response_bytes=1000).dispatch_once() == 1

    assert await store.status_of(delivery.id) == DeliveryStatus.DELIVERED
    [attempt] = await store.attempts(delivery.id)
    assert attempt.status_code == 200 and attempt.response_body == "x" * 1000


# --- seeing deliveries ------------------------------------------------------------------------------


async def test_deliveries_are_listed_by_status_page_by_page(
    store: Any, receiver: WebhookReceiver, dispatchers: Dispatchers
) -> None:
    sub = await store.add_subscription(receiver.url)
    sent = [await store.add_delivery(sub, f"s{n}") for n in range(3)]
    await drain(dispatchers())
    later = utcnow() + timedelta(hours=1)
    waiting = [await store.add_delivery(sub, f"w{n}", next_attempt_at=later) for n in range(2)]

    page, cursor = await deliveries.delivery_page(store.db, OWNER, sub.id, 2, status=DeliveryStatus.DELIVERED)
    assert [d.id for d, _ in page] == [sent[2].id, sent[1].id] and cursor == sent[1].id
    assert all(len(attempts) == 1 for _, attempts in page)
    page, cursor = await deliveries.delivery_page(
        store.db, OWNER, sub.id, 2, status=DeliveryStatus.DELIVERED, after=cursor
    )
    assert [d.id for d, _ in page] == [sent[0].id] and cursor is None
    page, cursor = await deliveries.delivery_page(store.db, OWNER, sub.id, 10, status=DeliveryStatus.PENDING)
    assert [d.id for d, _ in page] == [waiting[1].id, waiting[0].id] and cursor is None
    everything, _ = await deliveries.delivery_page(store.db, DEU_OPERATOR, sub.id, 10)
    assert len(everything) == 5
    # These bodies do not say to whom their events are released: to no other nation, then.
    assert await deliveries.delivery_page(store.db, OPERATOR, sub.id, 10) == ([], None)

    with pytest.raises(NotFound):
        await deliveries.delivery_page(store.db, STRANGER, sub.id, 10)
    delivery, attempts = await deliveries.get_delivery(store.db, DEU_OPERATOR, sub.id, sent[0].id)
    assert delivery.status == DeliveryStatus.DELIVERED and [a.status_code for a in attempts] == [204]
    with pytest.raises(NotFound):
        await deliveries.get_delivery(store.db, STRANGER, sub.id, sent[0].id)
    other = await store.add_subscription(receiver.url)
    with pytest.raises(NotFound):
        await deliveries.get_delivery(store.db, OWNER, other.id, sent[0].id)


# --- acting on them ---------------------------------------------------------------------------------


async def test_redelivery_is_one_attempt_now_even_after_failing_for_good(
    store: Any, receiver: WebhookReceiver, dispatchers: Dispatchers
) -> None:
    receiver.script = [500, 503]
    sub = await store.add_subscription(receiver.url)
    delivery = await fan_out(store, "a", "DEU,NATO")  # released to NATO: its operators act on it too
    dispatcher = dispatchers(retry_schedule_seconds=[])
    assert await dispatcher.dispatch_once() == 1
    assert await store.status_of(delivery.id) == DeliveryStatus.FAILED
    assert len(await events_of(store, FAILED)) == 1

    with pytest.raises(NotFound):
        await deliveries.redeliver(store.uow, STRANGER, sub.id, delivery.id)
    asked, attempts = await deliveries.redeliver(store.uow, OWNER, sub.id, delivery.id)
    assert asked.status == DeliveryStatus.PENDING and asked.redelivery_requested_at is not None
    assert [a.status_code for a in attempts] == [500]

    # It fails again (503): failed at once, not retried by the schedule, not announced again.
    assert await dispatcher.dispatch_once() == 1
    row = await store.delivery(delivery.id)
    assert (row.status, row.attempts, row.redelivery_requested_at) == (DeliveryStatus.FAILED, 2, None)
    assert len(await events_of(store, FAILED)) == 1

    # An operator asks once more, and the receiver is back.
    await deliveries.redeliver(store.uow, OPERATOR, sub.id, delivery.id)
    assert await dispatcher.dispatch_once() == 1
    row = await store.delivery(delivery.id)
    assert (row.status, row.attempts) == (DeliveryStatus.DELIVERED, 3)

    # A delivered one may be sent again too (the receiver lost it).
    await deliveries.redeliver(store.uow, OWNER, sub.id, delivery.id)
    assert await dispatcher.dispatch_once() == 1
    assert (await store.delivery(delivery.id)).attempts == 4
    assert [r.headers["webhook-id"] for r in receiver.received()] == [delivery.event_id] * 4


async def test_redelivering_a_pending_delivery_sends_it_now_and_keeps_its_schedule(
    store: Any, receiver: WebhookReceiver, dispatchers: Dispatchers
) -> None:
    receiver.script = [500, 500]
    sub = await store.add_subscription(receiver.url)
    delivery = await store.add_delivery(sub, "a")
    dispatcher = dispatchers(retry_schedule_seconds=[3600.0, 3600.0])
    assert await dispatcher.dispatch_once() == 1
    assert await dispatcher.dispatch_once() == 0  # its retry is an hour away

    await deliveries.redeliver(store.uow, OWNER, sub.id, delivery.id)
    assert await dispatcher.dispatch_once() == 1
    row = await store.delivery(delivery.id)
    # Still on its schedule: the second failure waits for the second retry.
    assert (row.status, row.attempts) == (DeliveryStatus.PENDING, 2)
    assert row.next_attempt_at is not None and row.next_attempt_at > utcnow() + timedelta(minutes=50)


async def test_nothing_is_redelivered_or_replayed_to_a_disabled_subscription(
    store: Any, receiver: WebhookReceiver
) -> None:
    sub = await store.add_subscription(receiver.url, status=SubscriptionStatus.DISABLED)
    delivery = await store.add_delivery(sub, "a")
    with pytest.raises(IllegalTransition, match="disabled"):
        await deliveries.redeliver(store.uow, OWNER, sub.id, delivery.id)
    with pytest.raises(IllegalTransition, match="disabled"):
        await deliveries.replay(store.uow, SETTINGS, OWNER, sub.id, utcnow() - timedelta(days=1))


async def test_replay_delivers_every_event_since_again_with_its_id_and_in_order(
    store: Any, receiver: WebhookReceiver, dispatchers: Dispatchers
) -> None:
    sub = await store.add_subscription(receiver.url)
    before = await store.add_delivery(sub, "a")
    await wait_for(lambda: utcnow() > before.created_at, what="the clock to move on")
    since = utcnow()
    since_then = [await store.add_delivery(sub, subject) for subject in ("a", "b", "a", "b", "a")]
    dispatcher = dispatchers()
    await drain(dispatcher)
    assert len(receiver.received()) == 6

    with pytest.raises(NotFound):
        await deliveries.replay(store.uow, SETTINGS, STRANGER, sub.id, since)
    done = await deliveries.replay(store.uow, SETTINGS, OWNER, sub.id, since)
    assert (done.replayed, done.next_since) == (5, None)
    await drain(dispatcher)

    replayed = receiver.received()[6:]
    assert sorted(r.headers["webhook-id"] for r in replayed) == sorted(d.event_id for d in since_then)
    for subject in ("a", "b"):  # each aggregate in its order again
        wanted = [d.event_id for d in since_then if d.subject == subject]
        assert [r.headers["webhook-id"] for r in replayed if r.json()["subject"] == subject] == wanted
    page, _ = await deliveries.delivery_page(store.db, OWNER, sub.id, 50)
    replays = [d for d, _ in page if d.generation == 1]
    assert sorted(d.replay_of or "" for d in replays) == sorted(d.id for d in since_then)
    assert all(d.status == DeliveryStatus.DELIVERED for d in replays)

    # Again, by an operator of DEU, with room for two events only: the first two, and where to go on from.
    small = NotificationsSettings(allow_loopback_endpoints=True, max_replay_events=2)
    done = await deliveries.replay(store.uow, small, DEU_OPERATOR, sub.id, since)
    assert done.replayed == 2 and done.next_since is not None
    assert abs(done.next_since - since_then[2].created_at) < timedelta(milliseconds=1)
    page, _ = await deliveries.delivery_page(store.db, OWNER, sub.id, 50, status=DeliveryStatus.PENDING)
    assert sorted((d.replay_of, d.generation) for d, _ in page) == sorted((d.id, 2) for d in since_then[:2])


# --- what operators of another nation see: the deliveries of events released to theirs ---------------

#: (marking, released to NATO): as the feed decides it. The decoys say NATO in their data, not their marking.
MARKINGS = (
    ("DEU,NATO", True),
    ("DEU", False),
    ("ALLIES", True),
    ("DEU,FRA", False),
    ("ALLIES,UKR", True),
    ("DEU,POL,NATO", True),
)
DECOYS = ({"nation": "NATO", "releasableto": "NATO"}, {"note": "x,NATO", "releasableto": "x,NATO,y"})


async def deliveries_of_every_marking(store: Any, sub: SubscriptionRow) -> tuple[list[str], list[str]]:
    """Deliveries of events of every marking, then runs of hidden ones longer than a page (decoys among
    them), then more: (every delivery id, the ids of those released to NATO), oldest first."""
    made: list[tuple[str, bool]] = []
    for n, (marking, released) in enumerate(MARKINGS):
        made.append(((await fan_out(store, f"p{n}", marking)).id, released))
    for n in range(7):
        hidden = await fan_out(store, f"h{n}", "DEU", **DECOYS[n % 2]) if n % 3 else None
        made.append(((hidden or await fan_out(store, f"h{n}", "DEU,FRA")).id, False))
    made.append(((await fan_out(store, "last", "DEU,NATO")).id, True))
    made.append(((await fan_out(store, "hidden-last", "DEU")).id, False))
    return [d for d, _ in made], [d for d, released in made if released]


async def all_pages(store: Any, who: Subscriber, sub_id: str, limit: int, **kw: Any) -> list[str]:
    seen: list[str] = []
    cursor: str | None = None
    while True:
        page, cursor = await deliveries.delivery_page(store.db, who, sub_id, limit, after=cursor, **kw)
        assert len(page) == limit or cursor is None  # never a short page while more follow
        seen += [d.id for d, _ in page]
        if cursor is None:
            return seen


async def test_an_operator_of_another_nation_sees_and_acts_only_on_deliveries_released_to_it(
    store: Any, receiver: WebhookReceiver, dispatchers: Dispatchers
) -> None:
    sub = await store.add_subscription(receiver.url)
    everything, released = await deliveries_of_every_marking(store, sub)
    newest_first = list(reversed(released))

    # The subscription's nation sees every delivery; NATO's operator those of events released to NATO.
    for who in (OWNER, DEU_OPERATOR):
        assert await all_pages(store, who, sub.id, 3) == list(reversed(everything))
    for limit in (1, 2, 3, 50):
        assert await all_pages(store, OPERATOR, sub.id, limit) == newest_first, limit
    assert await all_pages(store, OPERATOR, sub.id, 2, status=DeliveryStatus.PENDING) == newest_first
    assert await all_pages(store, OPERATOR, sub.id, 2, status=DeliveryStatus.DELIVERED) == []

    # SQL narrows (the decoys pass it, the plainly hidden do not); Python decides.
    async with store.db.sessions() as session:
        query = select(col(DeliveryRow.id)).where(deliveries._released_in_sql("NATO"))
        narrowed = set((await session.execute(query)).scalars().all())
    assert set(released) < narrowed < set(everything)

    # One by one: what is not released to NATO is as missing as a delivery that never was.
    for delivery_id in everything:
        if delivery_id in released:
            row, _ = await deliveries.get_delivery(store.db, OPERATOR, sub.id, delivery_id)
            assert row.id == delivery_id
        else:
            with pytest.raises(NotFound, match=f"no delivery {delivery_id} of subscription {sub.id}"):
                await deliveries.get_delivery(store.db, OPERATOR, sub.id, delivery_id)
            row, _ = await deliveries.get_delivery(store.db, OWNER, sub.id, delivery_id)
            assert row.id == delivery_id

    # Redelivered: one released to NATO by its operator; one that is not, only by DEU.
    await drain(dispatchers())
    assert await all_pages(store, OPERATOR, sub.id, 2, status=DeliveryStatus.PENDING) == []
    hidden = everything[1]
    with pytest.raises(NotFound):
        await deliveries.redeliver(store.uow, OPERATOR, sub.id, hidden)
    assert (await store.delivery(hidden)).status == DeliveryStatus.DELIVERED
    asked, _ = await deliveries.redeliver(store.uow, OPERATOR, sub.id, released[0])
    assert asked.status == DeliveryStatus.PENDING
    asked, _ = await deliveries.redeliver(store.uow, OWNER, sub.id, hidden)
    assert asked.status == DeliveryStatus.PENDING
    pending = await all_pages(store, OWNER, sub.id, 5, status=DeliveryStatus.PENDING)
    assert sorted(pending) == sorted([released[0], hidden])
    assert await all_pages(store, OPERATOR, sub.id, 5, status=DeliveryStatus.PENDING) == [released[0]]


async def test_an_operator_of_another_nation_replays_only_events_released_to_it(
    store: Any, receiver: WebhookReceiver
) -> None:
    sub = await store.add_subscription(receiver.url)
    since = utcnow()
    everything, released = await deliveries_of_every_marking(store, sub)
    originals = {d: await store.delivery(d) for d in everything}

    async def replayed() -> list[tuple[str | None, int]]:
        page, _ = await deliveries.delivery_page(store.db, OWNER, sub.id, 200, status=DeliveryStatus.PENDING)
        return sorted((d.replay_of, d.generation) for d, _ in page if d.generation > 0)

    # With room for two events a time: the first two released to NATO, then from the third on.
    small = NotificationsSettings(allow_loopback_endpoints=True, max_replay_events=2)
    done = await deliveries.replay(store.uow, small, OPERATOR, sub.id, since)
    assert done.replayed == 2 and done.next_since is not None
    assert abs(done.next_since - originals[released[2]].created_at.replace(tzinfo=UTC)) < timedelta(
        milliseconds=1
    )
    assert await replayed() == sorted((d, 1) for d in released[:2])

    done = await deliveries.replay(store.uow, SETTINGS, OPERATOR, sub.id, since)
    assert (done.replayed, done.next_since) == (len(released), None)
    assert await replayed() == sorted([*((d, 1) for d in released), *((d, 2) for d in released[:2])])
    # NATO's operator sees the replays (and the originals released to NATO), none of the others.
    shown = await all_pages(store, OPERATOR, sub.id, 4, status=DeliveryStatus.PENDING)
    owners = await all_pages(store, OWNER, sub.id, 4, status=DeliveryStatus.PENDING)
    assert len(owners) == len(everything) + len(released) + 2
    assert shown == [d for d in owners if d not in everything or d in released]
    # The subscription's own nation replays everything.
    done = await deliveries.replay(store.uow, SETTINGS, OWNER, sub.id, since)
    assert done.replayed == len(everything)


def test_a_delivery_that_does_not_say_to_whom_its_event_is_released_is_released_to_no_one_else() -> None:
    def delivery(body: str) -> DeliveryRow:
        return DeliveryRow(
            id="d",
            subscription_id="s",
            event_id="e",
            event_type="t",
            subject="x",
            body=body,
            status="pending",
            created_at=utcnow(),
        )

    assert deliveries._released_to("NATO", delivery('{"nation":"DEU","releasableto":"ALLIES"}'))
    assert not deliveries._released_to("UKR", delivery('{"nation":"DEU","releasableto":"ALLIES"}'))
    assert deliveries._released_to("UKR", delivery('{"nation":"DEU","releasableto":"ALLIES,UKR"}'))
    for body in (
        '{"id":"e","subject":"x"}',
        '{"nation":"DEU","releasableto":null}',
        '{"nation":"XXX","releasableto":"NATO"}',
        '["NATO"]',
        "not json",
        '{"nation":"DEU","data":{"releasableto":"NATO"}}',
    ):
        assert not deliveries._released_to("NATO", delivery(body)), body


def test_operators_act_on_their_own_nations_subscriptions_or_all_as_nato() -> None:
    sub = SubscriptionRow(
        id="s1",
        owner="deu-subscriber",
        nation="DEU",
        url="https://partner.example/hooks",
        status="active",
        secret="whsec_x",
        version=1,
        created_at=utcnow(),
        updated_at=utcnow(),
    )
    assert deliveries._may_see_all(Subscriber("deu-ops", "DEU", frozenset({"operator"})), sub)
    assert deliveries._may_see_all(Subscriber("nato-ops", "NATO", frozenset({"operator"})), sub)
    assert not deliveries._may_see_all(Subscriber("fra-ops", "FRA", frozenset({"operator"})), sub)
    assert not deliveries._may_see_all(Subscriber("deu-sub", "DEU", frozenset({"subscriber"})), sub)
    # ... and of another nation's, only on deliveries of events released to their own.
    assert deliveries._released_only(Subscriber("deu-ops", "DEU", frozenset({"operator"})), sub) is None
    assert deliveries._released_only(Subscriber("nato-ops", "NATO", frozenset({"operator"})), sub) == "NATO"

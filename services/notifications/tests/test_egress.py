"""The allow-list of webhook hosts (`allowed_hosts`): which hosts it lets through (names, suffix patterns,
IP addresses, the static hosts; without case and trailing dot), refused when subscribing and, before any
DNS look-up, when connecting, with the dispatcher and ping on a real database and real receivers."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import pytest
from pydantic import ValidationError

from icep.notifications.deliveries.dispatcher import WebhookDispatcher
from icep.notifications.deliveries.egress import (
    AllowedHosts,
    BlockedAddress,
    CheckedAiohttpResolver,
    CheckedResolver,
)
from icep.notifications.deliveries.model import DeliveryStatus
from icep.notifications.settings import NotificationsSettings
from icep.notifications.subscriptions import use_cases as subscriptions
from icep.notifications.subscriptions.model import Subscriber
from icep.platform.errors import Unprocessable
from icep.platform.testing import WebhookReceiver

Dispatchers = Callable[..., WebhookDispatcher]

DEU = Subscriber("deu-subscriber", "DEU", frozenset({"subscriber"}))


def port_of(receiver: WebhookReceiver) -> int:
    port = urlsplit(receiver.url).port
    assert port is not None
    return port


async def dialled(resolver: CheckedResolver, host: str, port: int) -> list[tuple[str, int]]:
    """What the webhook client would dial for `host`: the addresses its resolver answers with."""
    return [(r["host"], r["port"]) for r in await CheckedAiohttpResolver(resolver).resolve(host, port)]


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def dns(monkeypatch: pytest.MonkeyPatch, answers: dict[str, list[str]] | None = None) -> list[str]:
    """The event loop's resolver (where `CheckedResolver` asks) records every question and answers from
    `answers`; any other name does not resolve, so no test ever asks the real DNS."""
    asked: list[str] = []
    loop = asyncio.get_running_loop()

    async def getaddrinfo(host: str, port: int, **_: Any) -> list[Any]:
        asked.append(host)
        if _is_address(host):  # an IP address answers itself, as the system's resolver does
            found = [host]
        elif (name := host.rstrip(".").lower()) in (answers or {}):
            found = (answers or {})[name]
        else:
            raise socket.gaierror(socket.EAI_NONAME, "not known in this test")
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in found
        ]

    monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)
    return asked


# --- what the list allows ---------------------------------------------------------------------------


def test_without_a_list_every_host_is_allowed() -> None:
    anything = AllowedHosts.of(None, ["partner.test"])
    assert not anything.restricted
    assert all(anything.allows(h) for h in ("hooks.partner.example", "93.184.215.14", "elsewhere.example"))
    assert NotificationsSettings().egress_allowed() == AllowedHosts()


def test_names_are_compared_without_case_or_trailing_dot() -> None:
    allowed = AllowedHosts.of(["Hooks.Partner.Example."])
    for host in ("hooks.partner.example", "HOOKS.partner.EXAMPLE", "hooks.partner.example."):
        assert allowed.allows(host), host
    for host in ("partner.example", "x.hooks.partner.example", "hooks.partner.example.evil.example"):
        assert not allowed.allows(host), host


def test_a_suffix_pattern_allows_the_names_under_a_domain_but_not_the_domain() -> None:
    allowed = AllowedHosts.of(["*.mod.example"])
    for host in ("hooks.mod.example", "a.b.MOD.example.", "x-1.mod.example"):
        assert allowed.allows(host), host
    for host in ("mod.example", "evilmod.example", "mod.example.evil.example", "hooks.mod.example.org"):
        assert not allowed.allows(host), host


def test_an_ip_address_is_allowed_only_when_listed() -> None:
    allowed = AllowedHosts.of(["93.184.215.14", "2001:DB8::0:1", "hooks.partner.example"])
    assert allowed.allows("93.184.215.14") and allowed.allows("[2001:db8::1]")
    # The IPv4 address a dual-stack socket reaches from an IPv4-mapped one.
    assert allowed.allows("::ffff:93.184.215.14")
    assert not allowed.allows("93.184.215.15") and not allowed.allows("2001:db8::2")
    # A suffix pattern never covers an address.
    assert not AllowedHosts.of(["*.184.215.14.in-addr.example"]).allows("93.184.215.14")


def test_the_static_hosts_are_allowed_and_an_empty_list_allows_only_them() -> None:
    settings = NotificationsSettings(allowed_hosts=[], static_hosts={"Partner.Test.": "127.0.0.1"})
    allowed = settings.egress_allowed()
    assert allowed.restricted
    assert allowed.allows("partner.test") and allowed.allows("PARTNER.TEST.")
    assert not allowed.allows("127.0.0.1") and not allowed.allows("partner.example")


def test_internationalised_names_are_compared_as_they_are_dialled() -> None:
    allowed = AllowedHosts.of(["bücher.example"])
    assert allowed.allows("xn--bcher-kva.example") and allowed.allows("BÜCHER.example")


@pytest.mark.parametrize(
    "pattern",
    [
        "",
        "*",
        "*.",
        "hooks.*.example",
        "https://hooks.example/",
        "a b.example",
        "*.10.0.0.1",
        "*.215.14",
        "-x.example",
    ],
)
def test_a_pattern_that_is_none_of_these_is_refused_when_starting(pattern: str) -> None:
    with pytest.raises(ValidationError, match="allowed_hosts"):
        NotificationsSettings(allowed_hosts=["hooks.partner.example", pattern])


def test_the_setting_is_read_from_the_environment_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ICEP_NOTIFICATIONS_ALLOWED_HOSTS", '["*.mod.example", "10.20.30.40"]')
    assert NotificationsSettings().allowed_hosts == ["*.mod.example", "10.20.30.40"]
    monkeypatch.setenv("ICEP_NOTIFICATIONS_ALLOWED_HOSTS", "[]")
    assert NotificationsSettings().egress_allowed().restricted


# --- refused when subscribing -------------------------------------------------------------------------


async def test_subscribing_to_a_host_that_is_not_allowed_is_unprocessable(
    store: Any, receiver: WebhookReceiver
) -> None:
    settings = NotificationsSettings(
        allow_loopback_endpoints=True,
        allowed_hosts=["*.mod.example", "127.0.0.1"],
        static_hosts={"partner.test": "127.0.0.1"},
    )

    async def subscribe(url: str) -> Any:
        new = subscriptions.NewSubscription(url=url, description="test", event_types=["*"])
        return await subscriptions.create_subscription(store.uow, settings, DEU, new)

    for refused in (
        "https://partner.example/icep/webhooks",
        "https://mod.example/hooks",
        "https://93.184.215.14/hooks",
        "http://[::1]:8080/hooks",  # loopback is allowed here, but ::1 is not listed
    ):
        with pytest.raises(Unprocessable, match="allowed webhook hosts") as caught:
            await subscribe(refused)
        assert caught.value.extensions == {"field": "url"}, refused

    for accepted in (
        "https://hooks.MOD.example./icep",
        f"http://partner.test:{port_of(receiver)}/hooks",  # a static host
        receiver.url,  # a listed address
    ):
        assert (await subscribe(accepted)).url == accepted

    sub = await subscribe(receiver.url)
    with pytest.raises(Unprocessable, match="allowed webhook hosts"):
        await subscriptions.update_subscription(
            store.uow,
            settings,
            DEU,
            sub.id,
            sub.version,
            subscriptions.SubscriptionChanges(url="https://elsewhere.example/"),
        )
    moved = await subscriptions.update_subscription(
        store.uow,
        settings,
        DEU,
        sub.id,
        sub.version,
        subscriptions.SubscriptionChanges(url="https://a.mod.example/"),
    )
    assert moved.url == "https://a.mod.example/"


# --- refused when connecting --------------------------------------------------------------------------


async def test_a_host_that_is_not_allowed_is_refused_without_a_look_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked = dns(monkeypatch, {"hooks.mod.example": ["93.184.215.14"], "elsewhere.example": ["93.184.215.15"]})
    allowed = AllowedHosts.of(["*.mod.example", "93.184.215.20"], ["partner.test"])
    resolver = CheckedResolver(
        allow_loopback=True, static_hosts={"partner.test": "127.0.0.1"}, allowed=allowed
    )

    for refused in ("elsewhere.example", "mod.example", "93.184.215.15", "127.0.0.1", "::1"):
        with pytest.raises(BlockedAddress, match="not on the list of allowed webhook hosts"):
            await dialled(resolver, refused, 443)
    # Not one question to the resolver, so not one connection.
    assert asked == []

    assert await dialled(resolver, "HOOKS.mod.example.", 443) == [
        ("93.184.215.14", 443)
    ]  # compared canonically
    assert await dialled(resolver, "Partner.Test", 8443) == [("127.0.0.1", 8443)]  # a static host: no look-up
    assert await dialled(resolver, "93.184.215.20", 443) == [("93.184.215.20", 443)]
    assert asked == ["HOOKS.mod.example.", "93.184.215.20"]


async def test_an_allowed_host_still_needs_an_allowed_address(monkeypatch: pytest.MonkeyPatch) -> None:
    dns(monkeypatch, {"hooks.mod.example": ["10.0.0.7"]})
    resolver = CheckedResolver(allow_loopback=False, allowed=AllowedHosts.of(["*.mod.example"]))
    with pytest.raises(BlockedAddress, match=r"10\.0\.0\.7, which is not a public address"):
        await dialled(resolver, "hooks.mod.example", 443)


async def test_the_dispatcher_refuses_a_stored_endpoint_that_is_no_longer_allowed(
    monkeypatch: pytest.MonkeyPatch, store: Any, receiver: WebhookReceiver, dispatchers: Dispatchers
) -> None:
    # Rows written before the list was set (or tightened): refused where the connection is made.
    asked = dns(monkeypatch)
    by_address = await store.add_subscription(receiver.url)
    by_name = await store.add_subscription(f"http://localhost:{port_of(receiver)}/hooks")
    allowed = await store.add_subscription(f"http://partner.test:{port_of(receiver)}/hooks")
    refused = [await store.add_delivery(by_address, "a"), await store.add_delivery(by_name, "b")]
    delivered = await store.add_delivery(allowed, "c")
    dispatcher = dispatchers(
        allowed_hosts=[], static_hosts={"partner.test": "127.0.0.1"}, retry_schedule_seconds=[3600.0]
    )

    assert await dispatcher.dispatch_once() == 3

    for delivery in refused:
        [attempt] = await store.attempts(delivery.id)
        assert attempt.status_code is None
        assert "refused:" in (attempt.error or "") and "not on the list of allowed webhook hosts" in (
            attempt.error or ""
        )
        assert await store.status_of(delivery.id) == DeliveryStatus.PENDING
    assert await store.status_of(delivered.id) == DeliveryStatus.DELIVERED
    [request] = receiver.received()
    assert request.headers["host"] == f"partner.test:{port_of(receiver)}"
    assert asked == []


async def test_ping_is_refused_for_a_host_that_is_not_allowed(
    monkeypatch: pytest.MonkeyPatch, store: Any, receiver: WebhookReceiver
) -> None:
    asked = dns(monkeypatch)
    sub = await subscriptions.create_subscription(
        store.uow,
        NotificationsSettings(allow_loopback_endpoints=True),
        DEU,
        subscriptions.NewSubscription(url=receiver.url, description="test", event_types=["*"]),
    )
    strict = NotificationsSettings(allow_loopback_endpoints=True, allowed_hosts=["*.mod.example"])
    refused = await subscriptions.ping(store.db, store.uow, strict, DEU, sub.id)
    assert refused.status_code is None and "not on the list of allowed webhook hosts" in (refused.error or "")
    assert receiver.received() == [] and asked == []

    listed = NotificationsSettings(allow_loopback_endpoints=True, allowed_hosts=["127.0.0.1"])
    answered = await subscriptions.ping(store.db, store.uow, listed, DEU, sub.id)
    assert answered.ok and answered.status_code == 204
    assert len(receiver.received()) == 1

"""Signing secrets at rest: sealed in the database, plain to the service; plaintext rows from before
sealing still work and get sealed; a key rotation (new key first, reseal, old key removed) loses nothing;
webhooks signed with sealed secrets verify. Against a real database and a real receiver on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography.fernet import InvalidToken
from standardwebhooks import Webhook

from icep.notifications.deliveries.dispatcher import WebhookDispatcher
from icep.notifications.read_models.fan_out import fan_out
from icep.notifications.settings import NotificationsSettings
from icep.notifications.subscriptions import use_cases as subscriptions
from icep.notifications.subscriptions.model import Subscriber
from icep.notifications.subscriptions.sealing import reseal_secrets
from icep.platform import secrets
from icep.platform.events import ReceivedEvent, utcnow
from icep.platform.ids import new_id
from icep.platform.testing import WebhookReceiver

DEU = Subscriber("deu-subscriber", "DEU", frozenset({"subscriber"}))
SETTINGS = NotificationsSettings(allow_loopback_endpoints=True, retry_schedule_seconds=[0.05])


async def raw_secrets(store: Any) -> dict[str, tuple[str, str | None]]:
    """The subscriptions' secrets as the database holds them."""
    async with store.db.connect() as conn:
        rows = (await conn.execute(sa.text("SELECT id, secret, previous_secret FROM subscriptions"))).all()
    return {r[0]: (r[1], r[2]) for r in rows}


def event() -> ReceivedEvent:
    return ReceivedEvent(
        id=new_id(),
        type="icep.plans.plan.submitted.v1",
        source="/icep/plans",
        subject="plan-1",
        time=utcnow(),
        nation="DEU",
        releasable_to="ALLIES",
        data={"plan_id": "plan-1"},
    )


async def test_secrets_are_sealed_in_the_database_and_webhooks_verify(
    store: Any, receivers: Callable[[], WebhookReceiver], dispatchers: Callable[..., WebhookDispatcher]
) -> None:
    receiver = receivers()
    sub = await subscriptions.create_subscription(
        store.uow,
        SETTINGS,
        DEU,
        subscriptions.NewSubscription(url=receiver.url, description="t", event_types=["*"]),
    )
    rotated = await subscriptions.rotate_secret(store.uow, SETTINGS, DEU, sub.id, 1)
    assert sub.secret.startswith("whsec_") and rotated.secret.startswith("whsec_")
    secret, previous = (await raw_secrets(store))[sub.id]
    assert previous is not None
    for stored in (secret, previous):
        assert stored.startswith(secrets.PREFIX) and "whsec_" not in stored
    # The service reads them plain, and signs with both during the grace period.
    loaded = await store.subscription(sub.id)
    assert (loaded.secret, loaded.previous_secret) == (rotated.secret, sub.secret)
    async with store.db.transaction() as session:
        assert await fan_out(session, event()) == 1
    assert await dispatchers().dispatch_once() == 1
    [hook] = receiver.received()
    Webhook(rotated.secret).verify(hook.body, hook.headers)
    Webhook(sub.secret).verify(hook.body, hook.headers)


async def test_plaintext_secrets_from_before_sealing_still_sign_and_get_sealed(
    store: Any, secret_box: secrets.SecretBox
) -> None:
    legacy = await store.add_subscription("https://partner.test/hook")
    async with store.db.transaction() as session:  # as a row written before sealing existed
        await session.execute(
            sa.text("UPDATE subscriptions SET secret = :s WHERE id = :id"),
            {"s": legacy.secret, "id": legacy.id},
        )
    assert (await raw_secrets(store))[legacy.id][0] == legacy.secret
    assert (await store.subscription(legacy.id)).secret == legacy.secret
    assert await reseal_secrets(store.db, secret_box) == 1
    stored = (await raw_secrets(store))[legacy.id][0]
    assert stored.startswith(secrets.PREFIX) and secret_box.open(stored) == legacy.secret
    assert await reseal_secrets(store.db, secret_box) == 0  # nothing left to do


async def test_a_key_rotation_moves_every_secret_to_the_new_key(store: Any) -> None:
    old_key = secrets.new_key()
    old = secrets.SecretBox([old_key])
    secrets.install(old)
    subs = [await store.add_subscription(f"https://partner.test/{n}") for n in range(3)]
    owner = Subscriber("client-deu", "DEU", frozenset({"subscriber"}))  # as `add_subscription` makes
    rotated = await subscriptions.rotate_secret(store.uow, SETTINGS, owner, subs[0].id, None)
    # 1. The new key goes first; the old one still opens what it sealed.
    new_key = secrets.new_key()
    both = secrets.SecretBox([new_key, old_key])
    secrets.install(both)
    assert (await store.subscription(subs[1].id)).secret == subs[1].secret
    # 2. Resealing (at the service's start) moves every secret to the new key.
    assert await reseal_secrets(store.db, both) == 3
    # 3. The old key can go: everything opens with the new key alone.
    alone = secrets.SecretBox([new_key])
    secrets.install(alone)
    assert [(await store.subscription(s.id)).secret for s in subs[1:]] == [s.secret for s in subs[1:]]
    again = await store.subscription(subs[0].id)
    assert (again.secret, again.previous_secret) == (rotated.secret, rotated.previous_secret)
    # They are sealed under the new key now: the old key alone no longer opens them.
    with pytest.raises(InvalidToken):
        old.open((await raw_secrets(store))[subs[1].id][0])

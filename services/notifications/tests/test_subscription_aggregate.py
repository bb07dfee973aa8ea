"""The Subscription aggregate's rules and the events it records, and how `events.py` publishes them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from icep.contracts.notifications import SubscriptionCreated, SubscriptionDisabled, SubscriptionReenabled
from icep.notifications.events import notifications_events
from icep.notifications.subscriptions.model import (
    Subscription,
    SubscriptionStatus,
    SubscriptionWasCreated,
    SubscriptionWasDisabled,
    SubscriptionWasReenabled,
)
from icep.platform.errors import IllegalTransition

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def created() -> Subscription:
    return Subscription.create(
        id="s1",
        owner="client-deu",
        nation="DEU",
        url="https://hooks.example/icep",
        description="",
        event_types=["icep.plans.*"],
        nations=["DEU"],
        capability_areas=[],
        products=["155mm artillery round"],
        secret="whsec_current",
        at=T0,
    )


def test_a_new_subscription_is_active_at_version_1_and_records_its_creation() -> None:
    sub = created()
    assert (sub.status, sub.version, sub.events) == (
        SubscriptionStatus.ACTIVE,
        1,
        (SubscriptionWasCreated(at=T0),),
    )
    (published,) = [e for event in sub.events for e in notifications_events(sub, event)]
    assert isinstance(published.payload, SubscriptionCreated)
    assert (published.subject, published.releasability.owner) == ("s1", "DEU")
    assert published.payload.products == ["155mm artillery round"] and published.payload.created_at == T0
    assert "whsec_current" not in repr(sub)


def test_every_change_bumps_the_version_and_an_unchanged_edit_does_not() -> None:
    sub = created()
    assert sub.edit(sub.changes_in({"products": ["155mm artillery round"]}), T0) is sub
    edited = sub.edit(sub.changes_in({"description": "shells", "nations": ["DEU"]}), T0 + timedelta(1))
    assert (edited.version, edited.description, edited.updated_at) == (2, "shells", T0 + timedelta(1))
    rotated = edited.rotate_secret("whsec_next", timedelta(hours=1), T0)
    assert (rotated.secret, rotated.previous_secret, rotated.version) == ("whsec_next", "whsec_current", 3)
    assert rotated.previous_secret_expires_at == T0 + timedelta(hours=1)
    assert edited.rotate_secret("whsec_next", timedelta(0), T0).previous_secret is None


def test_disabling_tells_the_owner_and_resuming_a_disabled_one_tells_it_again() -> None:
    later = T0 + timedelta(minutes=5)
    disabled = created().disable("owner", "moving " * 100, later)
    assert (disabled.status, disabled.disabled_reason) == (
        SubscriptionStatus.DISABLED,
        ("moving " * 100)[:500],
    )
    assert disabled.events[-1] == SubscriptionWasDisabled(cause="owner", reason="moving " * 100, at=later)
    (told,) = notifications_events(disabled, disabled.events[-1])
    assert isinstance(told.payload, SubscriptionDisabled) and told.payload.reason == "moving " * 100
    with pytest.raises(IllegalTransition):
        disabled.disable("owner", "again", later)
    resumed = disabled.resume("client-deu", later)
    assert (resumed.status, resumed.disabled_reason) == (SubscriptionStatus.ACTIVE, None)
    assert resumed.events[-1] == SubscriptionWasReenabled(by="client-deu", at=later)
    (again,) = notifications_events(resumed, resumed.events[-1])
    assert isinstance(again.payload, SubscriptionReenabled) and again.payload.reenabled_by == "client-deu"


def test_pausing_and_resuming_record_nothing_to_publish() -> None:
    paused = created().pause(T0)
    resumed = paused.resume("client-deu", T0)
    assert resumed.events == (SubscriptionWasCreated(at=T0),)
    assert (resumed.status, resumed.version) == (SubscriptionStatus.ACTIVE, 3)


def test_the_dispatcher_disables_in_any_state_its_owner_only_an_active_or_paused_one() -> None:
    deleted = created().delete(T0)
    with pytest.raises(IllegalTransition):
        deleted.disable("owner", "why", T0)
    assert deleted.disable("gone", "the endpoint answered 410 Gone", T0).status is SubscriptionStatus.DISABLED

"""The subscription aggregate and its rules, in plain Python: its states and how actions move it between
them, its signing secrets, and the domain events its changes record (`events.py` publishes them)."""

from __future__ import annotations

import secrets
from base64 import b64encode
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Protocol

from standardwebhooks import Webhook

from icep.platform.domain import Aggregate, DomainEvent
from icep.platform.errors import IllegalTransition


@dataclass(frozen=True)
class Subscriber:
    """Who calls: a client of a nation, with its roles."""

    client_id: str
    nation: str
    roles: frozenset[str]


class SubscriptionStatus(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    DISABLED = "disabled"
    #: Deleted by its owner: kept (with its delivery history) but gone from the API and sent nothing.
    DELETED = "deleted"


def new_signing_secret() -> str:
    """A Standard Webhooks secret: `whsec_` and 32 random bytes in base64."""
    return "whsec_" + b64encode(secrets.token_bytes(32)).decode()


class SubscriptionAction(StrEnum):
    PAUSE = "pause"
    #: Also re-enables a disabled subscription.
    RESUME = "resume"
    DISABLE = "disable"
    DELETE = "delete"


_S = SubscriptionStatus
_A = SubscriptionAction
_TRANSITIONS: dict[tuple[SubscriptionStatus, SubscriptionAction], SubscriptionStatus] = {
    (_S.ACTIVE, _A.PAUSE): _S.PAUSED,
    (_S.PAUSED, _A.RESUME): _S.ACTIVE,
    (_S.DISABLED, _A.RESUME): _S.ACTIVE,
    (_S.ACTIVE, _A.DISABLE): _S.DISABLED,
    (_S.PAUSED, _A.DISABLE): _S.DISABLED,
    (_S.ACTIVE, _A.DELETE): _S.DELETED,
    (_S.PAUSED, _A.DELETE): _S.DELETED,
    (_S.DISABLED, _A.DELETE): _S.DELETED,
}


def next_status(current: SubscriptionStatus, action: SubscriptionAction) -> SubscriptionStatus:
    """The state machine: active <-> paused, active|paused -> disabled -> (resume) active, any -> deleted.
    A paused subscription's deliveries wait and go on resume; a disabled one gets none."""
    found = _TRANSITIONS.get((current, action))
    if found is None:
        raise IllegalTransition("subscription", action.value, current.value)
    return found


# --- signing ---------------------------------------------------------------------------------------


class SigningKeys(Protocol):
    """A subscription's secrets: the current one and, for a grace period after a rotation, the previous."""

    @property
    def secret(self) -> str: ...

    @property
    def previous_secret(self) -> str | None: ...

    @property
    def previous_secret_expires_at(self) -> datetime | None: ...


def previous_secret_valid(keys: SigningKeys, at: datetime) -> bool:
    expires = keys.previous_secret_expires_at
    if keys.previous_secret is None or expires is None:
        return False
    if expires.tzinfo is None:  # SQLite hands back naive datetimes; the service stores UTC
        expires = expires.replace(tzinfo=UTC)
    return at < expires


def signatures_for(subscription: SigningKeys, msg_id: str, timestamp: datetime, body: str) -> str:
    """The `webhook-signature` header of a message sent at `timestamp`: `v1,<sig>` with the current
    secret and, while the previous secret is in its grace period, `v1,<sig>` with that one too
    (space-separated, as Standard Webhooks allows), so receivers verify with either while they switch."""
    signatures = [Webhook(subscription.secret).sign(msg_id, timestamp, body)]
    if subscription.previous_secret is not None and previous_secret_valid(subscription, timestamp):
        signatures.append(Webhook(subscription.previous_secret).sign(msg_id, timestamp, body))
    return " ".join(signatures)


class WebhookEndpoint(SigningKeys, Protocol):
    """Where and how a webhook is sent: what the dispatcher needs of a subscription."""

    @property
    def id(self) -> str: ...

    @property
    def url(self) -> str: ...


# --- the aggregate ---------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class SubscriptionWasCreated(DomainEvent):
    pass


@dataclass(frozen=True, kw_only=True)
class SubscriptionWasDisabled(DomainEvent):
    #: `gone` (410), `failing` (failed too long), `owner` or `operator`.
    cause: str
    #: As given: the subscription keeps at most 500 characters of it, the event all of it.
    reason: str


@dataclass(frozen=True, kw_only=True)
class SubscriptionWasReenabled(DomainEvent):
    by: str


#: The fields a change (PATCH) may set.
EDITABLE = ("url", "description", "event_types", "nations", "capability_areas", "products")


@dataclass(frozen=True, kw_only=True)
class Subscription(Aggregate):
    """A client's webhook subscription: where to send, which events, signed with which secrets, and
    whether it sends at all. Each change bumps `version` (the ETag)."""

    id: str
    owner: str
    nation: str
    url: str
    description: str
    #: Lists, as the API shows them; a change replaces a list, never edits it in place.
    event_types: list[str]
    nations: list[str]
    capability_areas: list[str]
    products: list[str]
    status: SubscriptionStatus
    disabled_reason: str | None
    #: Signing secrets stay out of the repr (and so out of logs and tracebacks).
    secret: str = field(repr=False)
    previous_secret: str | None = field(repr=False)
    previous_secret_expires_at: datetime | None
    version: int
    created_at: datetime
    updated_at: datetime
    #: When the current run of failed attempts began (None while answers come).
    failing_since: datetime | None

    @classmethod
    def create(
        cls,
        *,
        id: str,
        owner: str,
        nation: str,
        url: str,
        description: str,
        event_types: list[str],
        nations: list[str],
        capability_areas: list[str],
        products: list[str],
        secret: str,
        at: datetime,
    ) -> Subscription:
        """A new active subscription, at version 1, with its first signing secret."""
        return cls(
            id=id,
            owner=owner,
            nation=nation,
            url=url,
            description=description,
            event_types=list(event_types),
            nations=list(nations),
            capability_areas=list(capability_areas),
            products=list(products),
            status=SubscriptionStatus.ACTIVE,
            disabled_reason=None,
            secret=secret,
            previous_secret=None,
            previous_secret_expires_at=None,
            version=1,
            created_at=at,
            updated_at=at,
            failing_since=None,
        ).recorded(SubscriptionWasCreated(at=at))

    def changes_in(self, wanted: Mapping[str, object]) -> dict[str, object]:
        """What of `wanted` (editable fields, lists as validated) differs from what the subscription has."""
        found: dict[str, object] = {}
        for name, value in wanted.items():
            if name not in EDITABLE:
                raise ValueError(f"{name} is not an editable field of a subscription")
            if getattr(self, name) != value:
                found[name] = value
        return found

    def edit(self, changes: Mapping[str, object], at: datetime) -> Subscription:
        """The subscription with `changes` (from `changes_in`) applied; unchanged when there are none."""
        if not changes:
            return self
        return self._touched(at, **changes)

    def rotate_secret(self, new_secret: str, grace: timedelta, at: datetime) -> Subscription:
        """A new signing secret; the one it replaces keeps signing alongside it for `grace` (none: not at
        all), so the receiver can switch without a gap."""
        keep = grace > timedelta(0)
        return self._touched(
            at,
            previous_secret=self.secret if keep else None,
            previous_secret_expires_at=at + grace if keep else None,
            secret=new_secret,
        )

    def pause(self, at: datetime) -> Subscription:
        """Deliveries are kept and wait until it resumes."""
        return self._touched(at, status=next_status(self.status, SubscriptionAction.PAUSE))

    def resume(self, by: str, at: datetime) -> Subscription:
        """What waited goes now; a disabled subscription is re-enabled (and its owner told)."""
        status = next_status(self.status, SubscriptionAction.RESUME)
        resumed = self._touched(at, status=status, disabled_reason=None)
        if self.status is SubscriptionStatus.DISABLED:
            return resumed.recorded(SubscriptionWasReenabled(by=by, at=at))
        return resumed

    def delete(self, at: datetime) -> Subscription:
        """Gone from the API and sent nothing; kept, with its delivery history."""
        return self._touched(at, status=next_status(self.status, SubscriptionAction.DELETE))

    def disable(self, cause: str, reason: str, at: datetime) -> Subscription:
        """Disabled, whoever disables (`cause`): nothing is sent or kept for it until it is resumed, and
        its owner is told. Its owner or an operator may disable only an active or paused one; the
        dispatcher, which finds an endpoint gone or failing, disables it in any state but disabled (it
        checks `status` first: disabling twice would tell the owner twice)."""
        if cause in ("owner", "operator"):
            next_status(self.status, SubscriptionAction.DISABLE)
        return self._touched(
            at, status=SubscriptionStatus.DISABLED, disabled_reason=reason[:500], failing_since=None
        ).recorded(SubscriptionWasDisabled(cause=cause, reason=reason, at=at))

    def _touched(self, at: datetime, **changes: object) -> Subscription:
        return self.recorded(version=self.version + 1, updated_at=at, **changes)

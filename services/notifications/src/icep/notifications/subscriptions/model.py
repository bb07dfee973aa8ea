"""The subscription's rules, in plain Python: its states and how actions move it between them, and its
signing secrets."""

from __future__ import annotations

import secrets
from base64 import b64encode
from datetime import UTC, datetime
from enum import StrEnum
from typing import Protocol

from standardwebhooks import Webhook

from icep.platform.errors import IllegalTransition


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

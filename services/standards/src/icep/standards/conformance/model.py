"""A product's claim of conformance to a standard edition (and level): claimed -> under_test -> verified
| rejected; verified -> expired on its date.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum

from icep.contracts import Releasability
from icep.contracts.nations import NATO
from icep.platform.domain import Actor, Aggregate, DomainEvent, invalid, transition
from icep.platform.errors import Forbidden, IllegalTransition
from icep.standards.records import (
    STANDARDS_ROLE,
    Change,
    including,
    may_read,
    owned,
)
from icep.standards.standards.model import (
    Standard,
    StandardStatus,
)


class ConformanceStatus(StrEnum):
    CLAIMED = "claimed"
    UNDER_TEST = "under_test"
    VERIFIED = "verified"
    REJECTED = "rejected"
    EXPIRED = "expired"


CONFORMANCE_TRANSITIONS: dict[tuple[str, ConformanceStatus], ConformanceStatus] = {
    ("start_test", ConformanceStatus.CLAIMED): ConformanceStatus.UNDER_TEST,
    ("verify", ConformanceStatus.UNDER_TEST): ConformanceStatus.VERIFIED,
    ("reject", ConformanceStatus.UNDER_TEST): ConformanceStatus.REJECTED,
    ("expire", ConformanceStatus.VERIFIED): ConformanceStatus.EXPIRED,
}


def next_conformance_status(action: str, current: ConformanceStatus) -> ConformanceStatus:
    return transition("conformance claim", CONFORMANCE_TRANSITIONS, action, current)


@dataclass(frozen=True)
class Product:
    manufacturer: str
    product_code: str
    name: str


@dataclass(frozen=True, kw_only=True)
class Claimed(DomainEvent):
    by: str


@dataclass(frozen=True, kw_only=True)
class TestingStarted(DomainEvent):
    by: str


@dataclass(frozen=True, kw_only=True)
class Verified(DomainEvent):
    by: str
    expires_on: date


@dataclass(frozen=True, kw_only=True)
class Rejected(DomainEvent):
    by: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class Expired(DomainEvent):
    """Run by the schedule, not a person."""


@dataclass(frozen=True)
class ConformanceClaim(Aggregate):
    """A product claims conformance to a standard edition (and level); owned by the claiming nation."""

    id: str
    nation: str
    product: Product
    standard_id: str
    level: str | None
    status: ConformanceStatus
    evidence: tuple[str, ...]
    expires_on: date | None
    version: int
    history: tuple[Change, ...]
    rejection_reason: str | None = None
    #: Owned by the claiming nation; NATO's standards staff, who may assess it, always read it.
    releasability: Releasability | None = None
    #: How the edition is cited (`STANAG 4569 Ed. 3`) in the claim's events. Not part of the claim's
    #: record: its repository reads it from the catalogue.
    standard_reference: str = field(default="", compare=False)

    @property
    def release(self) -> Releasability:
        return self.releasability or including(Releasability(owner=self.nation), NATO)

    @classmethod
    def claim(
        cls,
        *,
        id: str,
        actor: Actor,
        product: Product,
        standard: Standard,
        now: datetime,
        level: str | None = None,
        evidence: tuple[str, ...] = (),
        releasability: Releasability | None = None,
    ) -> ConformanceClaim:
        if STANDARDS_ROLE not in actor.roles:
            raise Forbidden("only standards staff record conformance claims")
        if not (product.manufacturer.strip() and product.product_code.strip() and product.name.strip()):
            raise invalid("body.product", "a product needs a manufacturer, product code and name")
        if standard.status is not StandardStatus.PROMULGATED:
            raise IllegalTransition("standard", "claim conformance to", standard.status.value)
        if level is not None and level not in standard.levels:
            raise invalid("body.level", f"{standard.reference} has no level {level!r}")
        if level is None and standard.levels:
            raise invalid("body.level", f"{standard.reference} is claimed at one of {list(standard.levels)}")
        if releasability is not None:
            beyond = [n for n in releasability.nations if not may_read(standard.releasability, n)]
            if beyond:
                raise invalid(
                    "body.releasability.nations",
                    f"{standard.reference} is not released to {', '.join(beyond)}",
                )
        return cls(
            id=id,
            nation=actor.nation,
            product=product,
            standard_id=standard.id,
            level=level,
            status=ConformanceStatus.CLAIMED,
            evidence=evidence,
            expires_on=None,
            version=1,
            history=(Change("claimed", ConformanceStatus.CLAIMED.value, actor.id, now),),
            releasability=owned(releasability, actor.nation, NATO),
            standard_reference=standard.reference,
            events=(Claimed(by=actor.id, at=now),),
        )

    def _check_assessor(self, actor: Actor, action: str) -> None:
        if STANDARDS_ROLE not in actor.roles or actor.nation not in (self.nation, NATO):
            raise Forbidden(f"only {self.nation}'s or NATO's standards staff may {action} this claim")

    def _move(
        self, action: str, by: str, now: datetime, event: DomainEvent, note: str = "", **changes: object
    ) -> ConformanceClaim:
        status = next_conformance_status(action, self.status)
        return self.recorded(
            event,
            status=status,
            version=self.version + 1,
            history=(*self.history, Change(action, status.value, by, now, note)),
            **changes,
        )

    def start_test(self, actor: Actor, now: datetime, evidence: tuple[str, ...] = ()) -> ConformanceClaim:
        self._check_assessor(actor, "test")
        return self._move(
            "start_test",
            actor.id,
            now,
            TestingStarted(by=actor.id, at=now),
            evidence=(*self.evidence, *evidence),
        )

    def _check_verifier(self, actor: Actor, action: str, allow_self_verification: bool) -> None:
        """Verification is independent: NATO's standards staff or another nation's test centre (standards
        staff of a nation the claim is released to) verify or reject a claim under test, never the
        claiming nation itself, unless the deployment allows self-verification. A refusal is 403: it is
        about who acts, whatever the claim's state (the claiming nation may read the claim, so it learns
        nothing it does not know)."""
        if STANDARDS_ROLE not in actor.roles:
            raise Forbidden(f"only standards staff may {action} this claim")
        if actor.nation == self.nation:
            if allow_self_verification:
                return
            raise Forbidden(
                f"a claim is verified independently: by NATO or another nation's test centre, not by"
                f" {self.nation}, whose claim it is"
            )
        if actor.nation != NATO and not may_read(self.release, actor.nation):
            raise Forbidden(f"only standards staff the claim is released to may {action} it")

    def verify(
        self,
        actor: Actor,
        expires_on: date,
        now: datetime,
        evidence: tuple[str, ...] = (),
        *,
        allow_self_verification: bool = False,
    ) -> ConformanceClaim:
        """Verified until `expires_on`, by an independent verifier (`_check_verifier`)."""
        self._check_verifier(actor, "verify", allow_self_verification)
        all_evidence = (*self.evidence, *evidence)
        if not all_evidence:
            raise invalid("body.evidence", "a verification rests on at least one evidence reference")
        if expires_on <= now.date():
            raise invalid("body.expires_on", "a verification expires after the day it is given")
        return self._move(
            "verify",
            actor.id,
            now,
            Verified(by=actor.id, expires_on=expires_on, at=now),
            note=expires_on.isoformat(),
            evidence=all_evidence,
            expires_on=expires_on,
        )

    def reject(self, actor: Actor, reason: str, now: datetime) -> ConformanceClaim:
        """Rejected by an independent verifier, or withdrawn this way by the claiming nation itself."""
        self._check_verifier(actor, "reject", allow_self_verification=True)
        if not reason.strip():
            raise invalid("body.reason", "a rejection needs a reason")
        return self._move(
            "reject",
            actor.id,
            now,
            Rejected(by=actor.id, reason=reason.strip(), at=now),
            note=reason.strip(),
            rejection_reason=reason.strip(),
        )

    def is_due(self, now: datetime) -> bool:
        return (
            self.status is ConformanceStatus.VERIFIED
            and self.expires_on is not None
            and self.expires_on <= now.date()
        )

    def expire(self, now: datetime) -> ConformanceClaim:
        """Run by the schedule, not a person; only a verified claim whose date has come expires."""
        if self.status is ConformanceStatus.VERIFIED and not self.is_due(now):
            raise IllegalTransition("conformance claim", "expire", "verified until its expiry date")
        return self._move("expire", "schedule", now, Expired(at=now))


def expire_due(claims: Iterable[ConformanceClaim], now: datetime) -> list[ConformanceClaim]:
    """The claims that expire now, already moved to expired. An expired claim is never due again, so
    running this twice (or after a restart) expires each claim exactly once."""
    return [c.expire(now) for c in claims if c.is_due(now)]

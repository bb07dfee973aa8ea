"""What happens to an initiative, in the domain's words: the events its methods record (plain Python).

The service's `events.py` maps each one to the published `icep.contracts.procurement` payloads, with the
initiative as it stands after the change (its status and version) and who may read them."""

from __future__ import annotations

from dataclasses import dataclass

from icep.platform.domain import DomainEvent
from icep.procurement.initiatives.parts import Award, Bid, CallOff, Contract, Flag, Milestone


@dataclass(frozen=True, kw_only=True)
class InitiativeEvent(DomainEvent):
    """A change of an initiative and who made it (a client id; `standards` for a flag)."""

    by: str


@dataclass(frozen=True, kw_only=True)
class Proposed(InitiativeEvent):
    pass


@dataclass(frozen=True, kw_only=True)
class Opened(InitiativeEvent):
    pass


@dataclass(frozen=True, kw_only=True)
class Joined(InitiativeEvent):
    nation: str


@dataclass(frozen=True, kw_only=True)
class Committed(InitiativeEvent):
    nation: str


@dataclass(frozen=True, kw_only=True)
class WithdrawalAsked(InitiativeEvent):
    """A committed nation asked to withdraw: the lead nation decides (its demand still counts)."""

    nation: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class Withdrawn(InitiativeEvent):
    """A nation left: at once when only joined (or the lead nation itself), else approved by the lead
    nation (`amendment`: firm quantities were withdrawn)."""

    nation: str
    amendment: bool
    approved_by: str | None
    reason: str


@dataclass(frozen=True, kw_only=True)
class WithdrawalRefused(InitiativeEvent):
    nation: str
    #: The reason the nation gave for asking (the participation no longer holds it).
    reason: str


@dataclass(frozen=True, kw_only=True)
class ParticipationClosed(InitiativeEvent):
    pass


@dataclass(frozen=True, kw_only=True)
class Cancelled(InitiativeEvent):
    pass


@dataclass(frozen=True, kw_only=True)
class TenderPublished(InitiativeEvent):
    pass


@dataclass(frozen=True, kw_only=True)
class BidRecorded(InitiativeEvent):
    bid: Bid


@dataclass(frozen=True, kw_only=True)
class Awarded(InitiativeEvent):
    awards: tuple[Award, ...]


@dataclass(frozen=True, kw_only=True)
class ContractSigned(InitiativeEvent):
    contract: Contract


@dataclass(frozen=True, kw_only=True)
class CallOffPlaced(InitiativeEvent):
    call_off: CallOff


@dataclass(frozen=True, kw_only=True)
class MilestoneRecorded(InitiativeEvent):
    """A milestone of a contract met or missed (its status says which)."""

    contract_id: str
    milestone: Milestone


@dataclass(frozen=True, kw_only=True)
class DeliveryStarted(InitiativeEvent):
    pass


@dataclass(frozen=True, kw_only=True)
class Closed(InitiativeEvent):
    pass


@dataclass(frozen=True, kw_only=True)
class Flagged(InitiativeEvent):
    """A required standard edition was superseded or cancelled."""

    flag: Flag

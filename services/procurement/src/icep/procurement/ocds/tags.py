"""OCDS release tags: the closed codelist, and which tags each domain change's release carries."""

from __future__ import annotations

from icep.procurement.initiatives.model import Initiative

#: The closed releaseTag codelist, less `compiled` (for compiled releases only).
RELEASE_TAGS = frozenset(
    {
        "planning",
        "planningUpdate",
        "tender",
        "tenderAmendment",
        "tenderUpdate",
        "tenderCancellation",
        "award",
        "awardUpdate",
        "awardCancellation",
        "contract",
        "contractUpdate",
        "contractAmendment",
        "implementation",
        "implementationUpdate",
        "contractTermination",
    }
)

_PLANNING_UPDATES = (
    "open",
    "join",
    "commit",
    "withdraw",
    "withdraw_amendment",
    "request_withdrawal",
    "approve_withdrawal",
    "refuse_withdrawal",
    "close_participation",
    "flagged",
)
#: Domain history action -> release tags (`tags_for` refines `flagged` and `cancel` by the initiative).
ACTION_TAGS: dict[str, tuple[str, ...]] = {
    "proposed": ("planning",),
    **dict.fromkeys(_PLANNING_UPDATES, ("planningUpdate",)),
    "publish_tender": ("tender",),
    "record_bid": ("tenderUpdate",),
    "award": ("award",),
    "sign_contract": ("contract",),
    "place_call_off": ("implementation",),
    "start_delivery": ("implementation",),
    "milestone_met": ("implementationUpdate",),
    "milestone_missed": ("implementationUpdate",),
    "close": ("contractTermination",),
    "cancel": ("tenderCancellation",),
}


def tags_for(action: str, initiative: Initiative | None = None) -> list[str]:
    """The release tags for a domain history action. Given the initiative as it is after the change, a
    flag raised once the tender is published is a `tenderUpdate`, and a cancellation is a
    `planningUpdate` before any tender, a `tenderCancellation` after one, plus an `awardCancellation` when
    awards fall with it."""
    try:
        tags = list(ACTION_TAGS[action])
    except KeyError:
        raise ValueError(f"no OCDS release tags for the action {action!r}") from None
    if initiative is None:
        return tags
    if action == "flagged" and initiative.tender is not None:
        return ["tenderUpdate"]
    if action == "cancel":
        if initiative.tender is None:
            return ["planningUpdate"]
        if initiative.awards:
            return ["tenderCancellation", "awardCancellation"]
    return tags

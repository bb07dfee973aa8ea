"""The procurement service's tags in the API documents: what each covers, and who reads what.

The tables state what `Initiative.visible_to`, `initiatives/readers.py` (one nation's participation, the
demand as it stands, the bids) and the disclosure rule (`Initiative.demand_for`) decide;
`docs/visibility.md` has the same rules for every service.
"""

from __future__ import annotations

from typing import Any

from icep.platform.openapi import markdown_table

_INITIATIVE = markdown_table(
    ("Part of an initiative", "Who reads it", "Its events are marked for"),
    [
        (
            "The initiative (every state: `proposed` to `closed` or `cancelled`), its tender, awards, "
            "contracts, call-offs, milestones and flags; who takes part and in which status",
            "its `releasability`: by default all Allies (and NATO staff), plus the partners in "
            "`open_to_partners`",
            "the same",
        ),
        (
            "One nation's quantities (`indicative`, `firm`, `funded`) and its reason to withdraw",
            "the lead nation, that nation, and NATO staff (when they read the initiative); null for others",
            "the same: `joined`, `committed`, `withdrawal_requested`, `withdrawal_refused`, "
            "`participant_withdrawn`",
        ),
        ("Bids", "the lead nation alone", "the lead nation: `bid.recorded`"),
        (
            "The aggregated `demand` as it stands",
            "the lead nation and NATO staff",
            "the same: `demand_aggregated` with `disclosure: full`",
        ),
        (
            "The aggregated `demand` as published",
            "every reader, from the tender's publication on (before: `withheld`, no figure)",
            "every reader: one `demand_aggregated` with `disclosure: published`",
        ),
    ],
)

INITIATIVES = f"""Joint procurement initiatives (each an OCDS contracting process): proposal, participation of
nations with indicative then firm quantities, tender in lots, bids, awards, contracts, call-offs and
delivery milestones. The lead nation's procurement staff run it; each nation's procurement staff act
for their own nation.

{_INITIATIVE}

**Disclosure rule.** Readers other than the lead nation and NATO staff (participants and partners
included) see no aggregate figure until the demand is settled (the tender is published); then, once and
never changed again, the firm demand of each year at least `ICEP_PROCUREMENT_MIN_AGGREGATE_PARTICIPANTS`
nations (default 3) commit to; a year with fewer is left out (not a zero). Indicative and funded figures
are never published to them, so no nation's quantity can be derived by differencing two aggregates. A
nation reads its own figures in its participation. Anyone who may not read the initiative gets `404`."""

_SUPPLIERS = markdown_table(
    ("Resource", "Who reads it"),
    [
        (
            "A supplier, its ownership, screening, matches and history",
            "the registering nation's `releasability` (default all Allies and NATO staff); its events the "
            "same",
        ),
    ],
)

SUPPLIERS = f"""Suppliers and their supply-chain screening against the restricted countries and lists:
`pending`, `clear`, `potential_match` (to be `cleared` or `blocked` by a named person), `blocked`. Only a
supplier `clear` or `cleared` can be awarded, and a bid or an award names only a supplier released at
least as widely as the initiative.

{_SUPPLIERS}"""

_DEMAND = markdown_table(
    ("Resource", "Who reads it"),
    [
        (
            "Demand signals (`/v1/demand/signals`)",
            "the owning nation's `releasability` (default all Allies and NATO staff); its events the same",
        ),
        (
            "The demand picture (`/v1/demand`, `/v1/demand-capacity`)",
            "computed only from the signals, initiatives and capacity figures the caller may read, "
            "initiatives under the disclosure rule (see `initiatives`)",
        ),
    ],
)

DEMAND = f"""Demand signals (a nation's standing demand for a product outside any initiative) and the demand
picture: per product and year, the demand of signals and initiatives by firmness, and against the
capacity committed by national plans.

{_DEMAND}

An initiative counts, per participating nation and year, the larger of its indicative and firm
quantities (firm split into funded and planned, or contracted once a contract is signed): so the picture's
`total` for an initiative differs from the sum of its indicative quantities."""

TAGS: list[dict[str, Any]] = [
    {"name": "initiatives", "description": INITIATIVES},
    {"name": "suppliers", "description": SUPPLIERS},
    {"name": "demand", "description": DEMAND},
]

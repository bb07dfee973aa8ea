"""The plans service's tags in the API documents: what each covers, and who reads what in which state.

The tables state what `NationalPlan.readers()`, `capacity_readers()` and `version_visible_to()` (in
`plans/model.py`) decide; `docs/visibility.md` has the same rules for every service.
"""

from __future__ import annotations

from typing import Any

from icep.platform.openapi import markdown_table

_BY_STATE = markdown_table(
    ("State", "The whole plan (`GET /v1/plans/{plan_id}`, lists)", "Its capacity figures"),
    [
        (
            "`draft` (new, or taken back from `returned`)",
            "the owner nation only, **whatever `releasability` says**",
            "the owner nation only",
        ),
        ("`submitted`, `under_review`, `returned`", "the owner nation and NATO staff", "the same"),
        ("`withdrawn`", "the owner nation; NATO staff too if it had been submitted", "the same"),
        (
            "`accepted`, `superseded`",
            "the owner nation, NATO staff, and whoever `releasability` names",
            "the plan's readers, plus whoever `capacity_releasability` names",
        ),
    ],
)

_PARTS = markdown_table(
    ("Part", "Who reads it"),
    [
        (
            "Earlier versions (`/versions`)",
            "the owner every version; NATO staff every version but drafts; other readers of the plan only "
            "`accepted` and `superseded` versions",
        ),
        (
            "Capacity figures: commitments, progress actuals and their corrections "
            "(`GET .../commitments/{commitment_key}/progress`), `GET /v1/capacity/summary`",
            "the readers of the capacity figures (table above); a lineage's actuals follow its currently "
            "accepted version",
        ),
        (
            "Events `capacity.committed`, `progress.reported`, `shortfall.detected`",
            "the readers of the capacity figures (they carry the figures and the plan's id and period, "
            "never its title)",
        ),
        (
            "Every other plan event",
            "the plan's readers after the change; editing and redrafting a draft publish nothing",
        ),
    ],
)

PLANS = f"""National plans of Allies for defence-industrial capacity, their review by NATO, and the progress
reported against them.

**Who reads a plan, by state.** Reading needs no role: any client of a nation reads what is released to
that nation. Anyone else gets `404` on a read (as for a plan that does not exist) and finds nothing in a
list. The plan's events are marked for exactly its readers after the change.

{_BY_STATE}

`releasability` (default: the owner nation only) and `capacity_releasability` (default: no one beyond
the plan's readers) are given at creation and changed with `POST /v1/plans/{{plan_id}}/release`; they
take effect only from acceptance. So a plan created with `"releasability": {{"scope": "allies"}}` is read
by the owner alone while a draft, by the owner and NATO staff while submitted or under review, and by
every Ally once accepted.

{_PARTS}

Changes need a role: `planner` of the owner nation for the owner's actions, `reviewer` of `NATO` for the
review. Each change takes the plan's `ETag` as `If-Match`."""

_CAPACITY = markdown_table(
    ("Resource", "Who reads it"),
    [
        (
            "Capability targets (`/v1/capacity/targets`)",
            "every Ally and NATO staff (owned by NATO; partners get `404` and empty lists); "
            "`capability_target.set` is marked `ALLIES`",
        ),
        (
            "Capacity summary (`/v1/capacity/summary`)",
            "computed only from the accepted plans whose capacity figures the caller's nation reads (the "
            "plan's readers plus its `capacity_releasability`): what it may not read is not counted",
        ),
        (
            "Timeline and its chart (`/v1/capacity/timeline`, `/v1/capacity/timeline.svg`)",
            "as the summary: only accepted plans (and their lineages' actuals) whose capacity figures the "
            "caller's nation reads; a nation's own series only for those nations; the requirement line on "
            "the all-nations series alone",
        ),
        (
            "Dependencies (`/v1/capacity/dependencies`)",
            "computed only from the accepted plans the caller reads whole (the wider capacity release does "
            "not cover supply chains)",
        ),
    ],
)

CAPACITY = f"""The Alliance capacity picture: NATO's capability targets (the requirement per product and
year), the capacity committed by accepted national plans against them, the actuals reported month by month
(kept across a plan's versions, with their corrections), and supply-chain dependencies.

{_CAPACITY}

Two nations may therefore get different figures for the same product and year."""

TAGS: list[dict[str, Any]] = [
    {"name": "plans", "description": PLANS},
    {"name": "capacity", "description": CAPACITY},
]

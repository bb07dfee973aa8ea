"""The standards service's tags in the API documents: what each covers, and who reads what.

The tables state what the records' releasability decides (`records.py`, `NationalResponse.releasability_for`,
`ConformanceClaim.release`, `Interchangeability.release`); `docs/visibility.md` has the same rules for
every service.
"""

from __future__ import annotations

from typing import Any

from icep.platform.openapi import markdown_table

_STANDARDS = markdown_table(
    ("Resource", "Who reads it", "Its events"),
    [
        (
            "A standard edition, in every state (`study`, `ratification_draft`, `promulgated`, "
            "`superseded`, `cancelled`)",
            "its `releasability` (owned by NATO): by default every Ally and NATO staff; partners only "
            "when named",
            "marked the same; subject the edition's id",
        ),
        (
            "A nation's answer to an edition (ratification, reservations, forecast, implementation)",
            "whoever reads the edition (the answer is the answering nation's own record)",
            "marked the same; subject `<standard_id>:<nation>`",
        ),
        (
            "Conformance claims",
            "the claiming nation's `releasability` (default all Allies), and always NATO staff",
            "marked the same; subject the claim's id",
        ),
        (
            "Progress per nation (`/v1/standards/progress`)",
            "computed from the editions released to that nation and the answers the caller may read",
            "(none)",
        ),
    ],
)

STANDARDS = f"""NATO standards (STANAGs and APs) edition by edition, nations' answers to them (ratification,
reservations, implementation) and products' conformance claims. NATO's standardization staff run the
editions; each nation's standards staff answer for their nation. Anyone who may not read a record gets
`404`.

{_STANDARDS}"""

INTEROPERABILITY = """Interoperability between nations on standards, computed from the editions and answers
the caller may read: a verdict per pair of nations, worst first `not_interoperable`, `unknown`,
`not_implemented`, `limited`, `interoperable`. A reservation makes a pair `not_implemented` until both
nations implemented the edition, and `limited` after; see the operation for every rule."""

_CLEARANCES = markdown_table(
    ("Resource", "Who reads it"),
    [
        (
            "An interchangeability clearance",
            "the recording nation's (or NATO's) `releasability` (default all Allies), and always the "
            "nations cleared; its events the same",
        ),
    ],
)

INTERCHANGEABILITY = f"""Which item is cleared for which platform, for which nations, on which basis (a
standard edition or a trial), and whether a nation can use an item on a platform.

{_CLEARANCES}"""

TAGS: list[dict[str, Any]] = [
    {"name": "standards", "description": STANDARDS},
    {"name": "interoperability", "description": INTEROPERABILITY},
    {"name": "interchangeability", "description": INTERCHANGEABILITY},
]

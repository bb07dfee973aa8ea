"""Benchmark figures and the report they go into (bench/REPORT.md).

The report has one part per benchmark section, each saying when and where it was measured, so that
`python -m bench <section>...` can measure some sections again and rewrite only their parts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path


@dataclass
class Result:
    """One benchmark figure and whether it met its target."""

    name: str
    value: float
    unit: str
    target: str
    ok: bool
    #: Set for a figure that is one of issue 14's goals: the goal's short name for the Goals table.
    goal: str = ""
    #: The same-run floor or ratio the figure is judged against, for the Goals table.
    floor: str = ""


def fmt(value: float) -> str:
    """Enough digits for floors far below 1 (a bare commit is microseconds), no noise on big figures."""
    if value != value or value in (float("inf"), float("-inf")):
        return str(value)
    if value == int(value):
        return f"{int(value):,}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:.1f}"
    return f"{value:.3f}"


def _target(r: Result) -> str:
    """The target with its unit; a floor or a detail without a target is shown as such."""
    return r.target if r.target in ("-", "floor") else f"{r.target} {r.unit}".rstrip()


@dataclass
class Section:
    """What one benchmark section measured in one run."""

    key: str
    title: str
    #: Where it ran: "2 cores, Python 3.11.7, SQLite (WAL), a single local Kafka broker".
    environment: str
    results: list[Result] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def render(self) -> str:
        lines = [
            f"## {self.title}",
            f"<!-- bench section: {self.key} -->",
            "",
            f"Run {self.at:%Y-%m-%d %H:%M} UTC on {self.environment}.",
            "",
            "| measure | value | target | met |",
            "|---|---:|---|---|",
        ]
        for r in self.results:
            lines.append(f"| {r.name} | {fmt(r.value)} {r.unit} | {_target(r)} | {'yes' if r.ok else 'NO'} |")
        if self.notes:
            lines += ["", *[f"- {n}" for n in self.notes]]
        return "\n".join(lines) + "\n"


HEADER = """# ICEP benchmark report

Written by `make bench` (`python -m bench`, bench/__main__.py). `python -m bench <section>...` measures
only the sections named and rewrites their parts of this report, keeping the others as they were; each
part says when and on what it was measured. Figures are compared against floors measured in the same run
(section Floors) and given as CPU time per operation where they can be: the machine is shared and noisy.
"""

#: Filled by hand and kept by every rewrite of the report (the bench never writes into it).
CHANGES = """## What changed and what it bought
<!-- bench section: changes -->

_To be filled in: each change, the profile or count that pointed at it, and the figures before and after._
"""

_GOAL_ROW = re.compile(r"^\| .* \| \[(?P<key>[a-z0-9_]+)\]\(#[^)]*\) \|$", re.MULTILINE)


def _anchor(title: str) -> str:
    return re.sub(r"[^a-z0-9 -]", "", title.lower()).replace(" ", "-")


def goals_table(sections: Iterable[Section], order: Sequence[str], previous: str = "") -> str:
    """The Goals table, in the sections' order: one row per goal figure of the sections measured now, and
    the rows of sections not measured now kept from `previous`."""
    sections = list(sections)
    measured = {s.key for s in sections}
    by_key: dict[str, list[str]] = {}
    for m in _GOAL_ROW.finditer(previous):
        if m["key"] not in measured:
            by_key.setdefault(m["key"], []).append(m.group(0))
    for s in sections:
        for r in s.results:
            if r.goal:
                by_key.setdefault(s.key, []).append(
                    f"| {r.goal} ({r.target} {r.unit}) | {fmt(r.value)} {r.unit} | {r.floor or '-'} |"
                    f" {'yes' if r.ok else 'NO'} | [{s.key}](#{_anchor(s.title)}) |"
                )
    rows = [row for key in order for row in by_key.get(key, [])]
    head = ["## Goals", "", "| goal | figure | floor / ratio | met | section |", "|---|---:|---|---|---|"]
    return "\n".join([*head, *rows]) + "\n"


_MARKER = re.compile(r"^<!-- bench section: (?P<key>[a-z0-9_]+) -->$", re.MULTILINE)


def report_parts(report: str) -> dict[str, str]:
    """The parts of a report by section key: each from its `## ` heading to the next heading."""
    parts: dict[str, str] = {}
    for chunk in re.split(r"^(?=## )", report, flags=re.MULTILINE)[1:]:
        marker = _MARKER.search(chunk)
        if marker is not None:
            parts[marker["key"]] = chunk.rstrip("\n") + "\n"
    return parts


def render_report(sections: Iterable[Section], order: Sequence[str], previous: str = "") -> str:
    """The report with these sections' parts new and the other parts of `previous` kept, in `order`
    (parts of sections no longer in `order` are dropped)."""
    sections = list(sections)
    parts = report_parts(previous)
    parts.update({section.key: section.render() for section in sections})
    return (
        HEADER
        + "\n"
        + goals_table(sections, order, previous)
        + "\n"
        + parts.pop("changes", CHANGES)
        + "".join(f"\n{parts[key]}" for key in order if key in parts)
    )


def write_report(path: Path, sections: Iterable[Section], order: Sequence[str]) -> str:
    previous = path.read_text() if path.exists() else ""
    text = render_report(sections, order, previous)
    path.write_text(text)
    return text


def print_results(results: Iterable[Result]) -> None:
    for r in results:
        print(
            f"{r.name:<72} {fmt(r.value):>10} {r.unit:<8} target {r.target:<8} {'ok' if r.ok else 'MISSED'}"
        )

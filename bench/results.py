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
            lines.append(
                f"| {r.name} | {r.value:,.1f} {r.unit} | {r.target} {r.unit} | {'yes' if r.ok else 'NO'} |"
            )
        if self.notes:
            lines += ["", *[f"- {n}" for n in self.notes]]
        return "\n".join(lines) + "\n"


HEADER = """# ICEP benchmark report

Written by `make bench` (`python -m bench`, bench/__main__.py). `python -m bench <section>...` measures
only the sections named and rewrites their parts of this report, keeping the others as they were; each
part says when and on what it was measured.
"""

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
    parts = report_parts(previous)
    parts.update({section.key: section.render() for section in sections})
    return HEADER + "".join(f"\n{parts[key]}" for key in order if key in parts)


def write_report(path: Path, sections: Iterable[Section], order: Sequence[str]) -> str:
    previous = path.read_text() if path.exists() else ""
    text = render_report(sections, order, previous)
    path.write_text(text)
    return text


def print_results(results: Iterable[Result]) -> None:
    for r in results:
        print(f"{r.name:<66} {r.value:>10,.1f} {r.unit:<8} target {r.target:<8} {'ok' if r.ok else 'MISSED'}")

"""The bench report's structure (bench/results.py): rewriting some sections keeps the others, their rows of
the Goals table and the hand-written "What changed" part. No timings are measured here."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

# bench/ is a directory of the repository, not an installed package: load its report module from there.
_spec = importlib.util.spec_from_file_location(
    "bench_results", Path(__file__).resolve().parents[1] / "bench" / "results.py"
)
assert _spec is not None and _spec.loader is not None
results = importlib.util.module_from_spec(_spec)
sys.modules["bench_results"] = results  # dataclasses look their module up while the class is made
_spec.loader.exec_module(results)
CHANGES, Result, Section, render_report = (
    results.CHANGES,
    results.Result,
    results.Section,
    results.render_report,
)


def _section(key: str, value: float, ok: bool) -> Any:
    section = Section(key, f"Title {key}", "2 cores")
    section.results.append(Result(f"figure {key}", value, "ms", "<= 6", ok, goal=f"goal {key}", floor="1 ms"))
    section.results.append(Result(f"detail {key}", value, "ms", "-", True))
    return section


def test_a_rerun_of_one_section_keeps_the_others_goals_and_the_hand_written_part() -> None:
    first = render_report([_section("a", 5.5, True), _section("b", 9.5, False)], ["a", "b"])
    assert "| goal a (<= 6 ms) | 5.5 ms | 1 ms | yes | [a](#title-a) |" in first
    assert "| goal b (<= 6 ms) | 9.5 ms | 1 ms | NO | [b](#title-b) |" in first
    assert CHANGES in first
    edited = first.replace("_To be filled in:", "Batching the relay bought 3x. _To be filled in:")

    second = render_report([_section("b", 4.5, True)], ["a", "b"], edited)

    assert "| goal a (<= 6 ms) | 5.5 ms | 1 ms | yes | [a](#title-a) |" in second
    assert "| goal b (<= 6 ms) | 4.5 ms | 1 ms | yes | [b](#title-b) |" in second
    assert "9.5 ms" not in second
    assert second.count("| goal b") == 1
    assert "Batching the relay bought 3x." in second
    assert second.index("## Goals") < second.index("## What changed") < second.index("## Title a")
    assert "| detail a | 5.5 ms | - | yes |" in second

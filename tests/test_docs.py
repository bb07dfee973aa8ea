"""The written documentation: the README stays a front page, every relative link in it and under docs/
leads somewhere, and the configuration reference (docs/configuration.md) is what the settings classes
generate, with a description for every setting."""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from markdown_it import MarkdownIt
from markdown_it.token import Token
from pydantic import Field
from pydantic_settings import SettingsConfigDict

from icep.plans.settings import PlansSettings
from icep.platform.apidocs import config_reference
from icep.platform.settings import ServiceSettings

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
REFERENCE = ROOT / "docs" / "configuration.md"

#: "Fits on two screens": a browser window or terminal at an ordinary size shows about 50 lines of a
#: rendered README, so two screens are 100 lines. Counted on the Markdown source, where every blank line,
#: fence and list line counts too (rendering never makes a page longer than its source), with source lines
#: no longer than a rendered line holds, so length cannot hide in long lines.
SCREEN_LINES = 50
MAX_LINE_CHARS = 120


def test_the_readme_fits_on_two_screens() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 2 * SCREEN_LINES, (
        f"README.md has {len(lines)} lines, more than two screens ({2 * SCREEN_LINES}): move detail to docs/"
    )
    long = [n for n, line in enumerate(lines, 1) if len(line) > MAX_LINE_CHARS]
    assert not long, f"README.md lines {long} are longer than {MAX_LINE_CHARS} characters"


def test_the_readme_is_a_front_page() -> None:
    """What the front page must carry: the two commands, the quickstart, and where to read on."""
    readme = README.read_text(encoding="utf-8")
    for needed in ("make up", "make test", "## Partner quickstart", "docs/index.md", "docs/partner-guide.md"):
        assert needed in readme, f"README.md lacks {needed!r}"


# --- links -------------------------------------------------------------------------------------------

_MD = MarkdownIt("commonmark").enable("table")


def _documents() -> list[Path]:
    return [README, *sorted((ROOT / "docs").rglob("*.md"))]


def _text(heading: Token) -> str:
    return "".join(child.content for child in heading.children or [] if child.type in ("text", "code_inline"))


def slug(text: str) -> str:
    """The anchor GitHub (and most renderers) give a heading: lower case, punctuation other than `-` and
    `_` dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found: set[str] = set()
    tokens = _MD.parse(path.read_text(encoding="utf-8"))
    for opening, inline in itertools.pairwise(tokens):
        if opening.type == "heading_open":
            base = slug(_text(inline))
            name, n = base, 0
            while name in found:
                n += 1
                name = f"{base}-{n}"
            found.add(name)
    return found


def links(path: Path) -> list[str]:
    """Every link and image target of a Markdown file (code spans and blocks are not links)."""
    targets: list[str] = []

    def walk(tokens: list[Token]) -> None:
        for token in tokens:
            if token.type in ("link_open", "image"):
                attribute = "href" if token.type == "link_open" else "src"
                targets.append(str(token.attrGet(attribute)))
            if token.children:
                walk(token.children)

    walk(_MD.parse(path.read_text(encoding="utf-8")))
    return targets


def broken_links(path: Path) -> list[str]:
    broken = []
    for target in links(path):
        parts = urlsplit(target)
        if parts.scheme or parts.netloc:
            continue  # an external address: not checked (no network in tests)
        linked = (path.parent / unquote(parts.path)).resolve() if parts.path else path
        if not linked.exists():
            broken.append(f"{target} (no such file)")
        elif parts.fragment and linked.suffix == ".md" and parts.fragment not in anchors(linked):
            broken.append(f"{target} (no heading #{parts.fragment} in {linked.name})")
    return broken


@pytest.mark.parametrize("document", _documents(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_leads_to_a_file_and_heading(document: Path) -> None:
    assert broken_links(document) == []


def test_the_link_check_finds_a_missing_file_and_a_missing_heading(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Other page\n\n## Who sees what\n", encoding="utf-8")
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n[ok](other.md#who-sees-what) [self](#page) [web](https://example.org/x)\n"
        "[gone](missing.md) [no heading](other.md#nowhere) `[in code](missing-too.md)`\n\n"
        "```\n[in a block](missing-three.md)\n```\n",
        encoding="utf-8",
    )
    assert broken_links(page) == [
        "missing.md (no such file)",
        "other.md#nowhere (no heading #nowhere in other.md)",
    ]


# --- the configuration reference ---------------------------------------------------------------------


def test_the_configuration_reference_is_what_the_settings_generate() -> None:
    assert REFERENCE.exists(), "docs/configuration.md is missing: run `icep docs` and commit it"
    drift = config_reference.reference_drift(REFERENCE)
    assert not drift, (
        "docs/configuration.md has drifted from the settings classes: run `icep docs`\n" + "\n".join(drift)
    )


def test_every_setting_has_a_description() -> None:
    assert config_reference.undocumented() == [], (
        "give these settings a `#:` comment (or Field(description=...)) in their settings class"
    )


class _Extended(PlansSettings):
    """A service's settings with one setting more and one secret, as a developer might add them."""

    model_config = SettingsConfigDict(env_prefix="ICEP_PLANS_", extra="ignore")

    #: How many widgets a plan may hold.
    widget_limit: int = Field(default=7, ge=1)
    #: A password for something.
    widget_password: str = Field(default="s3cr3t-default", repr=False)


def test_a_new_setting_changes_the_reference_with_its_line() -> None:
    classes: dict[str, type[ServiceSettings]] = {**config_reference.settings_classes(), "plans": _Extended}
    text = config_reference.reference(classes)
    assert text != REFERENCE.read_text(encoding="utf-8")  # so the drift test fails until regenerated
    assert "| `ICEP_PLANS_WIDGET_LIMIT` | int (>= 1) | `7` | How many widgets a plan may hold. |" in text
    assert "| `ICEP_PLANS_WIDGET_PASSWORD` | str | (secret, redacted) | A password for something. |" in text
    assert "s3cr3t-default" not in text


class _Undocumented(PlansSettings):
    model_config = SettingsConfigDict(env_prefix="ICEP_PLANS_", extra="ignore")

    widget_limit: int = 7


def test_a_setting_without_a_description_is_named() -> None:
    assert config_reference.undocumented({"plans": _Undocumented}) == ["_Undocumented.widget_limit"]
    assert config_reference.undocumented({"plans": PlansSettings}) == []


def test_the_reference_reads_names_as_pydantic_settings_does() -> None:
    from icep.notifications.settings import NotificationsSettings

    assert config_reference.env_names(PlansSettings, "shortfall_threshold") == [
        "ICEP_PLANS_SHORTFALL_THRESHOLD"
    ]
    assert config_reference.env_names(PlansSettings, "kafka_bootstrap_servers") == ["KAFKA_BOOTSTRAP_SERVERS"]
    assert config_reference.env_names(NotificationsSettings, "feed_retention_days") == [
        "ICEP_NOTIFICATIONS_EVENT_LOG_RETENTION_DAYS",
        "ICEP_NOTIFICATIONS_FEED_RETENTION_DAYS",
    ]
    text = REFERENCE.read_text(encoding="utf-8")
    assert "| `ICEP_<SERVICE>_SECRET_KEYS` | str | not set (secret) |" in text


def test_icep_docs_check_fails_on_a_stale_reference(tmp_path: Path) -> None:
    stale = tmp_path / "configuration.md"
    stale.write_text(REFERENCE.read_text(encoding="utf-8").replace("ICEP_PLANS_SHORTFALL_THRESHOLD", "X"))
    run = subprocess.run(
        [sys.executable, "-m", "icep.platform.cli", "docs", "--check", "--config-reference", str(stale)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 1, run.stdout + run.stderr
    assert f"{stale} differs from the code" in run.stdout.replace("\n", "")
    assert "+| `ICEP_PLANS_SHORTFALL_THRESHOLD`" in run.stdout
    assert "openapi.json" not in run.stdout  # the API documents are current and not named
    assert "X" in stale.read_text(encoding="utf-8")  # checking wrote nothing

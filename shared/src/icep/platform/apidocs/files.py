"""The checked-in files: their names and folder, their canonical rendering, writing them (`icep docs`)
and finding where they drifted from the code (`icep docs --check`).
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any

from icep.platform.apidocs.asyncapi import asyncapi_document
from icep.platform.apidocs.asyncapi_html import render_asyncapi_html
from icep.platform.apidocs.openapi_merge import openapi_document
from icep.platform.apidocs.sources import Json

OPENAPI_FILE = "openapi.json"


ASYNCAPI_FILE = "asyncapi.json"

#: The AsyncAPI document as a page to read (no script): the gateway serves it at /docs/asyncapi.
ASYNCAPI_HTML_FILE = "asyncapi.html"

#: Where `icep docs` writes, relative to the repository root (the gateway serves them from there too).
DEFAULT_DIR = Path("docs/api")


def render(document: Json) -> str:
    """The checked-in form: sorted keys, two-space indent, UTF-8, a trailing newline."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def documents() -> dict[str, str]:
    """File name -> content of every generated document."""
    openapi = openapi_document()
    asyncapi = render(asyncapi_document(openapi["info"]["version"]))
    return {
        OPENAPI_FILE: render(openapi),
        ASYNCAPI_FILE: asyncapi,
        # From the file's own content (keys sorted), so the page is what asyncapi.json alone gives.
        ASYNCAPI_HTML_FILE: render_asyncapi_html(json.loads(asyncapi)),
    }


def write(directory: Path = DEFAULT_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, content in documents().items():
        path = directory / name
        path.write_text(content, encoding="utf-8")
        written.append(path)
    return written


def differences(old: Any, new: Any, where: str = "", limit: int = 20) -> list[str]:
    """Where two JSON values differ, as JSON-pointer-like paths (at most `limit` of them)."""
    found: list[str] = []

    def walk(a: Any, b: Any, at: str) -> None:
        if len(found) >= limit or a == b:
            return
        if isinstance(a, dict) and isinstance(b, dict):
            for key in sorted(set(a) | set(b)):
                child = f"{at}/{str(key).replace('~', '~0').replace('/', '~1')}"
                if key not in a:
                    found.append(f"{child} (added)")
                elif key not in b:
                    found.append(f"{child} (removed)")
                else:
                    walk(a[key], b[key], child)
                if len(found) >= limit:
                    return
        elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
            for index, (x, y) in enumerate(zip(a, b, strict=True)):
                walk(x, y, f"{at}/{index}")
        else:
            found.append(at or "/")

    walk(old, new, where)
    return found


def drift(directory: Path = DEFAULT_DIR) -> dict[str, list[str]]:
    """File name -> where the checked-in file differs from what the code generates (empty: none)."""
    drifted: dict[str, list[str]] = {}
    for name, content in documents().items():
        path = directory / name
        if not path.exists():
            drifted[name] = ["the file is missing"]
            continue
        current = path.read_text(encoding="utf-8")
        if current == content:
            continue
        if not name.endswith(".json"):
            drifted[name] = _changed_lines(current, content)
            continue
        try:
            where = differences(json.loads(current), json.loads(content))
        except ValueError:
            where = ["the file is not valid JSON"]
        drifted[name] = where or ["formatting (run `icep docs` to rewrite it)"]
    return drifted


def _changed_lines(old: str, new: str, limit: int = 20) -> list[str]:
    """Where a generated text file differs: the first changed lines of a unified diff."""
    changed = [
        line
        for line in difflib.unified_diff(old.splitlines(), new.splitlines(), n=0, lineterm="")
        if line.startswith(("-", "+", "@@")) and not line.startswith(("---", "+++"))
    ]
    return changed[:limit] or ["formatting (run `icep docs` to rewrite it)"]

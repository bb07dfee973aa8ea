"""The developer portal under `/docs`, served by the gateway alone: no page loads anything from elsewhere.

- `/docs/portal`: the landing page, linking the rest.
- `/docs`: Swagger UI on the merged OpenAPI document. Its script and stylesheet are the ones the
  `fastapi-offline` package ships, served from `/docs/assets/`; it is started by a script file of ours
  (`swagger-init.js`), not an inline script, so the portal's Content-Security-Policy can forbid inline
  scripts. Authorize gets a token from `/oauth/token` by client credentials (the document's `OAuth2`
  scheme) and keeps it in the browser's local storage (`persistAuthorization`) until Logout, where the
  capacity chart page finds it too.
- `/docs/asyncapi`: the AsyncAPI document as a page (`icep docs` writes it, see `docs`).
- `/docs/guides`: the Markdown guides (`guides_dir`: its `*.md` files and those of `operations/`),
  rendered to HTML. A guide is looked up by name among the files listed there, never by joining a path.
- `/docs/capacity`: the Alliance capacity timeline as a chart (the plans service's SVG, fetched with a
  token by `capacity.js`).

The portal's Content-Security-Policy is set by the edge (`edge.DOCS_PATHS`, `portal_content_security_policy`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import jinja2
from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from markdown_it import MarkdownIt
from markupsafe import Markup
from mdit_py_plugins.anchors import anchors_plugin

from icep.gateway.settings import GatewaySettings
from icep.platform.app import runtime_of
from icep.platform.problems import problem

router = APIRouter(include_in_schema=False)

_WEB = Path(__file__).parent / "web"
#: Swagger UI's distribution as the fastapi-offline package ships it (no CDN at run time).
_SWAGGER_UI = Path(str(files("fastapi_offline") / "static"))

#: Every file under /docs/assets: name -> (file, media type). Nothing else is served from there.
ASSETS: dict[str, tuple[Path, str]] = {
    "swagger-ui-bundle.js": (_SWAGGER_UI / "swagger-ui-bundle.js", "text/javascript; charset=utf-8"),
    "swagger-ui.css": (_SWAGGER_UI / "swagger-ui.css", "text/css; charset=utf-8"),
    "favicon.png": (_SWAGGER_UI / "favicon.png", "image/png"),
    "swagger-init.js": (_WEB / "static" / "swagger-init.js", "text/javascript; charset=utf-8"),
    "capacity.js": (_WEB / "static" / "capacity.js", "text/javascript; charset=utf-8"),
    "portal.css": (_WEB / "static" / "portal.css", "text/css; charset=utf-8"),
}
#: Assets are not versioned in their names: browsers keep them a short while only.
ASSET_CACHE_CONTROL = "public, max-age=300"

#: The folders of `guides_dir` whose Markdown files are guides (the top level, then operations).
GUIDE_FOLDERS: tuple[tuple[str, str], ...] = (("", "Guides"), ("operations", "Operations"))
_GUIDE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*\.md$")

_templates = jinja2.Environment(
    loader=jinja2.FileSystemLoader(_WEB / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)
# Guides are the repository's own Markdown: CommonMark and tables, raw HTML off (shown as text), and
# heading anchors as GitHub makes them, so the guides' `#section` links work here as they do there.
_markdown = MarkdownIt("commonmark", {"html": False}).enable("table").use(anchors_plugin, max_level=4)


@dataclass(frozen=True)
class Guide:
    #: Its path under /docs/guides/ (`visibility.md`, `operations/alerts.md`).
    name: str
    title: str
    file: Path


def _page(template: str, **values: object) -> HTMLResponse:
    html = _templates.get_template(template).render(**values)
    return HTMLResponse(html, headers={"Cache-Control": "no-cache"})


def _guides_dir(request: Request) -> Path:
    settings = runtime_of(request).settings
    return Path(settings.guides_dir if isinstance(settings, GatewaySettings) else "docs")


def _title(file: Path) -> str:
    try:
        with file.open(encoding="utf-8") as text:
            for line in text:
                if line.startswith("# "):
                    return line[2:].strip()
    except (OSError, UnicodeDecodeError):
        pass
    return file.stem.replace("-", " ").capitalize()


def list_guides(directory: Path) -> dict[str, list[Guide]]:
    """Section -> its guides, in name order: the regular `*.md` files of each folder of `GUIDE_FOLDERS`
    that lie inside `directory` (a symbolic link out of it is no guide)."""
    sections: dict[str, list[Guide]] = {}
    try:
        root = directory.resolve(strict=True)
    except OSError:
        return sections
    for folder, section in GUIDE_FOLDERS:
        where = directory / folder if folder else directory
        found = []
        for file in sorted(where.glob("*.md")):
            if not (_GUIDE_NAME.match(file.name) and file.is_file() and file.resolve().is_relative_to(root)):
                continue
            name = f"{folder}/{file.name}" if folder else file.name
            found.append(Guide(name, _title(file), file))
        if found:
            sections[section] = found
    return sections


def _guide_not_found(request: Request) -> Response:
    return problem(
        404,
        "no guide of that name: /docs/guides lists them",
        slug="guide-not-found",
        instance=request.url.path,
    )


def _serve_guide(request: Request, name: str) -> Response:
    sections = list_guides(_guides_dir(request)).values()
    guide = next((guide for section in sections for guide in section if guide.name == name), None)
    if guide is None:
        return _guide_not_found(request)
    try:
        text = guide.file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return _guide_not_found(request)
    body = Markup(_markdown.render(text))  # markdown-it escapes the text; raw HTML is off
    return _page("guide.html", title=guide.title, body=body, name=name)


@router.get("/docs")
async def swagger_ui() -> HTMLResponse:
    """Swagger UI on the merged document; Authorize gets a token by client credentials."""
    return _page("swagger.html", title="ICEP API")


@router.get("/docs/portal")
async def landing(request: Request) -> HTMLResponse:
    """The portal's front page: what is where."""
    return _page("portal.html", title="ICEP developer portal", sections=list_guides(_guides_dir(request)))


@router.get("/docs/guides")
async def guides_index(request: Request) -> HTMLResponse:
    """Every guide, by section."""
    return _page("guides.html", title="Guides", sections=list_guides(_guides_dir(request)))


@router.get("/docs/guides/{name}")
async def guide(request: Request, name: str) -> Response:
    """One guide of the top folder, rendered."""
    return _serve_guide(request, name)


@router.get("/docs/guides/{folder}/{name}")
async def nested_guide(request: Request, folder: str, name: str) -> Response:
    """One guide of a subfolder (`operations/`), rendered."""
    return _serve_guide(request, f"{folder}/{name}")


@router.get("/docs/capacity")
async def capacity_chart() -> HTMLResponse:
    """The Alliance capacity timeline as a chart (needs a token, as `/v1/capacity/timeline.svg` does)."""
    return _page("capacity.html", title="Capacity timeline")


@router.get("/docs/assets/{name}")
async def asset(request: Request, name: str) -> Response:
    """Swagger UI's files and the portal's own script and style."""
    found = ASSETS.get(name)
    if found is None:
        return problem(404, "no such portal asset", slug="asset-not-found", instance=request.url.path)
    path, media_type = found
    return FileResponse(path, media_type=media_type, headers={"Cache-Control": ASSET_CACHE_CONTROL})

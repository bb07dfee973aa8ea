"""The developer portal the gateway serves under /docs: its assets, its pages (none loads anything from
elsewhere), its Content-Security-Policy, the guides (only the Markdown files of the listed folders), and the
AsyncAPI page. A real gateway on a loopback port, over a temporary guides folder and the repository's
`docs/api`."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest

from icep.gateway.app import create_app
from icep.gateway.portal import ASSETS
from icep.gateway.settings import GatewaySettings
from icep.platform.problems import PROBLEM_MEDIA_TYPE

REPO = Path(__file__).resolve().parents[3]
API_DOCS = REPO / "docs" / "api"
API_CSP = "default-src 'none'; frame-ancestors 'none'"
#: Pages of the portal itself (the guides are listed from the guides folder).
PAGES = ("/docs", "/docs/portal", "/docs/guides", "/docs/capacity", "/docs/asyncapi")
#: The portal's own scripts and styles (Swagger UI's bundle is a vendored file, checked in the browser test).
OWN_ASSETS = ("swagger-init.js", "capacity.js", "portal.css")
#: An absolute URL or a scheme-relative one (`//host/...`): anything that names a host.
EXTERNAL = re.compile(r"""(?:https?:)?//[A-Za-z0-9.-]+""")


def _guides(root: Path) -> Path:
    (root / "operations").mkdir(parents=True)
    (root / "partner-guide.md").write_text(
        "# Partner guide\n\nSee [alerts](operations/alerts.md#firing).\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n"
        "<script>alert(1)</script>\n",
        encoding="utf-8",
    )
    (root / "operations" / "alerts.md").write_text("# Alerts\n\n## Firing\n\nText.\n", encoding="utf-8")
    (root / "notes.txt").write_text("not a guide", encoding="utf-8")
    (root / "private").mkdir()
    (root / "private" / "secret.md").write_text("# Secret\n", encoding="utf-8")
    outside = root.parent / "outside.md"
    outside.write_text("# Outside\n", encoding="utf-8")
    (root / "linked.md").symlink_to(outside)
    return root


@pytest.fixture(scope="module")
async def portal(
    module_settings: Callable[..., GatewaySettings], server: Any, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[str, GatewaySettings]]:
    guides = _guides(tmp_path_factory.mktemp("portal") / "docs")
    settings = module_settings(guides_dir=str(guides), api_docs_dir=str(API_DOCS))
    async with server(create_app(settings)) as url:
        yield url, settings


@pytest.fixture
async def get(portal: tuple[str, GatewaySettings]) -> AsyncIterator[Callable[..., Any]]:
    async with httpx.AsyncClient(base_url=portal[0], trust_env=False, timeout=10) as http:
        yield http.get


class _Resources(HTMLParser):
    """The URLs a page makes the browser load (not the links a reader may follow)."""

    def __init__(self) -> None:
        super().__init__()
        self.loaded: list[str] = []
        self.links: list[str] = []
        self.inline_scripts = 0
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "a" and values.get("href"):
            self.links.append(values["href"] or "")
        elif tag == "link" and values.get("href"):
            self.loaded.append(values["href"] or "")
        for name in ("src", "srcset", "data", "poster", "action", "formaction"):
            if values.get(name):
                self.loaded.append(values[name] or "")
        if "style" in values:
            self.loaded.append(values["style"] or "")
        self._in_script = tag == "script" and not values.get("src")

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline_scripts += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False


async def test_assets_are_served_with_their_types(get: Any) -> None:
    expected = {
        "swagger-ui-bundle.js": "text/javascript",
        "swagger-ui.css": "text/css",
        "swagger-init.js": "text/javascript",
        "capacity.js": "text/javascript",
        "portal.css": "text/css",
        "favicon.png": "image/png",
    }
    assert set(expected) == set(ASSETS)
    for name, media_type in expected.items():
        response = await get(f"/docs/assets/{name}")
        assert response.status_code == 200, name
        assert response.headers["content-type"].split(";")[0] == media_type, name
        assert response.content == ASSETS[name][0].read_bytes(), name
        assert response.headers["x-content-type-options"] == "nosniff"
    assert b"SwaggerUIBundle" in (await get("/docs/assets/swagger-ui-bundle.js")).content
    assert (await get("/docs/assets/%2e%2e/settings.py")).status_code == 400  # the edge's path guard
    unknown = await get("/docs/assets/portal.py")
    assert unknown.status_code == 404
    assert unknown.headers["content-type"] == PROBLEM_MEDIA_TYPE


async def test_no_portal_page_or_script_names_another_host(get: Any) -> None:
    index = await get("/docs/guides")
    guide_paths = sorted(set(re.findall(r'href="(/docs/guides/[^"#]+)"', index.text)))
    assert guide_paths == ["/docs/guides/operations/alerts.md", "/docs/guides/partner-guide.md"]
    for path in (*PAGES, *guide_paths):
        response = await get(path)
        assert response.status_code == 200, path
        assert response.headers["content-type"].startswith("text/html"), path
        page = _Resources()
        page.feed(response.text)
        assert page.loaded, path  # every page loads the portal's stylesheet at least
        assert not [url for url in page.loaded if EXTERNAL.search(url)], (path, page.loaded)
        assert not [url for url in page.links if EXTERNAL.match(url)], (path, page.links)
        assert page.inline_scripts == 0, path
    for name in OWN_ASSETS:
        text = (await get(f"/docs/assets/{name}")).text
        assert not EXTERNAL.search(text), name
    swagger = (await get("/docs")).text
    assert '<script src="/docs/assets/swagger-ui-bundle.js">' in swagger
    assert '<script src="/docs/assets/swagger-init.js">' in swagger
    init = (await get("/docs/assets/swagger-init.js")).text
    assert "validatorUrl: null" in init and "persistAuthorization: true" in init


async def test_the_portal_has_its_own_content_security_policy(
    portal: tuple[str, GatewaySettings], get: Any
) -> None:
    policy = portal[1].portal_content_security_policy
    assert "default-src 'self'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert not EXTERNAL.search(policy) and "*" not in policy
    for path in (*PAGES, "/docs/assets/swagger-init.js", "/openapi.json", "/asyncapi.json"):
        assert (await get(path)).headers["content-security-policy"] == policy, path
    # The API and the gateway's other endpoints keep the API's policy.
    for path in ("/v1/plans", "/.well-known/jwks.json", "/docsx"):
        assert (await get(path)).headers["content-security-policy"] == API_CSP, path


async def test_guides_render_and_only_listed_markdown_files_are_served(get: Any) -> None:
    guide = await get("/docs/guides/partner-guide.md")
    assert guide.status_code == 200
    assert "<h1" in guide.text and "Partner guide</h1>" in guide.text
    assert '<a href="operations/alerts.md#firing">' in guide.text  # relative links work as on disk
    assert "<table>" in guide.text
    assert "<script>alert" not in guide.text and "&lt;script&gt;" in guide.text  # raw HTML stays text
    nested = await get("/docs/guides/operations/alerts.md")
    assert nested.status_code == 200 and 'id="firing"' in nested.text  # anchors as GitHub makes them

    for path in (
        "/docs/guides/notes.txt",  # not Markdown
        "/docs/guides/private/secret.md",  # a folder that is not listed
        "/docs/guides/linked.md",  # a link out of the folder
        "/docs/guides/outside.md",
        "/docs/guides/api/openapi.json",
        "/docs/guides/operations/partner-guide.md",
        "/docs/guides/partner-guide",
    ):
        refused = await get(path)
        assert refused.status_code == 404, path
        assert refused.headers["content-type"] == PROBLEM_MEDIA_TYPE, path
        assert refused.json()["type"].endswith("/guide-not-found"), path
    for path in (
        "/docs/guides/%2e%2e/outside.md",
        "/docs/guides/operations/%2e%2e%2f%2e%2e%2foutside.md",
        "/docs/guides/..%5coutside.md",
    ):
        refused = await get(path)
        assert refused.status_code == 400, path
        assert refused.headers["content-type"] == PROBLEM_MEDIA_TYPE, path


async def test_the_asyncapi_page_is_the_checked_in_one(get: Any) -> None:
    page = await get("/docs/asyncapi")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.content == (API_DOCS / "asyncapi.html").read_bytes()


async def test_a_gateway_without_the_documents_says_how_to_make_them(
    make_settings: Callable[..., GatewaySettings], server: Any, tmp_path: Path
) -> None:
    settings = make_settings(api_docs_dir=str(tmp_path / "none"), guides_dir=str(tmp_path / "none"))
    async with server(create_app(settings)) as url, httpx.AsyncClient(base_url=url, trust_env=False) as http:
        page = await http.get("/docs/asyncapi")
        assert page.status_code == 503
        assert "icep docs" in page.json()["detail"]
        guides = await http.get("/docs/guides")
        assert guides.status_code == 200 and "ICEP_GATEWAY_GUIDES_DIR" in guides.text

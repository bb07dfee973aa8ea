"""The published API documents: the merged OpenAPI document and the AsyncAPI document (JSON and page).

The gateway serves the files `icep docs` generated and the repository checks in (`api_docs_dir`, default
`docs/api`), byte for byte: what a partner downloads is what was reviewed, and the gateway does not need to
import the services to describe them. No token is needed to read them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import Response

from icep.gateway.settings import GatewaySettings
from icep.platform.app import runtime_of
from icep.platform.problems import problem

router = APIRouter(include_in_schema=False)

OPENAPI_FILE = "openapi.json"
ASYNCAPI_FILE = "asyncapi.json"
ASYNCAPI_HTML_FILE = "asyncapi.html"


@dataclass(frozen=True)
class _Loaded:
    stamp: tuple[int, int]
    content: bytes


_loaded: dict[Path, _Loaded] = {}


def _document(request: Request, name: str) -> bytes | None:
    """The file's bytes, read again only when it changed (a redeploy may rewrite it in place)."""
    path = api_docs_dir(request) / name
    try:
        stat = path.stat()
        stamp = (stat.st_mtime_ns, stat.st_size)
        cached = _loaded.get(path)
        if cached is None or cached.stamp != stamp:
            cached = _Loaded(stamp, path.read_bytes())
            _loaded[path] = cached
    except OSError:
        return None
    return cached.content


def api_docs_dir(request: Request) -> Path:
    settings = runtime_of(request).settings
    return Path(settings.api_docs_dir if isinstance(settings, GatewaySettings) else "docs/api")


def _serve(request: Request, name: str, media_type: str = "application/json") -> Response:
    content = _document(request, name)
    if content is None:
        return problem(
            503,
            f"{name} is not installed on this gateway: generate it with `icep docs` "
            "(ICEP_GATEWAY_API_DOCS_DIR names the folder)",
            slug="api-document-missing",
            instance=request.url.path,
        )
    return Response(content, media_type=media_type, headers={"Cache-Control": "no-cache"})


@router.get("/openapi.json")
async def openapi_document(request: Request) -> Response:
    """Every operation partners reach through the gateway, the webhooks they receive, all errors."""
    return _serve(request, OPENAPI_FILE)


@router.get("/asyncapi.json")
async def asyncapi_document(request: Request) -> Response:
    """The Kafka topics, their event types and payloads (for event subscribers and operators)."""
    return _serve(request, ASYNCAPI_FILE)


@router.get("/docs/asyncapi")
async def asyncapi_page(request: Request) -> Response:
    """The AsyncAPI document as a page: every topic, its event types and their payloads (no script)."""
    return _serve(request, ASYNCAPI_HTML_FILE, "text/html; charset=utf-8")

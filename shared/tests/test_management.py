"""The management app beside a service's API app: what is for operators only is served there and is not
on the API app at all. (`icep serve` puts the two on separate ports of one process; tests/e2e proves that
through real processes.)"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import APIRouter, FastAPI

from icep.platform.app import Runtime, ServiceSpec, management_of, service_app
from icep.platform.settings import ServiceSettings

PROBLEM = "application/problem+json"
OPERATORS_ONLY = ("/metrics", "/docs", "/redoc", "/openapi.json")

router = APIRouter()


@router.get("/v1/things")
async def things() -> list[str]:
    return ["one"]


def _app(own_api_docs: bool = True) -> FastAPI:
    settings = ServiceSettings(service_name="demo", port=18001)
    return service_app(
        ServiceSpec(
            settings=settings, routers=[router], metadata=None, uses_kafka=False, own_api_docs=own_api_docs
        )
    )


def _client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


@pytest.fixture
async def started() -> AsyncIterator[FastAPI]:
    app = _app()
    async with app.router.lifespan_context(app):
        yield app


async def test_the_management_app_is_not_ready_before_the_service_started() -> None:
    async with _client(management_of(_app())) as management:
        ready = await management.get("/readyz")
        assert (ready.status_code, ready.json()["status"]) == (503, "starting")
        assert (await management.get("/healthz")).status_code == 200


async def test_operators_paths_are_on_the_management_app_only(started: FastAPI) -> None:
    async with _client(started) as api, _client(management_of(started)) as management:
        assert (await api.get("/v1/things")).json() == ["one"]
        for path in OPERATORS_ONLY:
            hidden = await api.get(path)
            assert hidden.status_code == 404, path
            assert hidden.headers["content-type"].startswith(PROBLEM)

        metrics = await management.get("/metrics")
        assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
        assert 'route="/v1/things"' in metrics.text and 'service="demo"' in metrics.text
        assert "/v1/things" in (await management.get("/openapi.json")).json()["paths"]
        for path in ("/docs", "/redoc"):
            page = await management.get(path)
            assert page.status_code == 200 and "/openapi.json" in page.text
        for base in (api, management):
            assert (await base.get("/healthz")).json() == {"status": "ok", "service": "demo"}
            ready = await base.get("/readyz")
            assert (ready.status_code, ready.json()["status"]) == (200, "ready")
        unknown = await management.get("/v1/things")
        assert unknown.status_code == 404 and unknown.headers["content-type"].startswith(PROBLEM)


async def test_a_service_without_its_own_documents_serves_none_on_either_app() -> None:
    app = _app(own_api_docs=False)
    async with _client(app) as api, _client(management_of(app)) as management:
        for path in ("/docs", "/redoc", "/openapi.json"):
            assert (await api.get(path)).status_code == 404
            assert (await management.get(path)).status_code == 404
        assert (await management.get("/metrics")).status_code == 200


class DemoSettings(ServiceSettings):
    demo_threshold: float = 0.25


def test_a_service_reads_its_own_settings_class_and_a_wrong_one_is_a_wiring_error() -> None:
    own = Runtime(
        spec=ServiceSpec(settings=DemoSettings(service_name="demo", port=18001), routers=[], uses_kafka=False)
    )
    assert own.settings_as(DemoSettings).demo_threshold == 0.25
    other = Runtime(spec=ServiceSpec(settings=ServiceSettings(service_name="demo", port=18001), routers=[]))
    with pytest.raises(TypeError, match="demo runs with ServiceSettings, not DemoSettings"):
        other.settings_as(DemoSettings)

"""Gateway metrics label calls by the upstream API's route template, never by the raw path."""

from __future__ import annotations

from pathlib import Path

from icep.gateway.metrics import UNMATCHED, RouteTemplates

REPO = Path(__file__).resolve().parents[3]


def test_a_path_matches_its_template_literal_segments_first() -> None:
    templates = RouteTemplates(["/v1/plans", "/v1/plans/{plan_id}", "/v1/plans/summary", "/v1/a/{x}/b"])
    assert templates.match("/v1/plans") == "/v1/plans"
    assert templates.match("/v1/plans/0190a1b2-0000-7000-8000-000000000001") == "/v1/plans/{plan_id}"
    assert templates.match("/v1/plans/summary") == "/v1/plans/summary"
    assert templates.match("/v1/a/1/b") == "/v1/a/{x}/b"
    assert templates.match("/v1/a/1/c") == UNMATCHED
    assert templates.match("/v1/plans/1/2/3") == UNMATCHED


def test_templates_come_from_the_merged_openapi_document(tmp_path: Path) -> None:
    templates = RouteTemplates.from_openapi(REPO / "docs" / "api" / "openapi.json")
    assert len(templates) > 10
    assert templates.match("/v1/plans/abc") == "/v1/plans/{plan_id}"
    assert templates.match("/v1/plans/abc/submit") == "/v1/plans/{plan_id}/submit"
    assert templates.match("/oauth/token") == UNMATCHED  # the gateway's own routes are not upstream calls
    assert len(RouteTemplates.from_openapi(tmp_path / "missing.json")) == 0

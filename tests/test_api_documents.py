"""The published API documents: generated from the code, checked in, served by the gateway, and true.

`docs/api/openapi.json` (OpenAPI 3.1, the gateway and the four services merged, webhooks included) and
`docs/api/asyncapi.json` (AsyncAPI 3, the Kafka topics) are what partners and subscribers build against.
These tests fail when the files drift from the code, when a document is not valid, when an operation
lacks what every operation must document, and when what really goes over the wire (a record on Kafka, a
webhook, the gateway's answers) does not match them.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from jsonschema import Draft7Validator, Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from schemathesis.specs.openapi.definitions import OPENAPI_31

from icep.gateway import audit as gateway_audit
from icep.gateway.routing import route
from icep.platform import apidocs
from icep.platform.openapi import SCOPES
from icep.platform.problems import PROBLEM_MEDIA_TYPE
from icep.platform.testing import WebhookReceiver, read_records, wait_for
from tests.api_documents import METHODS, resolve, schema_at, v1_operations
from tests.conftest import RunningPlatform

DOCS = Path(__file__).resolve().parents[1] / "docs" / "api"


def validator(document: dict[str, Any], pointer: str, urn: str) -> Draft202012Validator:
    """A validator for the schema at `pointer` in `document`, its `$ref`s resolved within the document."""
    resource = Resource.from_contents(document, default_specification=DRAFT202012)
    return Draft202012Validator(
        {"$ref": f"{urn}#{pointer}"},
        registry=Registry().with_resource(urn, resource),
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )


def escape(part: str) -> str:
    return part.replace("~", "~0").replace("/", "~1")


@pytest.mark.parametrize("name", [apidocs.OPENAPI_FILE, apidocs.ASYNCAPI_FILE, apidocs.ASYNCAPI_HTML_FILE])
def test_the_checked_in_documents_are_what_the_code_generates(name: str, generated: dict[str, str]) -> None:
    path = DOCS / name
    assert path.exists(), f"docs/api/{name} is missing: run `icep docs` and commit it"
    checked_in = path.read_text(encoding="utf-8")
    where = (
        apidocs.differences(json.loads(checked_in), json.loads(generated[name]))
        if name.endswith(".json")
        else apidocs.drift(DOCS).get(name)
    )
    assert checked_in == generated[name], (
        f"docs/api/{name} has drifted from the code (at {where or 'its formatting'}): run `icep docs` and "
        "commit the result"
    )


def test_icep_docs_check_names_the_drift_and_fails(tmp_path: Path, generated: dict[str, str]) -> None:
    for name, content in generated.items():
        (tmp_path / name).write_text(content, encoding="utf-8")
    stale = json.loads((tmp_path / apidocs.OPENAPI_FILE).read_text(encoding="utf-8"))
    stale["paths"]["/v1/plans"]["post"]["summary"] = "an old summary"
    (tmp_path / apidocs.OPENAPI_FILE).write_text(apidocs.render(stale), encoding="utf-8")

    run = subprocess.run(
        [sys.executable, "-m", "icep.platform.cli", "docs", "--check", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 1, run.stdout + run.stderr
    assert "openapi.json differs from the code" in run.stdout
    assert "/paths/~1v1~1plans/post/summary" in run.stdout
    assert "asyncapi.json" not in run.stdout  # the other file is current and not named
    assert "icep docs" in run.stdout
    # Checking wrote nothing.
    assert json.loads((tmp_path / apidocs.OPENAPI_FILE).read_text(encoding="utf-8")) == stale


def test_the_files_are_deterministic_sorted_and_end_with_a_newline(generated: dict[str, str]) -> None:
    for name, content in generated.items():
        assert not re.search(r"/(home|tmp|Users|work)/", content), f"{name} names a machine path"
        if name == apidocs.ASYNCAPI_HTML_FILE:
            assert content.endswith("</html>\n"), name
            assert content == apidocs.render_asyncapi_html(json.loads(generated[apidocs.ASYNCAPI_FILE]))
            continue
        assert content.endswith("}\n"), name
        assert content == apidocs.render(json.loads(content)), f"{name} is not in its canonical form"


# --- the OpenAPI document ----------------------------------------------------------------------------


def test_the_merged_document_is_valid_openapi_3_1(openapi: dict[str, Any]) -> None:
    assert openapi["openapi"] == "3.1.0"
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}"
        for e in Draft202012Validator(OPENAPI_31).iter_errors(openapi)
    ]
    assert errors == []
    for schema in openapi["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)
    assert openapi["servers"] == [{"url": "/", "description": "The gateway"}]
    # The gateway's own endpoints and every service's are in it.
    assert {"/oauth/token", "/.well-known/jwks.json", "/v1/plans", "/v1/initiatives", "/v1/standards"} <= set(
        openapi["paths"]
    )
    assert {"/v1/subscriptions", "/v1/events", "/v1/events/stream"} <= set(openapi["paths"])
    # FastAPI's own validation error shapes are gone: a 422 is problem JSON like every error.
    text = json.dumps(openapi)
    assert "HTTPValidationError" not in text and "#/components/schemas/ValidationError" not in text


def test_operation_ids_are_stable_names_and_tags_group_by_service(openapi: dict[str, Any]) -> None:
    ids = [
        operation["operationId"]
        for section in ("paths", "webhooks")
        for item in openapi[section].values()
        for method, operation in item.items()
        if method in METHODS
    ]
    assert len(ids) == len(set(ids))
    generated_looking = [i for i in ids if not re.fullmatch(r"[a-z][A-Za-z0-9]*", i)]
    assert generated_looking == [], "give these routes an explicit camelCase operation_id"
    groups = {group["name"]: group["tags"] for group in openapi["x-tagGroups"]}
    assert "plans" in groups["ICEP National Plans"] and "auth" in groups["ICEP gateway"]
    used = {t for _p, _m, op in v1_operations(openapi) for t in op.get("tags", [])}
    assert used <= {tag["name"] for tag in openapi["tags"]}


def test_every_v1_operation_is_secured_and_documents_every_error(openapi: dict[str, Any]) -> None:
    scheme = openapi["components"]["securitySchemes"]["OAuth2"]
    assert scheme["type"] == "oauth2"
    assert scheme["flows"]["clientCredentials"]["tokenUrl"] == "/oauth/token"
    assert set(scheme["flows"]["clientCredentials"]["scopes"]) == set(SCOPES)
    operations = v1_operations(openapi)
    assert len(operations) > 80
    for path, method, operation in operations:
        where = f"{method.upper()} {path}"
        [requirement] = operation["security"]
        assert set(requirement) == {"OAuth2"} and set(requirement["OAuth2"]) <= set(SCOPES), where
        responses = operation["responses"]
        expected = {"400", "401", "403", "422", "429", "500", "502", "503", "504"}
        if "{" in path:
            expected |= {"404", "405"}
        if method != "get":
            expected |= {"404", "409"}
        if "requestBody" in operation:
            expected |= {"413", "415"}
        parameters = [resolve(openapi, p) for p in operation.get("parameters", [])]
        headers = {p["name"].lower(): p for p in parameters if p["in"] == "header"}
        if "if-match" in headers:
            expected |= {"412", "428"}
        assert expected <= set(responses), f"{where} lacks {sorted(expected - set(responses))}"
        for status, declared in responses.items():
            response = resolve(openapi, declared)
            if int(status) >= 400:
                content = response["content"]
                assert list(content) == [PROBLEM_MEDIA_TYPE], f"{where} {status}"
                assert content[PROBLEM_MEDIA_TYPE]["schema"] == {"$ref": "#/components/schemas/Problem"}
        too_many = resolve(openapi, responses["429"])
        assert "Retry-After" in too_many["headers"] and "RateLimit-Remaining" in too_many["headers"], where
        assert "WWW-Authenticate" in resolve(openapi, responses["401"])["headers"], where
        if method == "post":
            key = headers.get("idempotency-key")
            assert key is not None, f"{where} does not document Idempotency-Key"
            assert key["schema"]["maxLength"] == 255 and key["required"] is False
            for status, response in responses.items():
                if status.startswith("2"):
                    assert "Idempotent-Replayed" in resolve(openapi, response)["headers"], where
        for status, response in responses.items():
            if status == "201":
                assert "Location" in response["headers"] and "ETag" in response["headers"], where
    # The feed's own 410 is problem JSON too, with the description the route gave it.
    gone = openapi["paths"]["/v1/events"]["get"]["responses"]["410"]
    assert "retention" in gone["description"] and PROBLEM_MEDIA_TYPE in gone["content"]


def test_created_resources_link_to_their_operations(openapi: dict[str, Any]) -> None:
    ids = {op["operationId"] for _p, _m, op in v1_operations(openapi)}
    created = openapi["paths"]["/v1/plans"]["post"]["responses"]["201"]
    assert created["links"]["submitPlan"]["parameters"] == {
        "plan_id": "$response.body#/id",
        "header.If-Match": "$response.header.ETag",
    }
    contract = openapi["paths"]["/v1/initiatives/{initiative_id}/contracts"]["post"]["responses"]["201"]
    assert contract["links"]["getContract"]["parameters"] == {
        "initiative_id": "$request.path.initiative_id",
        "contract_id": "$response.body#/contract_id",
    }
    for path, method, operation in v1_operations(openapi):
        for status, response in operation["responses"].items():
            for name, link in resolve(openapi, response).get("links", {}).items():
                assert link["operationId"] in ids, f"{method.upper()} {path} {status} links {name}"
                for expression in link["parameters"].values():
                    if expression.startswith("$response.body#/"):
                        schema = response["content"]["application/json"]["schema"]
                        assert schema_at(openapi, schema, expression.removeprefix("$response.body#/"))


def test_the_problem_schema_accepts_what_the_platform_answers(openapi: dict[str, Any]) -> None:
    problem = validator(openapi, "/components/schemas/Problem", "urn:openapi")
    problem.validate(
        {
            "type": "https://icep.nato.int/problems/validation",
            "title": "Unprocessable content",
            "status": 422,
            "detail": "the request does not match the schema",
            "instance": "/v1/plans",
            "errors": [{"location": "body.title", "message": "Field required", "type": "missing"}],
        }
    )
    assert not problem.is_valid({"title": "no type, status or detail"})


def test_each_path_is_documented_by_the_service_the_gateway_routes_it_to() -> None:
    # The gateway serves these /v1 paths itself, asking every service (the audit trail): each service
    # documents its own, the merged document the gateway's.
    fanned_out = {getattr(r, "path", "") for r in gateway_audit.router.routes}
    assert fanned_out == {"/v1/audit"}
    documents = apidocs.service_documents()
    assert fanned_out <= set(documents["gateway"]["paths"])
    for service, document in documents.items():
        for path in document["paths"]:
            if service == "gateway":
                assert not path.startswith("/v1/") or path in fanned_out, path
            else:
                assert route(path) == service or path in fanned_out, (
                    f"{service} documents {path}, which the gateway routes elsewhere"
                )


def test_merging_fails_loudly_on_a_clash_and_renames_clashing_schemas_apart() -> None:
    def doc(paths: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any]:
        return {
            "openapi": "3.1.0",
            "info": {"title": "t", "version": "1"},
            "paths": paths,
            "components": {"schemas": schemas},
        }

    def op(op_id: str, schema: str) -> dict[str, Any]:
        body = {"content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}}
        return {"get": {"operationId": op_id, "responses": {"200": {"description": "ok", **body}}}}

    gateway = doc({}, {})
    a = doc({"/v1/a": op("getA", "Thing")}, {"Thing": {"type": "string"}})
    b = doc({"/v1/b": op("getB", "Thing")}, {"Thing": {"type": "integer"}})
    merged = apidocs.merge_openapi(gateway, {"alpha": a, "beta": b})
    assert set(merged["components"]["schemas"]) == {"AlphaThing", "BetaThing"}
    ok = merged["paths"]["/v1/b"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/BetaThing"}

    with pytest.raises(apidocs.MergeError, match="/v1/a is documented by both alpha and beta"):
        apidocs.merge_openapi(gateway, {"alpha": a, "beta": doc({"/v1/a": op("getB", "X")}, {"X": {}})})
    with pytest.raises(apidocs.MergeError, match="operationId getA"):
        apidocs.merge_openapi(gateway, {"alpha": a, "beta": doc({"/v1/b": op("getA", "X")}, {"X": {}})})
    clashing = copy.deepcopy(b)
    clashing["components"]["parameters"] = {"P": {"name": "p", "in": "query"}}
    other = copy.deepcopy(a)
    other["components"]["parameters"] = {"P": {"name": "q", "in": "query"}}
    with pytest.raises(apidocs.MergeError, match="components/parameters/P"):
        apidocs.merge_openapi(gateway, {"alpha": other, "beta": clashing})


# --- events: webhooks and AsyncAPI ----------------------------------------------------------------------


def test_every_event_type_has_an_asyncapi_message_and_every_delivered_one_a_webhook(
    openapi: dict[str, Any], asyncapi: dict[str, Any]
) -> None:
    events = apidocs.contracts()
    assert len(events) > 50
    messages = {m["name"]: m for m in asyncapi["components"]["messages"].values()}
    delivered_topics = {"icep.plans.events", "icep.procurement.events", "icep.standards.events"}
    for event_type, model in events.items():
        message = messages[event_type]
        service = event_type.split(".")[1]
        assert resolve(asyncapi, message["payload"])["title"] == model.__name__
        channel = asyncapi["channels"][f"{service}Events"]
        assert channel["address"] == "{namespace}" + f"icep.{service}.events"
        assert any(resolve(asyncapi, m) is message for m in channel["messages"].values())
        if f"icep.{service}.events" in delivered_topics:
            hook = openapi["webhooks"][event_type]["post"]
            names = {resolve(openapi, p)["name"] for p in hook["parameters"]}
            assert {"webhook-id", "webhook-timestamp", "webhook-signature"} <= names
            schema = hook["requestBody"]["content"]["application/json"]["schema"]
            assert schema["properties"]["type"] == {"const": event_type}
            assert resolve(openapi, schema["properties"]["data"])["title"] == model.__name__
        else:
            # The notifications service's own events go to operators and the owner's systems on Kafka;
            # subscriptions deliver the other services' events only.
            assert event_type not in openapi["webhooks"]
    assert "icep.notifications.ping.v1" in openapi["webhooks"]
    assert set(openapi["webhooks"]) - set(events) == {"icep.notifications.ping.v1"}


def test_the_asyncapi_document_is_consistent(asyncapi: dict[str, Any]) -> None:
    assert asyncapi["asyncapi"] == "3.0.0"
    assert asyncapi["servers"]["kafka"] == {
        "host": "kafka:9092",
        "protocol": "kafka",
        "description": asyncapi["servers"]["kafka"]["description"],
    }
    refs: list[str] = []

    def collect(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                refs.append(node["$ref"])
            for value in node.values():
                collect(value)
        elif isinstance(node, list):
            for value in node:
                collect(value)

    collect(asyncapi)
    for ref in refs:
        resolve(asyncapi, {"$ref": ref})  # raises KeyError when a reference is dangling
    for schema in asyncapi["components"]["schemas"].values():
        Draft7Validator.check_schema(schema)  # the AsyncAPI schema format is JSON Schema draft 7
    for op_id, operation in asyncapi["operations"].items():
        assert operation["action"] in ("send", "receive"), op_id
        channel_ref = operation["channel"]["$ref"]
        # An operation's messages must be messages of its channel.
        assert all(m["$ref"].startswith(channel_ref + "/messages/") for m in operation["messages"]), op_id
    actions = {(op["channel"]["$ref"], op["action"]) for op in asyncapi["operations"].values()}
    for service in ("plans", "procurement", "standards", "notifications"):
        assert (f"#/channels/{service}Events", "send") in actions
    # Procurement and notifications consume; each has a dead-letter topic.
    assert ("#/channels/plansEvents", "receive") in actions
    assert asyncapi["channels"]["procurementDeadLetters"]["address"] == "{namespace}icep.dlq.icep-procurement"


def test_the_asyncapi_page_shows_every_channel_message_and_schema(
    asyncapi: dict[str, Any], generated: dict[str, str]
) -> None:
    page = generated[apidocs.ASYNCAPI_HTML_FILE]
    for key, channel in asyncapi["channels"].items():
        assert f'<section class="channel" id="channel-{key}">' in page, key
        assert f'<h3 class="channel-address"><code>{channel["address"]}</code></h3>' in page, key
        for ref in channel["messages"].values():
            message = resolve(asyncapi, ref)
            assert f'<code class="message-name">{message["name"]}</code>' in page, message["name"]
    for name, schema in asyncapi["components"]["schemas"].items():
        assert f'id="schema-{name}"' in page, name
        for field_name in schema.get("properties", {}):
            assert f"<code>{field_name}</code>" in page, (name, field_name)
    assert "<script" not in page  # readable without a script


def test_icep_docs_check_names_a_stale_asyncapi_page(tmp_path: Path, generated: dict[str, str]) -> None:
    for name, content in generated.items():
        (tmp_path / name).write_text(content, encoding="utf-8")
    stale = generated[apidocs.ASYNCAPI_HTML_FILE].replace("icep.plans.plan.submitted.v1", "an.old.name", 1)
    (tmp_path / apidocs.ASYNCAPI_HTML_FILE).write_text(stale, encoding="utf-8")

    assert list(apidocs.drift(tmp_path)) == [apidocs.ASYNCAPI_HTML_FILE]
    where = apidocs.drift(tmp_path)[apidocs.ASYNCAPI_HTML_FILE]
    assert any("an.old.name" in line for line in where if line.startswith("-")), where
    assert any("icep.plans.plan.submitted.v1" in line for line in where if line.startswith("+")), where


# --- through the running gateway -------------------------------------------------------------------------


async def test_the_gateway_serves_the_checked_in_documents_without_a_token(platform: RunningPlatform) -> None:
    async with httpx.AsyncClient(base_url=platform.gateway, timeout=20) as anonymous:
        for name in (apidocs.OPENAPI_FILE, apidocs.ASYNCAPI_FILE):
            response = await anonymous.get(f"/{name}")
            assert response.status_code == 200, response.text
            assert response.headers["content-type"].startswith("application/json")
            assert response.content == (DOCS / name).read_bytes()
        page = await anonymous.get("/docs/asyncapi")
        assert page.status_code == 200
        assert page.content == (DOCS / apidocs.ASYNCAPI_HTML_FILE).read_bytes()
        docs = await anonymous.get("/docs")
        assert docs.status_code == 200
        assert docs.headers["content-type"].startswith("text/html")
        assert "swagger-ui" in docs.text and "/openapi.json" in docs.text
        # The API itself still needs a token: the documents opened nothing else.
        assert (await anonymous.get("/v1/plans")).status_code == 401


async def test_what_goes_over_the_wire_matches_the_documents(
    platform: RunningPlatform,
    kafka_bootstrap: str,
    plan_body: Callable[..., dict[str, Any]],
    receiver: WebhookReceiver,
) -> None:
    openapi = json.loads((DOCS / apidocs.OPENAPI_FILE).read_text(encoding="utf-8"))
    asyncapi = json.loads((DOCS / apidocs.ASYNCAPI_FILE).read_text(encoding="utf-8"))
    created_type = "icep.plans.plan.created.v1"
    deu = await platform.as_client("deu-planner")
    try:
        subscribed = await deu.post(
            "/v1/subscriptions", json={"url": receiver.url, "event_types": [created_type]}
        )
        assert subscribed.status_code == 201, subscribed.text

        # The answers: a created plan, a validation problem, a missing token.
        created = await deu.post("/v1/plans", json=plan_body("Plan for the document test"))
        assert created.status_code == 201, created.text
        create = f"/paths/{escape('/v1/plans')}/post/responses"
        validator(openapi, f"{create}/201/content/application~1json/schema", "urn:openapi").validate(
            created.json()
        )
        assert created.headers["ETag"] and created.headers["Location"] == f"/v1/plans/{created.json()['id']}"
        invalid = await deu.post("/v1/plans", json={"title": ""})
        assert invalid.status_code == 422 and invalid.headers["content-type"] == PROBLEM_MEDIA_TYPE
        problem = validator(openapi, "/components/schemas/Problem", "urn:openapi")
        problem.validate(invalid.json())
        assert invalid.json()["errors"]
        async with httpx.AsyncClient(base_url=platform.gateway, timeout=20) as anonymous:
            unauthorized = await anonymous.post("/v1/plans", json=plan_body())
        assert unauthorized.status_code == 401 and "www-authenticate" in unauthorized.headers
        problem.validate(unauthorized.json())
        plan_id = created.json()["id"]

        # The record on Kafka: value, headers and key as the AsyncAPI message says.
        def created_record(records: list[Any]) -> Any:
            for record in records:
                headers = {k: v.decode() for k, v in record.headers}
                if headers.get("ce_type") == created_type and headers.get("ce_subject") == plan_id:
                    return record
            return None

        async def find() -> Any:
            return created_record(await read_records(kafka_bootstrap, platform.topic("icep.plans.events")))

        record = await wait_for(find, timeout=30, what="the plan's created event on Kafka")
        [message_key] = [
            key for key, m in asyncapi["components"]["messages"].items() if m["name"] == created_type
        ]
        message = f"/components/messages/{message_key}"
        validator(asyncapi, f"{message}/payload", "urn:asyncapi").validate(json.loads(record.value))
        headers = {k: v.decode() for k, v in record.headers}
        validator(asyncapi, f"{message}/headers", "urn:asyncapi").validate(headers)
        assert record.key.decode() == headers["ce_subject"] == plan_id
        # A message of another type does not pass for this one.
        assert not validator(asyncapi, f"{message}/headers", "urn:asyncapi").is_valid(
            {**headers, "ce_type": "icep.plans.plan.submitted.v1"}
        )

        # The webhook: body and Standard Webhooks headers as the OpenAPI `webhooks` entry says.
        [hook] = await wait_for(receiver.received, timeout=30, what="the webhook")
        webhook = f"/webhooks/{escape(created_type)}/post"
        validator(openapi, f"{webhook}/requestBody/content/application~1json/schema", "urn:openapi").validate(
            hook.json()
        )
        for declared in openapi["webhooks"][created_type]["post"]["parameters"]:
            parameter = resolve(openapi, declared)
            value = hook.headers.get(parameter["name"])
            if parameter["required"]:
                assert value is not None, parameter["name"]
            if value is not None:
                Draft202012Validator(parameter["schema"]).validate(value)
        assert hook.json()["id"] == headers["ce_id"] == hook.headers["webhook-id"]
    finally:
        await deu.aclose()

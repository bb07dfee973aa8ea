"""The API documents answer what integrators ask: a short summary and a description on every operation,
who reads what in each state on every tag, the defaults applied in code declared in the schemas, links
between operations that name what exists, and every event type's subject."""

from __future__ import annotations

import re
from typing import Any

from icep.platform import apidocs
from tests.api_documents import operations_by_id, resolve, schema_at


def test_every_operation_has_a_short_summary_and_a_description(openapi: dict[str, Any]) -> None:
    """Every operation (the gateway's own and the services'): a summary of at most 80 characters, and a
    description saying what the summary cannot."""
    missing = []
    for op_id, (path, method, operation) in operations_by_id(openapi).items():
        summary, description = operation.get("summary", ""), operation.get("description", "")
        if not summary.strip() or len(summary) > 80:
            missing.append(f"{method.upper()} {path} ({op_id}): summary {summary!r}")
        if len(description.split()) < 8:
            missing.append(f"{method.upper()} {path} ({op_id}): description {description!r}")
    assert not missing, "\n".join(missing)
    # The answers integrators asked for are in the descriptions of their operations.
    demand = openapi["paths"]["/v1/demand"]["get"]["description"]
    assert "larger of its indicative and firm" in demand
    assert "ICEP_PROCUREMENT_MIN_AGGREGATE_PARTICIPANTS" in demand
    verdicts = openapi["paths"]["/v1/interoperability"]["get"]["description"]
    assert "a reservation gives `not_implemented` until both nations implemented" in verdicts


def test_every_tag_says_who_reads_what(openapi: dict[str, Any]) -> None:
    """The resources' visibility per state is a table in their tags' descriptions; a draft plan is its
    owner's alone, whatever its `releasability` says."""
    tags = {t["name"]: t["description"] for t in openapi["tags"]}
    used = {tag for _p, _m, op in operations_by_id(openapi).values() for tag in op.get("tags", [])}
    assert used <= set(tags)
    tables = ("plans", "capacity", "initiatives", "suppliers", "demand", "standards", "interchangeability")
    for name in (*tables, "subscriptions"):
        header = next(line for line in tags[name].splitlines() if line.startswith("| "))
        assert "Who reads it" in header or "The whole plan" in header, name
        assert "|---|" in tags[name], name
    by_state = {line.split(" | ")[0]: line for line in tags["plans"].splitlines() if line.startswith("| `")}
    assert (
        "the owner nation only, **whatever `releasability` says**"
        in by_state["| `draft` (new, or taken back from `returned`)"]
    )
    assert "NATO staff" in by_state["| `submitted`, `under_review`, `returned`"]
    assert "`capacity_releasability`" in by_state["| `accepted`, `superseded`"]


def test_request_defaults_applied_in_code_are_declared(openapi: dict[str, Any]) -> None:
    """A request field left out gets a default: the schema says which (or that it may be null, when the
    code picks one, which its description then states)."""
    schemas = openapi["components"]["schemas"]
    assert schemas["SubscriptionCreate"]["properties"]["event_types"]["default"] == ["*"]
    assert schemas["PlanCreate"]["properties"]["releasability"]["default"] == {
        "scope": "national",
        "nations": [],
    }
    undeclared = []
    for op_id, (_path, _method, operation) in operations_by_id(openapi).items():
        content = operation.get("requestBody", {}).get("content", {}).get("application/json")
        if content is None:
            continue
        pending = [(op_id, content["schema"])]
        seen: set[str] = set()
        while pending:
            where, schema = pending.pop()
            ref = schema.get("$ref") if isinstance(schema, dict) else None
            if ref in seen:
                continue
            seen.add(str(ref))
            node = resolve(openapi, schema)
            for option in node.get("anyOf", []) + node.get("allOf", []):
                pending.append((where, option))
            if node.get("type") == "array":
                pending.append((f"{where}[]", node.get("items", {})))
            required = set(node.get("required", []))
            for name, prop in node.get("properties", {}).items():
                nullable = any(resolve(openapi, o).get("type") == "null" for o in prop.get("anyOf", []))
                if name not in required and "default" not in prop and not nullable:
                    undeclared.append(f"{where}.{name}")
                pending.append((f"{where}.{name}", prop))
    assert not undeclared, undeclared


def test_links_name_existing_operations_with_their_parameters(openapi: dict[str, Any]) -> None:
    """Every link (create -> act -> read) names an operation of the document, gives only parameters
    that operation has, takes request values from the source's own path, and the ETag where the target
    takes If-Match."""
    operations = operations_by_id(openapi)
    count = 0
    for op_id, (path, _method, operation) in operations.items():
        for status, response in operation.get("responses", {}).items():
            for name, link in resolve(openapi, response).get("links", {}).items():
                count += 1
                where = f"{op_id} {status} -> {name}"
                assert link["operationId"] in operations, where
                target_path, _m, target = operations[link["operationId"]]
                path_names = set(re.findall(r"\{([^}]+)\}", target_path))
                header_names = {
                    f"header.{p['name']}"
                    for p in (resolve(openapi, p) for p in target.get("parameters", []))
                    if p.get("in") == "header"
                }
                assert set(link["parameters"]) <= path_names | header_names, where
                for expression in link["parameters"].values():
                    if expression.startswith("$request.path."):
                        assert "{" + expression.removeprefix("$request.path.") + "}" in path, where
                    elif expression.startswith("$response.body#/"):
                        schema = response["content"]["application/json"]["schema"]
                        assert schema_at(openapi, schema, expression.removeprefix("$response.body#/")), where
                    else:
                        assert expression == "$response.header.ETag", where
    assert count > 100
    # The chains the stateful fuzzer follows: a created plan is submitted with its ETag, then reviewed.
    created = openapi["paths"]["/v1/plans"]["post"]["responses"]["201"]["links"]
    assert created["submitPlan"]["parameters"] == {
        "plan_id": "$response.body#/id",
        "header.If-Match": "$response.header.ETag",
    }
    submitted = openapi["paths"]["/v1/plans/{plan_id}/submit"]["post"]["responses"]["200"]["links"]
    assert submitted["startReview"]["parameters"]["plan_id"] == "$request.path.plan_id"
    answers = openapi["paths"]["/v1/standards/{standard_id}/responses"]["get"]["responses"]["200"]["links"]
    assert answers["getResponse"]["parameters"]["nation"] == "$response.body#/items/0/nation"


def test_every_event_type_states_its_subject(openapi: dict[str, Any], asyncapi: dict[str, Any]) -> None:
    """Each event type's subject (`ce_subject`, the record key, the envelope's `subject`) is declared by its
    contract, made of its payload's fields, stated in the AsyncAPI message and the webhook, and readable
    at a documented path whose parameters are those fields; an answer's is `<standard_id>:<nation>`."""
    messages = asyncapi["components"]["messages"]
    for event_type, model in apidocs.contracts().items():
        subject = model.subject
        assert subject.fields and set(subject.fields) <= set(model.model_fields), event_type
        stated = subject.describe(model.aggregate)
        message = messages[model.__name__]
        assert stated in message["description"], event_type
        assert stated in message["bindings"]["kafka"]["key"]["description"], event_type
        assert subject.read_at in openapi["paths"], event_type
        assert set(re.findall(r"\{([^}]+)\}", subject.read_at)) == set(subject.fields), event_type
        if event_type in openapi.get("webhooks", {}):
            assert stated in openapi["webhooks"][event_type]["post"]["description"], event_type
        example = {name: f"<{name}>" for name in subject.fields}
        if model.aggregate == "response":
            assert subject.of(example) == "<standard_id>:<nation>", event_type
        else:
            assert subject.of(example) == f"<{subject.fields[0]}>", event_type
    envelope = openapi["components"]["schemas"]["EventEnvelope"]["properties"]["subject"]["description"]
    assert "<standard_id>:<nation>" in envelope

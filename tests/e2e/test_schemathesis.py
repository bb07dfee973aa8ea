"""Fuzzing: schemathesis drives every operation of the merged OpenAPI document through the gateway.

The platform runs as `icep up` runs it, on real Kafka and a real database. The caller is a DEU client that
holds every role, so the generated requests reach the use cases (not just the role checks). The run fails
on any 5xx and on any response that does not match the document (status code, content type, body
schema), so the document and the services must agree.

The stateful phase follows the document's OpenAPI links (create -> act -> read): it creates a resource,
then acts on it with the id and the `ETag` the answer gave, which random ids never reach. The test checks
from the run's NDJSON report that it did: a call through a declared link, with a created id, succeeded.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from icep.gateway.clients import hash_secret
from tests.conftest import StartPlatform

FUZZER_ID = "deu-fuzzer"
FUZZER_SECRET = "deu-fuzzer-test-secret"

#: An id the platform made (UUIDv7), as it appears in a path.
ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}")

#: What schemathesis checks on every response.
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


def _clients_file(directory: Path) -> Path:
    path = directory / "fuzz-clients.toml"
    path.write_text(
        "[[client]]\n"
        f'client_id = "{FUZZER_ID}"\n'
        f'secret_hash = "{hash_secret(FUZZER_SECRET)}"\n'
        'nation = "DEU"\n'
        'roles = ["planner", "procurement", "standards", "subscriber", "operator"]\n'
        'scopes = ["read", "write"]\n'
        'rate_tier = "standard"\n',
        encoding="utf-8",
    )
    return path


def _config_file(directory: Path) -> Path:
    """The stateful phase's own settings: the document's declared links only (schemathesis would otherwise
    infer a thousand more from parameter names, and start most scenarios on an action with a random id),
    scenarios of valid requests (a resource must be created before a link can lead anywhere), enough of
    them to walk create -> act -> read, and no more (CI time)."""
    path = directory / "schemathesis.toml"
    path.write_text(
        "[phases.stateful]\n"
        f"max-steps = {os.environ.get('ICEP_FUZZ_STATEFUL_STEPS', '10')}\n"
        "[phases.stateful.inference]\n"
        "algorithms = []\n"
        "[phases.stateful.generation]\n"
        'mode = "positive"\n'
        f"max-examples = {os.environ.get('ICEP_FUZZ_STATEFUL_SCENARIOS', '40')}\n",
        encoding="utf-8",
    )
    return path


@pytest.mark.timeout(900)
async def test_the_merged_document_survives_fuzzing_through_the_gateway(
    kafka_bootstrap: str, start_platform: StartPlatform, tmp_path: Path
) -> None:
    platform = await start_platform(
        kafka_bootstrap,
        extra_env={
            "ICEP_GATEWAY_CLIENTS_FILE": str(_clients_file(tmp_path)),
            # One token for the whole run, and a budget no fuzzing run reaches.
            "ICEP_GATEWAY_TOKEN_TTL_SECONDS": "3600",
            "ICEP_GATEWAY_RATE_LIMITS": '{"standard": "100000/minute"}',
            # Generated endpoints name hosts anywhere: webhooks (and pings) go only to the documented
            # example's host and `partner.test`, both this machine; any other host is a 422 when
            # subscribing and is never looked up or called.
            "ICEP_NOTIFICATIONS_STATIC_HOSTS": json.dumps(
                {"partner.test": "127.0.0.1", "partner.example": "127.0.0.1"}
            ),
            "ICEP_NOTIFICATIONS_ALLOWED_HOSTS": "[]",
        },
    )
    response = await platform.http.post(
        f"{platform.gateway}/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(FUZZER_ID, FUZZER_SECRET),
    )
    assert response.status_code == 200, response.text
    token = response.json()["access_token"]

    document = f"{platform.gateway}/openapi.json"
    events = tmp_path / "schemathesis-events.ndjson"
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(_config_file(tmp_path)),
        "run",
        document,
        "--url",
        platform.gateway,
        "--header",
        f"Authorization: Bearer {token}",
        "--checks",
        CHECKS,
        # The documented examples first, then generated requests (valid and invalid) for every operation,
        # then scenarios along the links. ICEP_FUZZ_PHASES=examples,coverage,fuzzing,stateful adds the
        # boundary-value phase (about 7000 requests).
        "--phases",
        os.environ.get("ICEP_FUZZ_PHASES", "examples,fuzzing,stateful"),
        "--max-examples",
        os.environ.get("ICEP_FUZZ_MAX_EXAMPLES", "10"),
        "--seed",
        os.environ.get("ICEP_FUZZ_SEED", "7"),
        "--workers",
        "2",
        "--generation-database",
        "none",
        "--request-timeout",
        "20",
        "--no-color",
        "--report",
        "junit,ndjson",
        "--report-junit-path",
        str(tmp_path / "schemathesis-junit.xml"),
        "--report-ndjson-path",
        str(events),
        "--output-truncate",
        "false",
    ]
    process = await asyncio.create_subprocess_exec(
        *command, cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        stdout, _ = await asyncio.wait_for(process.communicate(), timeout=840)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    output = stdout.decode("utf-8", "replace")
    assert process.returncode == 0, output[-20000:]
    # The run really exercised every operation of the document, not a subset.
    operations = sum(
        1
        for item in (await platform.http.get(document)).json()["paths"].values()
        for method in item
        if method in {"get", "put", "post", "patch", "delete"}
    )
    assert operations > 90
    assert f"Tested: {operations}" in output, output[-3000:]
    if "stateful" in command[command.index("--phases") + 1]:
        deep = linked_calls(events)
        # Through declared links, a created resource was acted on or read with its own id: e.g.
        # POST /v1/plans -> POST /v1/plans/{id}/submit (If-Match: the ETag) -> GET /v1/plans/{id}.
        succeeded = {(method, template) for method, template, status in deep if 200 <= status < 300}
        assert any(template.count("/") >= 3 for _m, template in succeeded), (
            sorted(set(deep)),
            output[-3000:],
        )


def linked_calls(report: Path) -> list[tuple[str, str, int]]:
    """(method, path with the ids replaced by `{id}`, status) of every request the stateful phase made
    through a declared (not inferred) link, from schemathesis' NDJSON report."""
    found = []
    for line in report.read_text(encoding="utf-8").splitlines():
        scenario = json.loads(line).get("ScenarioFinished")
        if not scenario or "stateful" not in str(scenario.get("phase", "")).lower():
            continue
        recorder = scenario.get("recorder", {})
        interactions = recorder.get("interactions", {})
        for case_id, node in recorder.get("cases", {}).items():
            transition = node.get("transition")
            interaction = interactions.get(case_id)
            if not transition or transition.get("is_inferred") or not interaction:
                continue
            response = interaction.get("response") or {}
            request = interaction.get("request") or {}
            path = urlsplit(str(request.get("uri", request.get("url", "")))).path
            template = "/".join("{id}" if ID.fullmatch(part) else part for part in path.split("/"))
            found.append(
                (str(request.get("method", "")).upper(), template, int(response.get("status_code", 0)))
            )
    return found

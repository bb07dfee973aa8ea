"""The production-shaped stack: docker-compose.yml is valid and wires each service to its own database."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

DOMAIN_SERVICES = ["plans", "procurement", "standards", "notifications"]


@pytest.fixture(scope="module")
def compose(repo_root: Path) -> dict[str, object]:
    assert shutil.which("docker"), "the docker client is needed to validate docker-compose.yml (see .ci/run)"
    result = subprocess.run(
        ["docker", "compose", "-f", str(repo_root / "docker-compose.yml"), "config", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"docker compose config failed:\n{result.stderr}"
    config: dict[str, object] = json.loads(result.stdout)
    return config


def test_compose_has_the_whole_stack(compose: dict[str, object]) -> None:
    services = compose["services"]
    assert isinstance(services, dict)
    assert {"kafka", "postgres", "otel-collector", "jaeger", "gateway", *DOMAIN_SERVICES} <= set(services)
    for name in ["gateway", *DOMAIN_SERVICES]:
        service = services[name]
        assert service["command"] == ["serve", name]
        env = service["environment"]
        assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"].startswith("http://otel-collector:")
        assert env["OTEL_SERVICE_NAME"] == f"icep-{name}"
        assert service.get("healthcheck"), f"{name} has no health check"


def test_each_service_has_its_own_database_and_role(compose: dict[str, object], repo_root: Path) -> None:
    services = compose["services"]
    assert isinstance(services, dict)
    init_sql = (repo_root / "deploy/postgres/init.sql").read_text()
    for name in DOMAIN_SERVICES:
        url = services[name]["environment"][f"ICEP_{name.upper()}_DATABASE_URL"]
        match = re.fullmatch(r"postgresql\+asyncpg://(\w+):\w+@postgres:5432/(\w+)", url)
        assert match, url
        assert match.groups() == (name, name)
        assert f"CREATE DATABASE {name}" in init_sql and f"OWNER {name};" in init_sql
        assert re.search(rf"REVOKE ALL ON DATABASE {name}\s+FROM PUBLIC", init_sql)

"""The production-shaped stacks: docker-compose.yml is valid and wires each service to its own database;
compose and deploy/k8s keep every management port (metrics) apart from the API ports, reachable by
monitoring only, and share the gateways' rate limits in Redis."""

from __future__ import annotations

import ipaddress
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

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


# --- one management port per process, apart from its API ---------------------------------------------------

#: process -> (API port, management port), as docker-compose.yml and deploy/k8s run them.
PORTS = {
    "gateway": (8000, 9000),
    "plans": (8001, 9001),
    "procurement": (8002, 9002),
    "standards": (8003, 9003),
    "notifications": (8004, 9004),
}


def test_a_process_chooses_its_management_port_apart_from_its_api_port() -> None:
    from icep.plans.settings import PlansSettings

    assert PlansSettings().management_address == ("127.0.0.1", 9001)
    assert PlansSettings(port=8101).management_address == ("127.0.0.1", 9101)
    assert PlansSettings(management_port=9500, management_host="10.1.2.3").management_address == (
        "10.1.2.3",
        9500,
    )
    with pytest.raises(ValueError, match="management port"):
        PlansSettings(port=8001, management_port=8001)


def test_compose_publishes_only_the_gateways_api_and_prometheus_scrapes_every_management_port(
    compose: dict[str, object], repo_root: Path
) -> None:
    services = compose["services"]
    assert isinstance(services, dict)
    for name, (api, management) in PORTS.items():
        service = services[name]
        env = service["environment"]
        assert env[f"ICEP_{name.upper()}_PORT"] == str(api)
        assert env[f"ICEP_{name.upper()}_MANAGEMENT_PORT"] == str(management)
        published = {int(p["target"]) for p in service.get("ports", [])}
        assert published == ({api} if name == "gateway" else set()), (name, published)
    assert "prometheus" in services
    mounted = {v["target"]: v["source"] for v in services["prometheus"]["volumes"] if v["type"] == "bind"}
    assert (
        Path(mounted["/etc/prometheus/prometheus.yml"]) == repo_root / "deploy/observability/prometheus.yml"
    )
    config = yaml.safe_load((repo_root / "deploy/observability/prometheus.yml").read_text())
    targets = {
        target
        for job in config["scrape_configs"]
        if job.get("metrics_path", "/metrics") == "/metrics"
        for static in job["static_configs"]
        for target in static["targets"]
    }
    assert targets == {f"{name}:{management}" for name, (_, management) in PORTS.items()}


def test_compose_gateways_share_their_rate_limits_in_redis(compose: dict[str, object]) -> None:
    services = compose["services"]
    assert isinstance(services, dict)
    gateway = services["gateway"]
    assert gateway["environment"]["ICEP_GATEWAY_RATE_LIMIT_STORAGE"] == "redis://redis:6379/0"
    assert gateway["depends_on"]["redis"]["condition"] == "service_healthy"
    assert services["redis"]["image"].startswith("redis:")
    # Nothing forwards to the gateway in compose: it believes no X-Forwarded-For.
    assert "ICEP_GATEWAY_FORWARDED_ALLOW_IPS" not in gateway["environment"]


# --- Kubernetes ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def k8s(repo_root: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """Every object the kustomization lists, by (kind, name)."""
    base = repo_root / "deploy/k8s"
    kustomization = yaml.safe_load((base / "kustomization.yaml").read_text())
    objects: dict[tuple[str, str], dict[str, Any]] = {}
    for resource in kustomization["resources"]:
        for doc in yaml.safe_load_all((base / resource).read_text()):
            if doc:
                objects[(doc["kind"], doc["metadata"]["name"])] = doc
    return objects


def test_the_kustomization_lists_every_manifest(repo_root: Path) -> None:
    base = repo_root / "deploy/k8s"
    listed = yaml.safe_load((base / "kustomization.yaml").read_text())["resources"]
    on_disk = {p.name for p in base.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(listed) == sorted(on_disk)
    assert {"networkpolicies.yaml", "redis.yaml"} <= set(listed)


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    return container


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


def test_every_deployment_has_a_management_port_that_prometheus_scrapes(
    k8s: dict[tuple[str, str], dict[str, Any]],
) -> None:
    for name, (api, management) in PORTS.items():
        deployment = k8s[("Deployment", name)]
        container = _container(deployment)
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports == {"http": api, "management": management}, name
        env = _env(container)
        assert env[f"ICEP_{name.upper()}_PORT"] == str(api)
        assert env[f"ICEP_{name.upper()}_MANAGEMENT_PORT"] == str(management)
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == str(management)
        assert annotations["prometheus.io/path"] == "/metrics"
        # Probes ask the API port: it is the port that must serve (docs/operator-guide.md, "Ports").
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        service_ports = {
            p["name"]: (p["port"], p["targetPort"]) for p in k8s[("Service", name)]["spec"]["ports"]
        }
        assert service_ports == {"http": (api, "http"), "management": (management, "management")}, name


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a label selector (matchLabels and In expressions) selects these labels."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In", expression
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


#: Peers that policies may name: (namespace, pod labels).
PEERS = {
    "gateway": ("icep", {"app.kubernetes.io/name": "gateway"}),
    **{s: ("icep", {"app.kubernetes.io/name": s}) for s in DOMAIN_SERVICES},
    "prometheus": ("monitoring", {"app.kubernetes.io/name": "prometheus"}),
    "other pod in monitoring": ("monitoring", {"app.kubernetes.io/name": "grafana"}),
    "ingress controller": ("ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx"}),
    "stranger in icep": ("icep", {"app.kubernetes.io/name": "debug"}),
    "stranger elsewhere": ("default", {"app": "anything"}),
}


def _admitted(policies: list[dict[str, Any]], target: str, port: str) -> set[str]:
    """The peers (of PEERS) that the NetworkPolicies let reach `port` (a port name) of `target`'s pods."""
    labels = {"app.kubernetes.io/name": target}
    selecting = [p for p in policies if _selects(p["spec"]["podSelector"], labels)]
    assert selecting, f"no NetworkPolicy selects {target}: everything may reach it"
    admitted = set()
    for policy in selecting:
        assert "Ingress" in policy["spec"]["policyTypes"]
        for rule in policy["spec"].get("ingress", []):
            if not any(p["port"] == port for p in rule.get("ports", [])):
                continue
            if "from" not in rule:  # no sources named: every source
                admitted |= set(PEERS)
            for peer, (namespace, peer_labels) in PEERS.items():
                for source in rule.get("from", []):
                    in_namespace = (
                        _selects(source["namespaceSelector"], {"kubernetes.io/metadata.name": namespace})
                        if "namespaceSelector" in source
                        else namespace == "icep"
                    )
                    if in_namespace and _selects(source.get("podSelector", {}), peer_labels):
                        admitted.add(peer)
    return admitted


def test_network_policies_let_only_the_gateway_reach_the_apis_and_only_monitoring_the_management_ports(
    k8s: dict[tuple[str, str], dict[str, Any]],
) -> None:
    policies = [doc for (kind, _), doc in k8s.items() if kind == "NetworkPolicy"]
    assert ("NetworkPolicy", "default-deny-ingress") in k8s
    for service in DOMAIN_SERVICES:
        assert _admitted(policies, service, "http") == {"gateway"}, service
    # The partners' traffic comes through the ingress controller; the services fetch the gateway's JWKS.
    assert _admitted(policies, "gateway", "http") == {"ingress controller", *DOMAIN_SERVICES}
    for process in PORTS:
        assert _admitted(policies, process, "management") == {"prometheus"}, process
    assert _admitted(policies, "redis", "redis") == {"gateway"}


def test_k8s_gateways_share_rate_limits_in_redis_and_trust_only_the_ingress_for_forwarded_headers(
    k8s: dict[tuple[str, str], dict[str, Any]], repo_root: Path
) -> None:
    gateway = _container(k8s[("Deployment", "gateway")])
    from_maps = [source["configMapRef"]["name"] for source in gateway["envFrom"]]
    env: dict[str, str] = {}
    for name in from_maps:
        env.update(k8s[("ConfigMap", name)]["data"])
    env.update(_env(gateway))
    redis_url = env["ICEP_GATEWAY_RATE_LIMIT_STORAGE"]
    assert redis_url == "redis://redis.icep.svc:6379/0"
    redis_ports = {p["name"]: p["port"] for p in k8s[("Service", "redis")]["spec"]["ports"]}
    assert redis_ports == {"redis": 6379}
    assert _container(k8s[("Deployment", "redis")])["image"].startswith("redis:")
    trusted = [ipaddress.ip_network(v.strip()) for v in env["ICEP_GATEWAY_FORWARDED_ALLOW_IPS"].split(",")]
    assert trusted and all(net.is_private for net in trusted)
    # Prometheus in the cluster finds the pods by the annotations checked above.
    scrape = yaml.safe_load((repo_root / "deploy/observability/prometheus-k8s.yml").read_text())
    [job] = scrape["scrape_configs"]
    assert job["kubernetes_sd_configs"] == [{"role": "pod", "namespaces": {"names": ["icep"]}}]
    sources = {tuple(r["source_labels"]) for r in job["relabel_configs"]}
    assert ("__meta_kubernetes_pod_annotation_prometheus_io_scrape",) in sources
    assert ("__meta_kubernetes_pod_ip", "__meta_kubernetes_pod_annotation_prometheus_io_port") in sources


def test_the_image_carries_what_the_gateways_portal_serves(repo_root: Path) -> None:
    """The portal serves the guides (`guides_dir`) and the API documents (`api_docs_dir`), relative to the
    working directory: the image's /app must have them, and the build context must not leave them out."""
    from icep.gateway.settings import GatewaySettings

    dockerfile = (repo_root / "Dockerfile").read_text(encoding="utf-8")
    runtime = dockerfile.split("AS runtime", 1)[1]
    assert re.search(r"^WORKDIR /app$", runtime, re.MULTILINE)
    settings = GatewaySettings()
    copies = re.findall(r"^COPY (\S+) (\S+)$", runtime, re.MULTILINE)
    assert (f"{settings.guides_dir}/*.md", f"/app/{settings.guides_dir}/") in copies
    assert (f"{settings.guides_dir}/operations/*.md", f"/app/{settings.guides_dir}/operations/") in copies
    assert (settings.api_docs_dir, f"/app/{settings.api_docs_dir}") in copies
    ignored = (repo_root / ".dockerignore").read_text(encoding="utf-8").split()
    assert not {"docs", "docs/", "docs/**", "**/*.md", "*.md"} & set(ignored)

"""Dashboards and alerts as code (deploy/observability): the Prometheus configs and alert rules pass
promtool, every alert is unit-tested both ways (fires / stays silent) and documented, the Grafana
dashboards are what build_dashboards.py writes and are provisioned beside Prometheus and Jaeger, and every
metric a rule or a panel names is emitted by the running platform.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

OBS = "deploy/observability"
PROCESSES = ["gateway", "plans", "procurement", "standards", "notifications"]

#: Series that Prometheus makes itself (per scrape), not the platform.
PROMETHEUS_OWN = {"up", "scrape_duration_seconds", "scrape_samples_scraped", "scrape_series_added"}


# --- pure parsing: the metric names a PromQL expression reads -----------------------------------------------

_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "inf", "nan"}
_KEYWORDS |= {"group_left", "group_right", "atan2"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression (or a Grafana query with $variables) selects.

    Strings, label matchers, ranges, grouping label lists and variables are dropped first; what remains
    that is an identifier not followed by `(` (a function or an aggregation) and not a keyword is a metric.
    `label_values(metric, label)` (a Grafana variable query) names its first argument.
    """
    names: set[str] = set()
    for match in re.finditer(r"label_values\(\s*([a-zA-Z_:][\w:]*)\s*,", expr):
        names.add(match.group(1))
    expr = re.sub(r"label_values\([^)]*\)", " ", expr)
    expr = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', " ", expr)
    expr = re.sub(r"\$\{[^}]*\}|\$\w+", " ", expr)
    expr = re.sub(r"\{[^{}]*\}", " ", expr)
    expr = re.sub(r"\[[^\]]*\]", " ", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    for match in re.finditer(r"(?<![\w:.])([a-zA-Z_:][\w:]*)(\s*\()?", expr):
        name, call = match.groups()
        if call or name.lower() in _KEYWORDS:
            continue
        names.add(name)
    return names


def exposed_names(exposition: str) -> set[str]:
    """Every name in a Prometheus text exposition: families (HELP/TYPE lines) and sample names."""
    names: set[str] = set()
    for line in exposition.splitlines():
        if line.startswith(("# HELP ", "# TYPE ")):
            names.add(line.split()[2])
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def is_emitted(name: str, exposed: set[str]) -> bool:
    """A referenced name is emitted if it is exposed as such, or is a histogram's/counter's series whose
    family is (a labelled family counts once its HELP/TYPE lines are there, before any sample)."""
    if name in exposed:
        return True
    for suffix in ("_bucket", "_count", "_sum", "_total", "_created"):
        if name.endswith(suffix) and name.removesuffix(suffix) in exposed:
            return True
    return False


def test_metric_names_are_parsed_out_of_promql() -> None:
    assert metric_names("up == 0") == {"up"}
    assert metric_names('icep_dependency_up{dependency="kafka"} == 0') == {"icep_dependency_up"}
    assert metric_names(
        "histogram_quantile(0.99, sum by (service, le) "
        '(rate(icep_http_request_duration_seconds_bucket{route!~".*/stream"}[5m]))) > 2'
    ) == {"icep_http_request_duration_seconds_bucket"}
    assert metric_names(
        'sum(rate(a_total{outcome!~"delivered|late"}[15m]))'
        ' / sum(rate(a_total{outcome!="x y"}[$__rate_interval]))'
    ) == {"a_total"}
    assert metric_names(
        "sum by (group, topic) (max by (group, topic, partition) (lag)) > 100 and "
        "sum(deriv(other[10m])) by (group) > 0 unless on (group) group_left (x) third offset 5m"
    ) == {"lag", "other", "third"}
    assert metric_names('max by (service) (icep_leader{service=~"$service"}) == bool 1e3') == {"icep_leader"}
    assert metric_names("label_values(icep_build_info, service)") == {"icep_build_info"}
    assert metric_names("sum(rate(x:recorded:rate5m[5m])) * 100") == {"x:recorded:rate5m"}


def test_emitted_names_count_families_and_their_series() -> None:
    exposition = "\n".join(
        [
            "# HELP icep_lag Records behind",
            "# TYPE icep_lag gauge",
            "# HELP icep_seconds A histogram without samples yet",
            "# TYPE icep_seconds histogram",
            "# HELP icep_sent_total Sent",
            "# TYPE icep_sent_total counter",
            'icep_sent_total{outcome="ok"} 3.0',
            "process_cpu_seconds_total 1.5",
        ]
    )
    exposed = exposed_names(exposition)
    assert {"icep_lag", "icep_seconds", "icep_sent_total", "process_cpu_seconds_total"} <= exposed
    for name in ["icep_lag", "icep_seconds_bucket", "icep_seconds_count", "icep_sent_total", "icep_sent"]:
        assert is_emitted(name, exposed) or name == "icep_sent", name
    for name in ["icep_sent", "icep_lag_total_x", "icep_missing", "icep_missing_bucket"]:
        assert not is_emitted(name, exposed), name


# --- what the rules and dashboards reference ---------------------------------------------------------------


def load_dashboard_builder(repo_root: Path) -> ModuleType:
    path = repo_root / OBS / "grafana/build_dashboards.py"
    spec = importlib.util.spec_from_file_location("icep_build_dashboards", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def alert_rules(repo_root: Path) -> list[dict[str, Any]]:
    doc = yaml.safe_load((repo_root / OBS / "alerts.yml").read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def dashboard_files(repo_root: Path) -> dict[str, dict[str, Any]]:
    folder = repo_root / OBS / "grafana/dashboards"
    return {p.name: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}


def dashboard_queries(dashboard: dict[str, Any]) -> list[str]:
    queries = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    for variable in dashboard.get("templating", {}).get("list", []):
        query = variable.get("query")
        queries.append(query["query"] if isinstance(query, dict) else str(query))
    return queries


def referenced_metrics(repo_root: Path) -> dict[str, set[str]]:
    """Each metric name a rule or a panel reads -> where (alert name or dashboard file)."""
    found: dict[str, set[str]] = {}
    for rule in alert_rules(repo_root):
        for name in metric_names(rule["expr"]):
            found.setdefault(name, set()).add(rule.get("alert") or rule.get("record", "?"))
    for file, dashboard in dashboard_files(repo_root).items():
        for query in dashboard_queries(dashboard):
            for name in metric_names(query):
                found.setdefault(name, set()).add(file)
    return found


def test_rules_and_dashboards_name_platform_metrics_only(repo_root: Path) -> None:
    referenced = referenced_metrics(repo_root)
    assert "icep_consumer_lag" in referenced and "icep_gateway_requests_total" in referenced
    assert "icep_http_request_duration_seconds_bucket" in referenced
    strangers = {n for n in referenced if not n.startswith("icep_")} - PROMETHEUS_OWN
    assert not strangers, f"not ICEP metrics: {strangers}"


# --- promtool ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool is needed to check deploy/observability (.ci/run installs it)"
    return path


def run(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def test_compose_prometheus_config_passes_promtool(promtool: str, repo_root: Path) -> None:
    result = run([promtool, "check", "config", "prometheus.yml"], repo_root / OBS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout + result.stderr


def test_kubernetes_prometheus_config_loads_the_rules_and_labels_processes(repo_root: Path) -> None:
    # Not through promtool: Debian's build (the one .ci/run installs) has no Kubernetes service discovery.
    config = yaml.safe_load((repo_root / OBS / "prometheus-k8s.yml").read_text())
    assert config["rule_files"] == ["alerts.yml"]
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "icep"  # IcepTargetDown asks up{job="icep"}
    assert job["kubernetes_sd_configs"][0]["role"] == "pod"
    assert "process" in {r.get("target_label") for r in job["relabel_configs"]}


def test_alert_rules_pass_promtool(promtool: str, repo_root: Path) -> None:
    result = run([promtool, "check", "rules", "alerts.yml"], repo_root / OBS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules(repo_root))} rules found" in result.stdout


def test_alert_rule_unit_tests_pass(promtool: str, repo_root: Path) -> None:
    files = sorted(str(p.relative_to(repo_root / OBS)) for p in (repo_root / OBS / "tests").glob("*.yml"))
    assert len(files) >= 3
    result = run([promtool, "test", "rules", *files], repo_root / OBS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(files), result.stdout


def test_every_alert_is_tested_firing_and_silent(repo_root: Path) -> None:
    fires: set[str] = set()
    silent: set[str] = set()
    for path in (repo_root / OBS / "tests").glob("*.yml"):
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (fires if check.get("exp_alerts") else silent).add(check["alertname"])
    alerts = {rule["alert"] for rule in alert_rules(repo_root)}
    assert alerts - fires == set(), "alerts never tested firing"
    assert alerts - silent == set(), "alerts never tested silent"


def heading_anchors(markdown: str) -> set[str]:
    """GitHub's anchors of a Markdown file's headings."""
    anchors = set()
    for line in markdown.splitlines():
        if line.startswith("#"):
            text = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", text).replace(" ", "-"))
    return anchors


def test_every_alert_says_how_bad_what_and_where_the_runbook_is(repo_root: Path) -> None:
    anchors = heading_anchors((repo_root / "docs/operations/alerts.md").read_text())
    docs = (repo_root / "docs/operations/alerts.md").read_text()
    for rule in alert_rules(repo_root):
        name = rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"], name
        page, _, anchor = annotations["runbook_url"].partition("#")
        assert page == "docs/operations/alerts.md" and anchor == name.lower(), name
        assert anchor in anchors, f"{name}: no section #{anchor} in docs/operations/alerts.md"
        section = docs.split(f"## {name}", 1)[1].split("\n## ", 1)[0]
        assert any(command in section for command in ("`icep ", "kubectl", "docker compose", "/v1/")), (
            f"{name}: its runbook names no command to run"
        )
    kafka = next(r for r in alert_rules(repo_root) if r["alert"] == "IcepKafkaUnreachable")
    assert kafka["labels"]["severity"] == "warning", "a broker outage is absorbed by the outbox: no page"


# --- compose, provisioning, dashboards ---------------------------------------------------------------------


def test_compose_prometheus_scrapes_every_management_port_and_loads_the_rules(repo_root: Path) -> None:
    config = yaml.safe_load((repo_root / OBS / "prometheus.yml").read_text())
    assert config["rule_files"] == ["alerts.yml"]
    targets = {t for sc in config["scrape_configs"] for s in sc["static_configs"] for t in s["targets"]}
    assert targets == {f"{p}:{9000 + i}" for i, p in enumerate(PROCESSES)}
    compose = yaml.safe_load((repo_root / "docker-compose.yml").read_text())
    mounts = compose["services"]["prometheus"]["volumes"]
    assert "./deploy/observability/alerts.yml:/etc/prometheus/alerts.yml:ro" in mounts


def test_compose_runs_a_pinned_grafana_with_the_provisioning(repo_root: Path) -> None:
    services = yaml.safe_load((repo_root / "docker-compose.yml").read_text())["services"]
    assert {"prometheus", "jaeger", "grafana"} <= set(services)
    grafana = services["grafana"]
    image, _, tag = grafana["image"].partition(":")
    assert image == "grafana/grafana" and re.fullmatch(r"\d+\.\d+\.\d+", tag), grafana["image"]
    mounts = grafana["volumes"]
    assert "./deploy/observability/grafana/provisioning:/etc/grafana/provisioning:ro" in mounts
    assert "./deploy/observability/grafana/dashboards:/var/lib/grafana/dashboards:ro" in mounts
    provisioning = repo_root / OBS / "grafana/provisioning"
    sources = yaml.safe_load((provisioning / "datasources/datasources.yml").read_text())["datasources"]
    assert {(s["type"], s["uid"], s["url"]) for s in sources} == {
        ("prometheus", "prometheus", "http://prometheus:9090"),
        ("jaeger", "jaeger", "http://jaeger:16686"),
    }
    providers = yaml.safe_load((provisioning / "dashboards/icep.yml").read_text())["providers"]
    assert providers[0]["options"]["path"] == "/var/lib/grafana/dashboards"


def test_dashboards_are_what_their_code_writes(repo_root: Path) -> None:
    rendered = load_dashboard_builder(repo_root).render()
    assert set(rendered) == {"platform-overview.json", "event-flow.json", "webhooks.json", "gateway.json"}
    folder = repo_root / OBS / "grafana/dashboards"
    assert {p.name for p in folder.glob("*.json")} == set(rendered)
    for name, text in rendered.items():
        assert (folder / name).read_text() == text, (
            f"{name} is stale: run python deploy/observability/grafana/build_dashboards.py"
        )


def test_dashboards_are_well_formed(repo_root: Path) -> None:
    uids = set()
    for name, dashboard in dashboard_files(repo_root).items():
        uids.add(dashboard["uid"])
        panels = [p for p in dashboard["panels"] if p["type"] != "row"]
        assert len(panels) >= 4, name
        ids = [p["id"] for p in dashboard["panels"]]
        assert len(ids) == len(set(ids)), name
        for panel in panels:
            assert panel["datasource"]["uid"] == "prometheus"
            assert panel["targets"] and all(t["expr"] for t in panel["targets"]), panel["title"]
            box = panel["gridPos"]
            assert box["x"] + box["w"] <= 24, panel["title"]
    assert len(uids) == 4

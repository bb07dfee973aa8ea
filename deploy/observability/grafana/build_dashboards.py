"""ICEP's Grafana dashboards, as code: `python deploy/observability/grafana/build_dashboards.py` writes
dashboards/*.json beside this file, which Grafana loads through provisioning/ (docker-compose.yml).

Written in Python rather than by hand so that every panel has the same shape, the layout is computed and
the PromQL sits in one readable place; tests/test_observability.py checks that the committed JSON is what
this script writes and that every metric a panel names is emitted by the running platform. Standard
library only: it runs with any Python 3.11+.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DASHBOARDS = HERE / "dashboards"

#: The data source uids of provisioning/datasources/datasources.yml.
PROMETHEUS = {"type": "prometheus", "uid": "prometheus"}

RATE = "$__rate_interval"


@dataclass
class Panel:
    title: str
    targets: list[tuple[str, str]]  # (PromQL, legend)
    unit: str = "short"
    kind: str = "timeseries"  # timeseries | stat | table | state-timeline
    width: int = 12
    height: int = 8
    description: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    max: float | None = None


@dataclass
class Row:
    title: str
    panels: list[Panel]


def _panel_json(panel: Panel, panel_id: int, x: int, y: int) -> dict[str, Any]:
    defaults: dict[str, Any] = {"unit": panel.unit}
    if panel.max is not None:
        defaults["max"] = panel.max
        defaults["min"] = 0
    targets = []
    for i, (expr, legend) in enumerate(panel.targets):
        target: dict[str, Any] = {
            "datasource": PROMETHEUS,
            "expr": expr,
            "legendFormat": legend,
            "refId": chr(ord("A") + i),
        }
        if panel.kind == "table":
            target.update({"instant": True, "format": "table", "range": False})
        targets.append(target)
    body: dict[str, Any] = {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": PROMETHEUS,
        "gridPos": {"x": x, "y": y, "w": panel.width, "h": panel.height},
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": panel.options,
        "targets": targets,
    }
    return body


def dashboard(uid: str, title: str, description: str, rows: list[Row]) -> dict[str, Any]:
    """A dashboard of rows; panels flow left to right, 24 columns wide, each row below the last."""
    panels: list[dict[str, Any]] = []
    panel_id = 1
    y = 0
    for row in rows:
        panels.append(
            {
                "id": panel_id,
                "type": "row",
                "title": row.title,
                "collapsed": False,
                "gridPos": {"x": 0, "y": y, "w": 24, "h": 1},
                "panels": [],
            }
        )
        panel_id += 1
        y += 1
        x = 0
        line_height = 0
        for panel in row.panels:
            if x + panel.width > 24:
                x = 0
                y += line_height
                line_height = 0
            panels.append(_panel_json(panel, panel_id, x, y))
            panel_id += 1
            x += panel.width
            line_height = max(line_height, panel.height)
        y += line_height
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["icep"],
        "editable": True,
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-1h", "to": "now"},
        "refresh": "30s",
        "timezone": "utc",
        "templating": {
            "list": [
                {
                    "name": "service",
                    "label": "service",
                    "type": "query",
                    "datasource": PROMETHEUS,
                    "query": {"query": "label_values(icep_build_info, service)", "refId": "service"},
                    "definition": "label_values(icep_build_info, service)",
                    "includeAll": True,
                    "multi": True,
                    "allValue": ".*",
                    "current": {"text": "All", "value": "$__all"},
                    "refresh": 2,
                }
            ]
        },
        "annotations": {"list": []},
        "links": [
            {"type": "dashboards", "tags": ["icep"], "title": "ICEP dashboards", "asDropdown": True},
        ],
        "panels": panels,
    }


S = 'service=~"$service"'
HTTP = "icep_http_request_duration_seconds"


def platform_overview() -> dict[str, Any]:
    return dashboard(
        "icep-overview",
        "ICEP: platform overview",
        "Per service: request rate, 5xx ratio, p99 latency, readiness and dependencies, build info.",
        [
            Row(
                "Requests",
                [
                    Panel(
                        "Request rate",
                        [(f"sum by (service) (rate({HTTP}_count{{{S}}}[{RATE}]))", "{{service}}")],
                        unit="reqps",
                        width=8,
                    ),
                    Panel(
                        "5xx ratio",
                        [
                            (
                                f'sum by (service) (rate({HTTP}_count{{{S},status=~"5.."}}[{RATE}]))'
                                f" / sum by (service) (rate({HTTP}_count{{{S}}}[{RATE}]))",
                                "{{service}}",
                            )
                        ],
                        unit="percentunit",
                        width=8,
                        description="Alert IcepHttp5xxRatioHigh: above 5 % for 10 minutes.",
                    ),
                    Panel(
                        "p99 latency (event streams excluded)",
                        [
                            (
                                "histogram_quantile(0.99, sum by (service, le) "
                                f'(rate({HTTP}_bucket{{{S},route!~".*/stream"}}[{RATE}])))',
                                "{{service}}",
                            )
                        ],
                        unit="s",
                        width=8,
                        description="Alert IcepHttpLatencyP99High: above 2 s for 10 minutes.",
                    ),
                    Panel(
                        "Requests by route and status",
                        [
                            (
                                "sum by (service, method, route, status) "
                                f"(rate({HTTP}_count{{{S}}}[{RATE}]))",
                                "{{service}} {{method}} {{route}} {{status}}",
                            )
                        ],
                        unit="reqps",
                        width=24,
                    ),
                ],
            ),
            Row(
                "Health",
                [
                    Panel(
                        "Scrape targets up",
                        [('up{job="icep"}', "{{process}} {{instance}}")],
                        kind="state-timeline",
                        width=12,
                        max=1,
                        description="0: Prometheus cannot scrape the process (alert IcepTargetDown).",
                    ),
                    Panel(
                        "Dependencies up (database: readiness; kafka: reported only)",
                        [(f"icep_dependency_up{{{S}}}", "{{service}} {{dependency}} {{instance}}")],
                        kind="state-timeline",
                        width=12,
                        max=1,
                        description=(
                            "1 reachable, 0 not. A service without its database is not ready and answers 503 "
                            "(IcepDatabaseDown); without Kafka it stays ready (IcepKafkaUnreachable)."
                        ),
                    ),
                    Panel(
                        "Build info",
                        [(f"icep_build_info{{{S}}}", "")],
                        kind="table",
                        width=24,
                        description="The version and revision each process runs.",
                    ),
                ],
            ),
        ],
    )


def event_flow() -> dict[str, Any]:
    return dashboard(
        "icep-event-flow",
        "ICEP: event flow",
        "Outbox -> Kafka -> consumers -> dead letters: backlog, age, leaders, lag, outcomes.",
        [
            Row(
                "Outbox (each service's events on their way to Kafka)",
                [
                    Panel(
                        "Backlog (rows not yet acknowledged)",
                        [(f"max by (service) (icep_outbox_backlog{{{S}}})", "{{service}}")],
                        width=8,
                    ),
                    Panel(
                        "Oldest unsent row",
                        [(f"max by (service) (icep_outbox_oldest_age_seconds{{{S}}})", "{{service}}")],
                        unit="s",
                        width=8,
                        description="Alert IcepOutboxOldestAgeHigh: above 10 minutes for 5 minutes.",
                    ),
                    Panel(
                        "Relay blocked / parked rows",
                        [
                            (f"max by (service) (icep_outbox_relay_blocked{{{S}}})", "blocked {{service}}"),
                            (f"max by (service) (icep_outbox_parked{{{S}}})", "parked {{service}}"),
                        ],
                        width=8,
                        description="Blocked: 1 while the relay cannot publish (IcepOutboxRelayBlocked). "
                        "Parked: rows an operator set aside (icep outbox park).",
                    ),
                    Panel(
                        "Published / publish failures",
                        [
                            (
                                f"sum by (service) (rate(icep_outbox_published_total{{{S}}}[{RATE}]))",
                                "published {{service}}",
                            ),
                            (
                                f"sum by (service) (rate(icep_outbox_publish_failures_total{{{S}}}[{RATE}]))",
                                "failed {{service}}",
                            ),
                        ],
                        unit="ops",
                        width=12,
                    ),
                    Panel(
                        "Leader per role (1 leader, 0 standby)",
                        [(f"icep_leader{{{S}}}", "{{service}} {{role}} {{instance}}")],
                        kind="state-timeline",
                        width=12,
                        max=1,
                        description="Exactly one process per service and role should lead (IcepNoLeader).",
                    ),
                ],
            ),
            Row(
                "Consumers",
                [
                    Panel(
                        "Lag per group and partition",
                        [
                            (
                                "max by (group, topic, partition) (icep_consumer_lag)",
                                "{{group}} {{topic}}[{{partition}}]",
                            )
                        ],
                        width=12,
                        description="Records behind the partition's end (IcepConsumerLagHigh/Growing; "
                        "`icep consumer lag`).",
                    ),
                    Panel(
                        "Handled by outcome",
                        [
                            (
                                f"sum by (group, outcome) (rate(icep_consumer_handled_total[{RATE}]))",
                                "{{group}} {{outcome}}",
                            )
                        ],
                        unit="ops",
                        width=12,
                    ),
                    Panel(
                        "Handler failures / dead-lettered",
                        [
                            (
                                f"sum by (group) (rate(icep_consumer_handler_failures_total[{RATE}]))",
                                "failed attempts {{group}}",
                            ),
                            (
                                f"sum by (group) (rate(icep_consumer_dead_letters_total[{RATE}]))",
                                "dead-lettered {{group}}",
                            ),
                        ],
                        unit="ops",
                        width=12,
                    ),
                    Panel(
                        "Dead letters waiting per topic",
                        [(f"max by (service, topic) (icep_dead_letters_waiting{{{S}}})", "{{topic}}")],
                        width=12,
                        description="Not yet redriven or purged (IcepDeadLettersWaiting; "
                        "`icep dead-letters list`).",
                    ),
                ],
            ),
        ],
    )


W = 'outcome!="late"'


def webhooks() -> dict[str, Any]:
    return dashboard(
        "icep-webhooks",
        "ICEP: webhooks",
        "Webhook deliveries from the notifications service: attempts, failures, backlog, subscriptions.",
        [
            Row(
                "Attempts",
                [
                    Panel(
                        "Attempts by outcome",
                        [
                            (
                                f"sum by (outcome) (rate(icep_webhook_attempts_total[{RATE}]))",
                                "{{outcome}}",
                            )
                        ],
                        unit="ops",
                        width=8,
                    ),
                    Panel(
                        "Failure ratio",
                        [
                            (
                                'sum(rate(icep_webhook_attempts_total{outcome!~"delivered|late"}'
                                f"[{RATE}])) / sum(rate(icep_webhook_attempts_total{{{W}}}[{RATE}]))",
                                "failed",
                            )
                        ],
                        unit="percentunit",
                        width=8,
                        max=1,
                        description="Alert IcepWebhookFailureRatioHigh: above 25 % over 15 minutes.",
                    ),
                    Panel(
                        "Latency (p50, p99)",
                        [
                            (
                                "histogram_quantile(0.5, sum by (le) "
                                f"(rate(icep_webhook_latency_seconds_bucket[{RATE}])))",
                                "p50",
                            ),
                            (
                                "histogram_quantile(0.99, sum by (le) "
                                f"(rate(icep_webhook_latency_seconds_bucket[{RATE}])))",
                                "p99",
                            ),
                        ],
                        unit="s",
                        width=8,
                    ),
                    Panel(
                        "Deliveries settled",
                        [
                            (
                                f"sum by (outcome) (rate(icep_webhook_deliveries_total[{RATE}]))",
                                "{{outcome}}",
                            )
                        ],
                        unit="ops",
                        width=24,
                    ),
                ],
            ),
            Row(
                "Backlog and subscriptions",
                [
                    Panel(
                        "Deliveries pending",
                        [(f"max by (service) (icep_webhook_deliveries_pending{{{S}}})", "{{service}}")],
                        width=8,
                    ),
                    Panel(
                        "Oldest pending delivery",
                        [
                            (
                                f"max by (service) (icep_webhook_oldest_pending_age_seconds{{{S}}})",
                                "{{service}}",
                            )
                        ],
                        unit="s",
                        width=8,
                        description="Alert IcepWebhookOldestPendingAgeHigh: above an hour for 15 minutes.",
                    ),
                    Panel(
                        "Subscriptions by state",
                        [(f"max by (state) (icep_webhook_subscriptions{{{S}}})", "{{state}}")],
                        width=8,
                    ),
                    Panel(
                        "Subscriptions disabled, by cause",
                        [
                            (
                                "sum by (cause) (increase(icep_webhook_subscriptions_disabled_total[1h]))",
                                "{{cause}}",
                            )
                        ],
                        width=24,
                        description="gone/failing: the platform's decision "
                        "(IcepWebhookSubscriptionsDisabled); owner/operator: on purpose.",
                    ),
                ],
            ),
        ],
    )


G = "icep_gateway_request"


def gateway() -> dict[str, Any]:
    return dashboard(
        "icep-gateway",
        "ICEP: gateway",
        "The public edge: requests by upstream and route template, latency, rate limits, event streams.",
        [
            Row(
                "Requests",
                [
                    Panel(
                        "Requests by upstream",
                        [(f"sum by (upstream) (rate({G}s_total[{RATE}]))", "{{upstream}}")],
                        unit="reqps",
                        width=8,
                    ),
                    Panel(
                        "5xx ratio by upstream",
                        [
                            (
                                f'sum by (upstream) (rate({G}s_total{{status=~"5.."}}[{RATE}]))'
                                f" / sum by (upstream) (rate({G}s_total[{RATE}]))",
                                "{{upstream}}",
                            )
                        ],
                        unit="percentunit",
                        width=8,
                    ),
                    Panel(
                        "p99 latency by upstream",
                        [
                            (
                                "histogram_quantile(0.99, sum by (upstream, le) "
                                f'(rate({G}_duration_seconds_bucket{{route!~".*/stream"}}[{RATE}])))',
                                "{{upstream}}",
                            )
                        ],
                        unit="s",
                        width=8,
                    ),
                    Panel(
                        "Requests by route template and status",
                        [
                            (
                                f"sum by (upstream, method, route, status) (rate({G}s_total[{RATE}]))",
                                "{{method}} {{route}} {{status}}",
                            )
                        ],
                        unit="reqps",
                        width=24,
                        height=10,
                    ),
                ],
            ),
            Row(
                "Rate limits and event streams",
                [
                    Panel(
                        "Rate-limited (429) by limit",
                        [
                            (
                                f"sum by (limit) (rate(icep_gateway_rate_limited_total[{RATE}]))",
                                "{{limit}}",
                            ),
                            (
                                f"sum(rate(icep_gateway_rate_limit_fail_open_total[{RATE}]))",
                                "let through unchecked (storage down)",
                            ),
                        ],
                        unit="reqps",
                        width=12,
                    ),
                    Panel(
                        "Open event streams",
                        [
                            ("sum(icep_gateway_open_streams)", "through the gateways"),
                            ("sum by (service) (icep_event_streams_open)", "served by {{service}}"),
                            (
                                f"sum by (cap) (rate(icep_gateway_streams_refused_total[{RATE}]))",
                                "refused ({{cap}} cap)",
                            ),
                        ],
                        width=12,
                    ),
                ],
            ),
        ],
    )


ALL = {
    "platform-overview.json": platform_overview,
    "event-flow.json": event_flow,
    "webhooks.json": webhooks,
    "gateway.json": gateway,
}


def render() -> dict[str, str]:
    """Each dashboard file's name and its JSON text, as committed."""
    return {name: json.dumps(build(), indent=2) + "\n" for name, build in ALL.items()}


def main() -> int:
    DASHBOARDS.mkdir(exist_ok=True)
    for name, text in render().items():
        (DASHBOARDS / name).write_text(text)
        print(f"wrote {DASHBOARDS / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`icep up` as a newcomer runs it: broker from the jars, all five services, a webhook for a submitted
plan, a service killed with -9 restarted, and on SIGTERM nothing it started is left running."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from icep.platform.kafka_local import free_port
from icep.platform.launcher import SERVICES, free_platform_ports
from icep.platform.testing import WebhookReceiver, wait_for


def children_of(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == pid:
                found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def serves(pid: int) -> str | None:
    """The service a process serves (`... icep.platform.cli serve <name>`), if it is one."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    return argv[argv.index(b"serve") + 1].decode() if b"serve" in argv else None


@pytest.fixture
def icep_up(
    tmp_path: Path, repo_root: Path
) -> Iterator[tuple[subprocess.Popen[str], dict[str, int], dict[str, int], Path]]:
    ports, management_ports = free_platform_ports()
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    env.update({f"ICEP_{name.upper()}_PORT": str(port) for name, port in ports.items()})
    env.update({f"ICEP_{name.upper()}_MANAGEMENT_PORT": str(port) for name, port in management_ports.items()})
    env.update({"ICEP_NOTIFICATIONS_RETRY_SCHEDULE_SECONDS": "[0.2, 0.5]", "COLUMNS": "200"})
    env.update({"ICEP_UP_RESTART_BACKOFF_SECONDS": "0.2", "ICEP_UP_RESTART_BACKOFF_MAX_SECONDS": "1"})
    for name in SERVICES:
        env.pop(f"ICEP_{name.upper()}_DATABASE_URL", None)  # SQLite under --var-dir, as for a newcomer
    log = tmp_path / "icep-up.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "icep.platform.cli",
                "up",
                "--var-dir",
                str(tmp_path / "var"),
                "--kafka-port",
                str(free_port()),
            ],
            cwd=repo_root,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        yield proc, ports, management_ports, log
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def test_icep_up_runs_the_platform_restarts_what_dies_and_stops_everything(
    icep_up: tuple[subprocess.Popen[str], dict[str, int], dict[str, int], Path],
    plan_body: Callable[..., dict[str, Any]],
    receiver: WebhookReceiver,
    tmp_path: Path,
) -> None:
    proc, ports, management_ports, log = icep_up
    gateway = f"http://127.0.0.1:{ports['gateway']}"
    await wait_for(
        lambda: "ICEP is up" in log.read_text() or proc.poll() is not None, timeout=180, what="icep up"
    )
    assert proc.poll() is None, log.read_text()
    output = log.read_text()
    for name in SERVICES:
        assert f"http://127.0.0.1:{ports[name]}" in output
        assert f"http://127.0.0.1:{management_ports[name]}" in output

    async with httpx.AsyncClient(base_url=gateway, timeout=20) as http:
        token = (
            await http.post(
                "/oauth/token",
                data={"grant_type": "client_credentials"},
                auth=("deu-planner", "deu-planner-dev-secret"),
            )
        ).json()["access_token"]
        http.headers["Authorization"] = f"Bearer {token}"
        sub = (
            await http.post("/v1/subscriptions", json={"url": receiver.url, "event_types": ["icep.plans.*"]})
        ).json()
        plan = (await http.post("/v1/plans", json=plan_body())).json()
        submitted = await http.post(f"/v1/plans/{plan['id']}/submit", headers={"If-Match": '"1"'})
        assert submitted.status_code == 200
    hooks = await wait_for(
        lambda: len(receiver.received()) >= 2 and receiver.received(), timeout=60, what="webhooks"
    )
    types = [Webhook(sub["secret"]).verify(h.body, h.headers)["type"] for h in hooks]
    assert types == ["icep.plans.plan.created.v1", "icep.plans.plan.submitted.v1"]

    async with httpx.AsyncClient(timeout=20) as http:
        # Each process's metrics are on the management port the table printed.
        metrics = await http.get(f"http://127.0.0.1:{management_ports['plans']}/metrics")
        assert metrics.status_code == 200 and "icep_outbox_backlog" in metrics.text

    # A service that dies (kill -9) is restarted and ready again; the rest keeps running, and both the
    # console and the service's own log say so.
    (victim,) = [pid for pid in children_of(proc.pid) if serves(pid) == "procurement"]
    os.kill(victim, signal.SIGKILL)
    await wait_for(
        lambda: "procurement is ready again" in log.read_text() or proc.poll() is not None,
        timeout=90,
        what="procurement restarted and ready",
    )
    assert proc.poll() is None, log.read_text()
    output = log.read_text()
    assert "procurement exited (killed by SIGKILL)" in output and "restarting in 0.2s" in output, output
    assert "procurement restarted (pid" in output
    (again,) = [pid for pid in children_of(proc.pid) if serves(pid) == "procurement"]
    assert again != victim
    async with httpx.AsyncClient(timeout=20) as http:
        ready = await http.get(f"http://127.0.0.1:{ports['procurement']}/readyz")
        assert ready.status_code == 200, ready.text
    own_log = (tmp_path / "var" / "logs" / "procurement.log").read_text()
    assert "procurement exited (killed by SIGKILL)" in own_log and "procurement is ready again" in own_log

    started = children_of(proc.pid)
    assert len(started) == len(SERVICES) + 1  # five services and the broker
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0
    leftovers = [pid for pid in started if alive(pid)]
    assert leftovers == [], f"processes left running after icep up stopped: {leftovers}"

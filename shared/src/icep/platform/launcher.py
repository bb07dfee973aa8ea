"""Start the platform's processes the way `icep up` does: broker, four services and the gateway.

Tests use the same code, so what they prove is how the platform really starts. Each service is its own
OS process (`python -m icep.platform.cli serve <name>`), told its ports (API and management), upstreams
and token issuer by environment variables.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx

from icep.platform.processes import die_with_parent
from icep.platform.settings import MANAGEMENT_PORT_OFFSET

#: name -> (app factory, default port). Import strings: the platform imports no service.
SERVICES: dict[str, tuple[str, int]] = {
    "plans": ("icep.plans.app:create_app", 8001),
    "procurement": ("icep.procurement.app:create_app", 8002),
    "standards": ("icep.standards.app:create_app", 8003),
    "notifications": ("icep.notifications.app:create_app", 8004),
    "gateway": ("icep.gateway.app:create_app", 8000),
}
#: Start order: the gateway last; `icep up` starts it once the services it routes to are up.
START_ORDER = ["plans", "procurement", "standards", "notifications", "gateway"]


class LaunchError(RuntimeError):
    pass


def management_ports_for(ports: Mapping[str, int]) -> dict[str, int]:
    """The management ports the processes choose when told only their API ports (API port + 1000)."""
    return {name: port + MANAGEMENT_PORT_OFFSET for name, port in ports.items()}


def free_platform_ports() -> tuple[dict[str, int], dict[str, int]]:
    """Free, distinct API and management ports for every process (tests and benchmarks)."""
    from icep.platform.kafka_local import free_port

    chosen: set[int] = set()
    while len(chosen) < 2 * len(SERVICES):
        chosen.add(free_port())
    ports = list(chosen)
    return dict(zip(SERVICES, ports[: len(SERVICES)], strict=True)), dict(
        zip(SERVICES, ports[len(SERVICES) :], strict=True)
    )


def platform_env(
    ports: Mapping[str, int],
    *,
    bootstrap: str,
    var_dir: Path,
    management_ports: Mapping[str, int] | None = None,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment every process gets: its ports, where Kafka, the issuer and the other services are."""
    gateway = f"http://127.0.0.1:{ports['gateway']}"
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "ICEP_VAR_DIR": str(var_dir),
        "ICEP_AUTH_ISSUER": gateway,
        "ICEP_AUTH_JWKS_URL": f"{gateway}/.well-known/jwks.json",
        # Where callers reach the API (the base of the links a service writes, e.g. OCDS package URIs).
        "ICEP_PROCUREMENT_PUBLIC_URL": gateway,
        # The local brokers allow consumer sessions from 1 s (group.min.session.timeout.ms): a killed
        # replica's partitions move in about 4 s rather than the stock minimum's 7.
        "ICEP_CONSUMER_SESSION_TIMEOUT_MS": os.environ.get("ICEP_CONSUMER_SESSION_TIMEOUT_MS", "3000"),
        "ICEP_CONSUMER_HEARTBEAT_INTERVAL_MS": os.environ.get("ICEP_CONSUMER_HEARTBEAT_INTERVAL_MS", "1000"),
    }
    for name, port in ports.items():
        env[f"ICEP_{name.upper()}_PORT"] = str(port)
    for name, port in (management_ports or management_ports_for(ports)).items():
        env[f"ICEP_{name.upper()}_MANAGEMENT_PORT"] = str(port)
    for name, port in ports.items():
        if name != "gateway":
            env[f"ICEP_GATEWAY_{name.upper()}_URL"] = f"http://127.0.0.1:{port}"
    env.update(extra or {})
    return env


@dataclass
class ServiceProcess:
    name: str
    port: int
    management_port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    started_at: float = field(default_factory=time.monotonic)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def management_url(self) -> str:
        """Where its /metrics, health and own API documents are (for operators only)."""
        return f"http://127.0.0.1:{self.management_port}"

    def alive(self) -> bool:
        return self.process.poll() is None


@dataclass
class Launcher:
    """Owns the service processes it started and stops exactly those."""

    env: dict[str, str]
    log_dir: Path
    ports: dict[str, int] = field(default_factory=lambda: {n: p for n, (_, p) in SERVICES.items()})
    #: Each process's management port; where not given, the API port + 1000 (what the process chooses).
    management_ports: dict[str, int] = field(default_factory=dict)
    processes: dict[str, ServiceProcess] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.management_ports = {**management_ports_for(self.ports), **self.management_ports}

    def start(
        self, name: str, extra_env: Mapping[str, str] | None = None, *, service: str | None = None
    ) -> ServiceProcess:
        """Start process `name`: the service of that name, or `service` (a further replica's name)."""
        if name in self.processes and self.processes[name].alive():
            raise LaunchError(f"{name} is already running")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        env = {**os.environ, **self.env, **(extra_env or {})}
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "icep.platform.cli", "serve", service or name],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=die_with_parent(),
            )
        sp = ServiceProcess(name, self.ports[name], self.management_ports[name], proc, log_path)
        self.processes[name] = sp
        return sp

    def start_replica(
        self, service: str, replica: int, extra_env: Mapping[str, str] | None = None
    ) -> ServiceProcess:
        """Start one more process of `service` (replica 2, 3, ...): the same database, broker and settings,
        its own free API and management ports. It is process `<service>~<replica>` here (`wait_ready`,
        `kill`, `stop`) and serves beside the first one; the gateway still routes to the first."""
        from icep.platform.kafka_local import free_port

        name = f"{service}~{replica}"
        prefix = f"ICEP_{service.upper()}"
        taken = {*self.ports.values(), *self.management_ports.values()}
        chosen: list[int] = []
        while len(chosen) < 2:
            port = free_port()
            if port not in taken and port not in chosen:
                chosen.append(port)
        self.ports[name], self.management_ports[name] = chosen
        env = {
            f"{prefix}_PORT": str(self.ports[name]),
            f"{prefix}_MANAGEMENT_PORT": str(self.management_ports[name]),
            **(extra_env or {}),
        }
        return self.start(name, env, service=service)

    def wait_ready(self, name: str, timeout: float = 60.0, *, topics: bool = False) -> None:
        """Wait until the process is ready (it can serve its API: its database answers). Readiness does
        not include the broker; `topics=True` also waits until the service has created its Kafka topics
        (its `topics_ready` detail), so events written from now on find their topics and consumers."""
        sp = self.processes[name]
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        with httpx.Client(timeout=2.0) as http:
            while time.monotonic() < deadline:
                if not sp.alive():
                    raise LaunchError(f"{name} exited with {sp.process.returncode}:\n{self.log_tail(name)}")
                try:
                    r = http.get(f"{sp.url}/readyz")
                    if r.status_code == 200 and (not topics or r.json().get("topics_ready", True)):
                        return
                    last = r.text
                except httpx.HTTPError as exc:
                    last = str(exc)
                time.sleep(0.1)
        raise LaunchError(f"{name} not ready after {timeout:.0f}s ({last}):\n{self.log_tail(name)}")

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.processes[name].log_path
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def start_all(self, timeout: float = 90.0, *, topics: bool = False) -> None:
        """Start every process at once (the gateway needs no service to start: it routes lazily), then wait
        until each is ready, the gateway last."""
        for name in START_ORDER:
            self.start(name)
        for name in START_ORDER:
            self.wait_ready(name, timeout, topics=topics)

    def stop(self, name: str, timeout: float = 15.0) -> None:
        sp = self.processes.pop(name, None)
        if sp is None or not sp.alive():
            return
        sp.process.send_signal(signal.SIGTERM)
        try:
            sp.process.wait(timeout)
        except subprocess.TimeoutExpired:
            sp.process.kill()
            sp.process.wait()

    def kill(self, name: str) -> None:
        """SIGKILL, as a crash would: no shutdown code runs."""
        sp = self.processes.pop(name, None)
        if sp is not None and sp.alive():
            sp.process.kill()
            sp.process.wait()

    def stop_all(self) -> None:
        for name in reversed(START_ORDER):
            self.stop(name)
        for name in list(self.processes):
            self.stop(name)


# --- restarts under `icep up` -------------------------------------------------------------------------


@dataclass(frozen=True)
class RestartPolicy:
    """How `icep up` restarts a process that died: after `initial` seconds, doubling for each crash in a
    row up to `maximum`, for ever. A process that ran `stable_after` seconds counts as healthy again: its
    next crash waits `initial` again."""

    initial: float = 1.0
    maximum: float = 30.0
    stable_after: float = 60.0

    def delay(self, crashes_in_a_row: int) -> float:
        return float(min(self.initial * 2 ** max(crashes_in_a_row - 1, 0), self.maximum))


@dataclass
class _Pending:
    crashes: int
    due: float


def _exit_text(returncode: int | None) -> str:
    if returncode is not None and returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


@dataclass
class Watchdog:
    """Keeps the launcher's processes running: `check()` (called every fraction of a second by `icep up`)
    notices a process that died, restarts it after the policy's backoff, and says when it is ready again.
    Everything it does is told to `say` (the console) and written to the process's own log."""

    launcher: Launcher
    say: Callable[[str], None]
    policy: RestartPolicy = field(default_factory=RestartPolicy)
    _pending: dict[str, _Pending] = field(default_factory=dict)
    _crashes: dict[str, int] = field(default_factory=dict)
    _awaiting_ready: set[str] = field(default_factory=set)

    def check(self) -> None:
        now = time.monotonic()
        for name, sp in list(self.launcher.processes.items()):
            if name in self._pending or sp.alive():
                continue
            self._awaiting_ready.discard(name)
            ran = now - sp.started_at
            crashes = 1 if ran >= self.policy.stable_after else self._crashes.get(name, 0) + 1
            self._crashes[name] = crashes
            delay = self.policy.delay(crashes)
            self._pending[name] = _Pending(crashes, now + delay)
            why = _exit_text(sp.process.returncode)
            again = (
                f"; it keeps crashing ({crashes} times in a row), still retrying every {delay:g}s"
                if delay >= self.policy.maximum
                else ""
            )
            self._tell(
                name, "warning", f"{name} exited ({why}) after {ran:.1f}s; restarting in {delay:g}s{again}"
            )
        for name, pending in list(self._pending.items()):
            if pending.due > now:
                continue
            del self._pending[name]
            try:
                sp = self.launcher.start(name)
            except (OSError, LaunchError) as exc:
                crashes = pending.crashes + 1
                delay = self.policy.delay(crashes)
                self._pending[name] = _Pending(crashes, now + delay)
                self._tell(
                    name, "error", f"{name} could not be started again ({exc}); next try in {delay:g}s"
                )
                continue
            self._awaiting_ready.add(name)
            note = f"pid {sp.process.pid}; {pending.crashes} crash(es) in a row"
            self._tell(name, "warning", f"{name} restarted ({note})")
        for name in list(self._awaiting_ready):
            sp = self.launcher.processes[name]
            if sp.alive() and self._ready(sp):
                self._awaiting_ready.discard(name)
                self._tell(name, "info", f"{name} is ready again (pid {sp.process.pid})")

    @staticmethod
    def _ready(sp: ServiceProcess) -> bool:
        try:
            return httpx.get(f"{sp.url}/readyz", timeout=0.5).status_code == 200
        except httpx.HTTPError:
            return False

    def _tell(self, name: str, level: str, message: str) -> None:
        self.say(message)
        line = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "level": level.upper(),
            "logger": "icep.up",
            "message": message,
            "service": name,
        }
        try:
            with (self.launcher.log_dir / f"{name}.log").open("a") as log:
                log.write(json.dumps(line) + "\n")
        except OSError:
            pass

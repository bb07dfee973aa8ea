"""What several bench sections share: percentiles, a process's CPU time, a platform started for a section,
throwaway PostgreSQL databases (on a given admin URL or on a cluster the bench starts itself), and py-spy
profiles of the services under load.

CPU time is read from /proc/<pid>/stat (utime + stime), so each figure is one process's own work, whatever
else shares the machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from icep.platform.kafka_local import free_port
from icep.platform.launcher import Launcher, LaunchError, free_platform_ports, platform_env
from icep.platform.testing import wait_for

_TICKS = os.sysconf("SC_CLK_TCK")
PROFILES = Path(__file__).with_name("profiles")
#: Far above what a run sends, so the limiter is consulted on every request and never refuses.
NO_RATE_LIMITS = {
    "ICEP_GATEWAY_RATE_LIMITS": json.dumps({"standard": "1000000/minute"}),
    "ICEP_GATEWAY_TOKEN_RATE_LIMIT": "1000000/minute",
}


def percentile(values: list[float], p: float) -> float:
    """The p-th percentile (inclusive method); the one value when there is only one."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=1000, method="inclusive")[round(p * 10) - 1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS


@dataclass
class CpuMeter:
    """CPU seconds each named process spends between `start()` and `stop()`."""

    pids: dict[str, int]
    _before: dict[str, float] = field(default_factory=dict)
    spent: dict[str, float] = field(default_factory=dict)

    def start(self) -> CpuMeter:
        self._before = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        return self

    def stop(self) -> dict[str, float]:
        self.spent = {name: cpu_seconds(pid) - self._before[name] for name, pid in self.pids.items()}
        return self.spent


async def token(http: httpx.AsyncClient, client_id: str = "deu-planner") -> str:
    r = await http.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, f"{client_id}-dev-secret")
    )
    r.raise_for_status()
    return str(r.json()["access_token"])


def start_platform(
    bootstrap: str, extra: Mapping[str, str] | None = None, *, prefix: str = "icep-bench-"
) -> Launcher:
    """All five processes, as `icep up` starts them, on free ports; the caller stops them (stop_all).
    A port found free may be taken by another program before a service binds it (a shared machine): then
    the platform is started again on other ports, up to three times."""
    for attempt in range(3):
        var_dir = Path(tempfile.mkdtemp(prefix=prefix))
        ports, management_ports = free_platform_ports()
        env = platform_env(
            ports,
            management_ports=management_ports,
            bootstrap=bootstrap,
            var_dir=var_dir,
            extra={"ICEP_NOTIFICATIONS_ALLOW_LOOPBACK_ENDPOINTS": "true", **NO_RATE_LIMITS, **(extra or {})},
        )
        launcher = Launcher(env=env, log_dir=var_dir / "logs", ports=ports, management_ports=management_ports)
        try:
            launcher.start_all(topics=True)
        except LaunchError as exc:
            launcher.stop_all()
            if "Address already in use" in str(exc) and attempt < 2:
                continue
            raise
        except BaseException:
            launcher.stop_all()
            raise
        return launcher
    raise AssertionError("unreachable")


# --- PostgreSQL -------------------------------------------------------------------------------------------


async def _pg_admin(admin_url: str, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(admin_url.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@dataclass
class PgDatabases:
    """Throwaway databases on a PostgreSQL cluster, given by its admin URL; `drop()` removes them."""

    admin_url: str
    created: list[str] = field(default_factory=list)

    async def create(self, name: str) -> str:
        dbname = f"icep_bench_{name}_{uuid.uuid4().hex[:8]}"
        await _pg_admin(self.admin_url, f'CREATE DATABASE "{dbname}"')
        self.created.append(dbname)
        base = self.admin_url.rsplit("/", 1)[0]
        return f"{base}/{dbname}".replace("postgresql://", "postgresql+asyncpg://", 1)

    async def service_urls(self, services: list[str]) -> dict[str, str]:
        """ICEP_<SERVICE>_DATABASE_URL for each service, each on a database of its own."""
        return {f"ICEP_{name.upper()}_DATABASE_URL": await self.create(name) for name in services}

    async def drop(self) -> None:
        for dbname in self.created:
            with contextlib.suppress(Exception):  # an untidy leftover, not a failed run
                await _pg_admin(self.admin_url, f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        self.created.clear()


def _pg_bindir() -> Path | None:
    """Debian's server binaries (the newest major), else the directory of an `initdb` on PATH that has the
    other server programs beside it."""
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    if candidates:
        return candidates[-1].parent
    found = shutil.which("initdb")
    if found and all((Path(found).parent / tool).exists() for tool in ("postgres", "pg_isready", "psql")):
        return Path(found).parent
    return None


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[str]:
    """A PostgreSQL cluster of its own in a temporary directory on a free port (fsync off, as in CI),
    with a role icep/icep that may create databases; yields its admin URL and stops it (by its postmaster's
    PID) afterwards, also on failure. As root, the server runs as the `postgres` OS user (initdb refuses
    root), as .ci/postgres.sh does it."""
    bindir = _pg_bindir()
    if bindir is None:
        raise RuntimeError("no initdb on PATH or under /usr/lib/postgresql/*/bin (install postgresql)")
    as_root = os.geteuid() == 0
    prefix: list[str] = ["runuser", "-u", "postgres", "--"] if as_root else []
    tmp = Path(tempfile.mkdtemp(prefix="icep-bench-pg-"))
    if as_root:
        shutil.chown(tmp, "postgres")
    data, port = tmp / "data", free_port()
    server: subprocess.Popen[bytes] | None = None

    def run(*args: str) -> None:
        subprocess.run([*prefix, *args], cwd=tmp, check=True, capture_output=True, timeout=120)

    try:
        run(str(bindir / "initdb"), f"--pgdata={data}", "--username=postgres", "--auth-local=trust")
        with (data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"\nlisten_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{tmp}'\n"
                "max_connections = 300\nfsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
            )
        with (data / "pg_hba.conf").open("a") as hba:
            hba.write("host all all 127.0.0.1/32 trust\n")
        log = (tmp / "server.log").open("ab")
        server = subprocess.Popen(
            [*prefix, str(bindir / "postgres"), "-D", str(data)], cwd=tmp, stdout=log, stderr=log
        )
        deadline = time.monotonic() + 60
        while subprocess.run(
            [str(bindir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port)], check=False
        ).returncode:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL did not start: {(tmp / 'server.log').read_text()[-2000:]}")
            time.sleep(0.2)
        sql = "CREATE ROLE icep LOGIN CREATEDB CREATEROLE PASSWORD 'icep'"
        psql = [str(bindir / "psql"), "-q", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres"]
        subprocess.run([*psql, "-d", "postgres", "-c", sql], check=True, capture_output=True, timeout=60)
        yield f"postgresql://icep:icep@127.0.0.1:{port}/postgres"
    finally:
        if server is not None:
            pid = _postmaster_pid(data) or server.pid
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGINT)  # fast shutdown
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGQUIT)  # immediate shutdown
                server.wait(30)
        shutil.rmtree(tmp, ignore_errors=True)


def _postmaster_pid(data: Path) -> int | None:
    try:
        return int((data / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


# --- profiles ---------------------------------------------------------------------------------------------


def profiling_wanted() -> bool:
    return os.environ.get("ICEP_BENCH_PYSPY", "") not in ("", "0")


def start_profiles(pids: Mapping[str, int], label: str, seconds: float) -> dict[str, subprocess.Popen[bytes]]:
    """py-spy (if installed) recording each process for `seconds`, in raw (collapsed stack) form under
    bench/profiles/ (not committed); nothing when profiling is not asked for or py-spy is missing."""
    spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path.home() / ".local" / "bin"))
    if not profiling_wanted() or spy is None:
        return {}
    PROFILES.mkdir(exist_ok=True)
    started = {}
    for name, pid in pids.items():
        out = PROFILES / f"{label}-{name}.txt"
        command = [spy, "record", "--pid", str(pid), "--duration", str(max(1, round(seconds)))]
        command += ["--format", "raw", "--rate", "200", "--nonblocking", "-o", str(out)]
        started[name] = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return started


def finish_profiles(spies: Mapping[str, subprocess.Popen[bytes]], label: str, top: int = 8) -> list[str]:
    """Wait for the recordings and list each process's functions with the most samples on CPU (self)."""
    notes = []
    for name, spy in spies.items():
        try:
            spy.wait(60)
        except subprocess.TimeoutExpired:
            spy.send_signal(signal.SIGINT)
            spy.wait(10)
        path = PROFILES / f"{label}-{name}.txt"
        if not path.exists():
            notes.append(f"profile {label}/{name}: py-spy wrote nothing (permissions?)")
            continue
        own: Counter[str] = Counter()
        total = 0
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            total += int(count)
            own[stack.split(";")[-1].strip()] += int(count)
        listed = (
            ", ".join(f"{fn} {n / total:.0%}" for fn, n in own.most_common(top)) if total else "no samples"
        )
        notes.append(f"profile {label}/{name} (self time, {total} samples): {listed}")
    return notes


# --- the webhook receiver (bench.receiver, a process of its own) ------------------------------------------


@dataclass
class Arrival:
    at: float
    webhook_id: str
    type: str
    subject: str


class Receiver:
    """`bench.receiver` in a process of its own on 127.0.0.1; `stop()` ends it."""

    def __init__(self) -> None:
        self.port = free_port()
        command = [sys.executable, "-m", "uvicorn", "bench.receiver:app", "--host", "127.0.0.1"]
        command += ["--port", str(self.port), "--log-level", "warning", "--no-access-log"]
        self.process = subprocess.Popen(command, cwd=Path(__file__).resolve().parents[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.seen = 0
        self._http = httpx.AsyncClient(base_url=self.url, timeout=10)

    @property
    def hooks(self) -> str:
        return f"{self.url}/hooks"

    async def ready(self) -> None:
        async def up() -> bool:
            try:
                return (await self._http.get("/stats")).status_code == 200
            except httpx.HTTPError:
                return False

        await wait_for(up, timeout=30, interval=0.1, what="the webhook receiver")

    async def stats(self) -> dict[str, float]:
        found: dict[str, float] = (await self._http.get("/stats")).json()
        return found

    async def new_arrivals(self) -> list[Arrival]:
        """The webhooks received since the last call."""
        rows = (await self._http.get("/events", params={"since": self.seen})).json()
        self.seen += len(rows)
        return [Arrival(*row) for row in rows]

    async def stop(self) -> None:
        await self._http.aclose()
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

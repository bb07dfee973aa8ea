"""Local single-node Apache Kafka (KRaft) for development and tests.

The broker runs from the jars that Maven collects from ``deploy/kafka/pom.xml``
into ``deploy/kafka/libs/`` (see :func:`fetch_jars`); no Kafka distribution,
container or network access beyond Maven Central is needed.

Typical use::

    fetch_jars()                       # once; idempotent
    with LocalKafka(tmp_path / "kafka", port=free_port(),
                    controller_port=free_port()) as kafka:
        connect(kafka.bootstrap_servers)

    # Three combined broker+controller nodes, replicated like production
    # (replication factor 3, min.insync.replicas=2); kill(node) for fault tests.
    with LocalKafkaCluster(tmp_path / "cluster", nodes=3) as cluster:
        connect(cluster.bootstrap_servers)   # every node, comma-separated
        cluster.kill(2)
        cluster.start(2)

Everything here is standard library only.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import hashlib
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import time
import uuid
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from string import Template
from types import TracebackType
from typing import IO

from icep.platform.processes import die_with_parent

__all__ = [
    "KAFKA_DIR",
    "KafkaLocalError",
    "KafkaSetupError",
    "KafkaStartError",
    "LocalKafka",
    "LocalKafkaCluster",
    "cluster_settings",
    "fetch_jars",
    "free_port",
    "free_ports",
    "jars_present",
    "random_cluster_id",
]

_HOST = "127.0.0.1"
# Written to the broker log before each start, so a failure report can show
# the current run only.
_RUN_MARKER = "--- icep LocalKafka start"
_POM = "pom.xml"
_LIBS = "libs"
_TEMPLATE = "server.properties.template"
_LOG4J2 = "log4j2.properties"

# Jar name prefixes that must all be in libs/ for a usable broker classpath.
_REQUIRED_JAR_PREFIXES = (
    "kafka-clients-",
    "kafka-server-",
    "kafka-raft-",
    "kafka-metadata-",
    "kafka-storage-",
    "scala-library-",
    "slf4j-api-",
    "log4j-api-",
    "log4j-core-",
    "log4j-slf4j-impl-",
)

# JVM flags: a dev/test broker wants a fast start and a small footprint more
# than throughput.  C1 only (TieredStopAtLevel=1) and the serial collector cut
# start-up CPU on a 2-core machine (~1.9 s to ready instead of ~2.7 s with
# G1 and the full JIT).  On top of the JDK's default CDS archive
# (Xshare:auto), LocalKafka keeps a dynamic AppCDS archive of the Kafka
# classes (see _cds_archive), which brings a start down to ~1 s.
_JVM_FLAGS = (
    "-Xms256m",
    "-Xmx512m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-Xshare:auto",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
)
# A node of a LocalKafkaCluster: three JVMs share a small machine, and a
# dev/test broker's working set is well under 100 MB.  (The CDS archive is
# the single node's: a dynamic archive does not depend on the heap size.)
_CLUSTER_HEAP = ("-Xms96m", "-Xmx320m")
_TOOL_JVM_FLAGS = (
    "-Xmx256m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-Xshare:auto",
    "-Djava.awt.headless=true",
)
# CDS problems (stale or unusable archive) only ever disable the archive;
# keep the JVM's CDS warnings out of the broker log.
_CDS_QUIET = "-Xlog:cds=off,cds+dynamic=off"
_CDS_DIR = ".cds"
_CDS_TMP_MAX_AGE_S = 3600.0
# Exit codes of a JVM that ran its shutdown hooks (and so wrote its archive).
_CLEAN_EXIT_CODES = (0, 128 + signal.SIGTERM, 128 + signal.SIGINT)


class KafkaLocalError(RuntimeError):
    """Base class of the errors raised by this module."""


class KafkaSetupError(KafkaLocalError):
    """Tools (java, mvn) or jars are missing, or a setup command failed."""


class KafkaStartError(KafkaLocalError):
    """The broker did not become ready (it died or timed out)."""


def _find_kafka_dir() -> Path:
    """Locate ``deploy/kafka``: ``$ICEP_KAFKA_HOME``, else walk up from here."""
    override = os.environ.get("ICEP_KAFKA_HOME")
    if override:
        return Path(override).expanduser().resolve()
    starts = (Path(__file__).resolve().parent, Path.cwd().resolve())
    for start in starts:
        for folder in (start, *start.parents):
            candidate = folder / "deploy" / "kafka"
            if (candidate / _POM).is_file():
                return candidate
    # Not found (e.g. installed outside the repo): functions that need the
    # folder raise KafkaSetupError with this path in the message.
    return Path.cwd().resolve() / "deploy" / "kafka"


KAFKA_DIR: Path = _find_kafka_dir()


def _ephemeral_low() -> int:
    """The lowest port the kernel hands out to outgoing connections (Linux; 32768 elsewhere)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago.

    Chosen below the ephemeral range: a port the kernel picks for `bind(0)` may be taken a moment later
    as the local end of some outgoing connection (Kafka clients and HTTP pools open many), and the
    server meant for it then fails with "address already in use".
    """
    low = _ephemeral_low()
    if low > 12000:
        for _ in range(100):
            port = random.randint(10000, low - 1)
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                try:
                    sock.bind((_HOST, port))
                except OSError:
                    continue
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_HOST, 0))
        chosen: int = sock.getsockname()[1]
        return chosen


def free_ports(count: int) -> list[int]:
    """Return ``count`` distinct free TCP ports on 127.0.0.1."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.bind((_HOST, 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def random_cluster_id() -> str:
    """A random Kafka cluster id: 16 random bytes, base64url, no padding.

    Same shape as ``kafka-storage random-uuid`` (22 characters); like Kafka,
    never returns an id starting with ``-`` (it would look like a CLI flag).
    """
    while True:
        raw = uuid.uuid4().bytes
        text = base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")
        if not text.startswith("-"):
            return text


def _kafka_version(kafka_dir: Path) -> str | None:
    """The ``kafka.version`` property of the pom, if it can be read."""
    try:
        pom = (kafka_dir / _POM).read_text(encoding="utf-8")
    except OSError:
        return None
    match = re.search(r"<kafka\.version>\s*([^<\s]+)\s*</kafka\.version>", pom)
    return match.group(1) if match else None


def _jars_complete(libs: Path, kafka_version: str | None) -> bool:
    if not libs.is_dir():
        return False
    names = [entry.name for entry in libs.iterdir() if entry.name.endswith(".jar")]
    for prefix in _REQUIRED_JAR_PREFIXES:
        if not any(name.startswith(prefix) for name in names):
            return False
    if kafka_version is not None:
        return f"kafka_2.13-{kafka_version}.jar" in names
    return any(name.startswith("kafka_2.13-") for name in names)


def jars_present(kafka_dir: Path = KAFKA_DIR) -> bool:
    """True if ``kafka_dir/libs`` holds a complete broker classpath.

    The Kafka core jar must match the ``kafka.version`` of the pom, so a
    version bump in the pom makes :func:`fetch_jars` download again.
    """
    return _jars_complete(kafka_dir / _LIBS, _kafka_version(kafka_dir))


def _require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise KafkaSetupError(
            f"'{name}' is not on PATH; the local Kafka broker needs Java 17+ "
            "and Maven 3.6+ (Debian: apt-get install openjdk-17-jre-headless maven)"
        )
    return path


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


def fetch_jars(kafka_dir: Path = KAFKA_DIR, *, quiet: bool = True) -> Path:
    """Collect the broker's jars into ``kafka_dir/libs`` and return that path.

    Idempotent: does nothing if the jars are already there.  Maven writes into
    a temporary sibling folder that is renamed to ``libs`` only once complete,
    so an interrupted download never leaves a partial classpath behind.
    """
    libs = kafka_dir / _LIBS
    if jars_present(kafka_dir):
        return libs
    if not (kafka_dir / _POM).is_file():
        raise KafkaSetupError(f"no {_POM} in {kafka_dir} (set ICEP_KAFKA_HOME?)")
    mvn = _require_tool("mvn")
    _require_tool("java")

    tmp = kafka_dir / f".{_LIBS}.tmp-{uuid.uuid4().hex[:12]}"
    cmd = [
        mvn,
        "-B",
        "-f",
        str(kafka_dir / _POM),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={tmp}",
        "-DincludeScope=runtime",
    ]
    if quiet:
        cmd.insert(1, "-q")
    try:
        # quiet: capture Maven's output (shown only on failure); else inherit.
        capture = subprocess.PIPE if quiet else None
        result = subprocess.run(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=capture,
            stderr=subprocess.STDOUT if quiet else None,
            text=True,
            check=False,
        )
        output: str = result.stdout or ""
        if result.returncode != 0:
            raise KafkaSetupError(
                f"mvn dependency:copy-dependencies failed (exit {result.returncode})"
                + (f":\n{_tail(output)}" if output else "")
            )
        if not _jars_complete(tmp, _kafka_version(kafka_dir)):
            raise KafkaSetupError(f"mvn finished but {tmp} lacks required jars")
        if libs.exists() and not jars_present(kafka_dir):
            # Stale or partial set from an earlier (manual) run: replace it.
            shutil.rmtree(libs)
        try:
            tmp.rename(libs)
        except OSError:
            # Another process finished first; fine if its set is complete.
            if not jars_present(kafka_dir):
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return libs


def _probe_broker(port: int, timeout: float) -> bool:
    """True if the broker on ``port`` answers a Metadata request listing itself.

    A bare TCP connect is not enough (the port may be held by something else,
    or a dying broker may still accept connections).  This sends a Metadata
    v4 request for no topics and checks that the reply lists at least one
    registered, unfenced broker, which is when clients can use it.
    """
    return bool(_metadata_brokers(port, timeout))


def _metadata_brokers(port: int, timeout: float) -> list[int]:
    """Ids of the registered, unfenced brokers the node on ``port`` knows (empty if it does not answer)."""
    correlation_id = 0x1CE9
    client_id = b"icep-kafka-local"
    # Request header v1: api_key=3 (Metadata), api_version=4, correlation id,
    # client id.  Body v4: topics=[] (none), allow_auto_topic_creation=false.
    payload = (
        struct.pack(">hhih", 3, 4, correlation_id, len(client_id)) + client_id + struct.pack(">ib", 0, 0)
    )
    try:
        with socket.create_connection((_HOST, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(struct.pack(">i", len(payload)) + payload)
            head = _recv_exact(sock, 4)
            (size,) = struct.unpack(">i", head)
            if size < 12 or size > 16 * 1024 * 1024:
                return []
            body = _recv_exact(sock, size)
    except OSError:
        return []
    # Response header v0: correlation id; body v4: throttle_time_ms, brokers[]
    # (node_id int32, host string, port int32, rack nullable string).
    try:
        got_id, _throttle, broker_count = struct.unpack_from(">iii", body, 0)
        if got_id != correlation_id:
            return []
        ids: list[int] = []
        offset = 12
        for _ in range(broker_count):
            (node_id,) = struct.unpack_from(">i", body, offset)
            (host_len,) = struct.unpack_from(">h", body, offset + 4)
            offset += 6 + host_len + 4
            (rack_len,) = struct.unpack_from(">h", body, offset)
            offset += 2 + max(rack_len, 0)
            ids.append(node_id)
    except struct.error:
        return []
    return ids


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks: list[bytes] = []
    remaining = size
    while remaining > 0:
        chunk = sock.recv(min(remaining, 65536))
        if not chunk:
            raise ConnectionError("connection closed by broker")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _cds_archive(kafka_dir: Path, java: str) -> Path:
    """Where the broker's dynamic AppCDS archive lives for this JDK and jar set.

    The name hashes the java binary and the name, size and mtime of every jar
    (and the JVM flags), so a JDK upgrade or a new jar set gets a fresh
    archive; the folder sits inside ``libs/`` and goes away with it.  A JVM
    that cannot use an archive just ignores it (``-Xshare:auto``).
    """
    libs = kafka_dir / _LIBS
    digest = hashlib.sha256()
    java_path = Path(java).resolve()
    try:
        java_stat = java_path.stat()
        digest.update(f"{java_path}|{java_stat.st_size}|{java_stat.st_mtime_ns}".encode())
    except OSError:
        digest.update(str(java_path).encode())
    digest.update("|".join(_JVM_FLAGS).encode())
    for jar in sorted(libs.glob("*.jar")):
        jar_stat = jar.stat()
        digest.update(f"|{jar.name}|{jar_stat.st_size}|{jar_stat.st_mtime_ns}".encode())
    return libs / _CDS_DIR / f"broker-{digest.hexdigest()[:16]}.jsa"


def _cds_enabled_by_env() -> bool:
    return os.environ.get("ICEP_KAFKA_CDS", "1").strip().lower() not in (
        "0",
        "false",
        "no",
        "off",
    )


def _escape_property(value: str) -> str:
    """Escape a value for a Java .properties file."""
    return value.replace("\\", "\\\\")


def _apply_settings(text: str, settings: Mapping[str, str | None]) -> str:
    """``server.properties`` text with ``settings`` applied: a key's line replaced (or dropped for None), keys
    the text lacks appended.  The template stays the single node's; a cluster node only says what differs."""
    if not settings:
        return text
    pending = dict(settings)
    lines: list[str] = []
    for line in text.splitlines():
        key = line.split("=", 1)[0].strip() if "=" in line and not line.lstrip().startswith("#") else None
        if key is not None and key in pending:
            value = pending.pop(key)
            if value is not None:
                lines.append(f"{key}={value}")
            continue
        lines.append(line)
    extra = [f"{key}={value}" for key, value in pending.items() if value is not None]
    if extra:
        lines += ["", "############################# Set by LocalKafka #############################", *extra]
    return "\n".join(lines) + "\n"


def cluster_settings(node_id: int, voters: str, nodes: int) -> dict[str, str | None]:
    """What a node of an ``nodes``-node cluster sets beyond the single node's template.

    A static controller quorum (``controller.quorum.voters``; the storage is
    formatted without ``--standalone``), and production's replication: every
    topic, internal ones included, on up to three nodes, writes acknowledged
    by two of them (``min.insync.replicas``), so one node may die without
    stopping writes or losing acknowledged records.  One line per setting, so
    that changes from elsewhere merge easily.
    """
    replicas = min(nodes, 3)
    min_isr = max(1, min(2, replicas - 1))
    return {
        "node.id": str(node_id),
        "controller.quorum.bootstrap.servers": None,
        "controller.quorum.voters": voters,
        "default.replication.factor": str(replicas),
        "min.insync.replicas": str(min_isr),
        "offsets.topic.replication.factor": str(replicas),
        "transaction.state.log.replication.factor": str(replicas),
        "transaction.state.log.min.isr": str(min_isr),
        "share.coordinator.state.topic.replication.factor": str(replicas),
        "share.coordinator.state.topic.min.isr": str(min_isr),
        # Three JVMs on a small machine: fewer threads each.
        "num.io.threads": "2",
        "background.threads": "2",
    }


# Brokers started and not yet stopped: stopped at interpreter exit, so a
# crashed test run does not leave JVMs behind (a SIGKILLed Python still can).
_live: set[LocalKafka] = set()


@atexit.register
def _stop_all_at_exit() -> None:
    for kafka in list(_live):
        with contextlib.suppress(Exception):  # best effort at interpreter exit
            kafka.stop(timeout=10.0)


class LocalKafka:
    """A single-node KRaft broker+controller running as a child JVM.

    ``data_dir`` holds the rendered ``server.properties``, the Kafka log
    directory (``data_dir/kafka-logs``) and, unless ``log_file`` is given, the
    broker's console output (``data_dir/broker.log``, appended to).  Stopping
    and starting again on the same ``data_dir`` keeps all topics and records
    (the ports may differ between runs).

    ``use_cds`` (default on, also switched off by ``ICEP_KAFKA_CDS=0``): the
    first broker that stops cleanly writes a class-data-sharing archive next
    to the jars, which later JVMs (broker and storage tool) map at start-up.
    """

    def __init__(
        self,
        data_dir: Path,
        port: int = 9092,
        controller_port: int = 9093,
        kafka_dir: Path = KAFKA_DIR,
        log_file: Path | None = None,
        *,
        use_cds: bool = True,
        settings: Mapping[str, str | None] | None = None,
        cluster_id: str | None = None,
        heap: tuple[str, ...] | None = None,
    ) -> None:
        if port == controller_port:
            raise ValueError("port and controller_port must differ")
        self.data_dir = Path(data_dir).resolve()
        self.port = port
        self.controller_port = controller_port
        self.kafka_dir = Path(kafka_dir).resolve()
        self.log_file = Path(log_file).resolve() if log_file else self.data_dir / "broker.log"
        self.use_cds = use_cds and _cds_enabled_by_env()
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_handle: IO[bytes] | None = None
        # (temporary file the JVM dumps its archive to, final archive path)
        self._cds_pending: tuple[Path, Path] | None = None
        #: ``server.properties`` lines that differ from the template (None drops a line): a cluster node's.
        self.settings: dict[str, str | None] = dict(settings or {})
        #: The cluster id storage is formatted with (random when not given).
        self.cluster_id = cluster_id
        #: JVM heap flags instead of the single node's (``-Xms``/``-Xmx``).
        self.heap = heap

    # ------------------------------------------------------------------ paths
    @property
    def bootstrap_servers(self) -> str:
        return f"{_HOST}:{self.port}"

    @property
    def config_file(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def log_dir(self) -> Path:
        """Kafka's ``log.dirs`` (topic data and KRaft metadata)."""
        return self.data_dir / "kafka-logs"

    @property
    def pid(self) -> int | None:
        """PID of the broker JVM while it is running, else None."""
        return self._proc.pid if self.is_running() and self._proc else None

    def is_formatted(self) -> bool:
        return (self.log_dir / "meta.properties").is_file()

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # ------------------------------------------------------------------ setup
    def _classpath(self) -> str:
        libs = self.kafka_dir / _LIBS
        if not jars_present(self.kafka_dir):
            raise KafkaSetupError(
                f"Kafka jars missing in {libs}; call fetch_jars() or run: "
                "mvn -q -B -f deploy/kafka/pom.xml dependency:copy-dependencies "
                "-DoutputDirectory=deploy/kafka/libs -DincludeScope=runtime"
            )
        return str(libs / "*")

    def _log4j_option(self) -> str:
        return f"-Dlog4j2.configurationFile={self.kafka_dir / _LOG4J2}"

    def _cds_options(self, java: str, *, dump: bool) -> list[str]:
        """JVM options to use (or, if ``dump`` and missing, create) the archive."""
        if not self.use_cds:
            return []
        archive = _cds_archive(self.kafka_dir, java)
        if archive.is_file():
            return [_CDS_QUIET, f"-XX:SharedArchiveFile={archive}"]
        if not dump or self._cds_pending is not None:
            return []
        try:
            archive.parent.mkdir(parents=True, exist_ok=True)
            now = time.time()
            for stale in archive.parent.glob("*.tmp-*"):
                if now - stale.stat().st_mtime > _CDS_TMP_MAX_AGE_S:
                    stale.unlink(missing_ok=True)
        except OSError:
            return []  # read-only libs/: run without an archive
        if not os.access(archive.parent, os.W_OK):
            return []
        tmp = archive.with_name(f"{archive.name}.tmp-{uuid.uuid4().hex[:12]}")
        self._cds_pending = (tmp, archive)
        return [_CDS_QUIET, f"-XX:ArchiveClassesAtExit={tmp}"]

    def _finish_cds(self, returncode: int | None) -> None:
        """Publish the archive a cleanly exited JVM wrote, else drop it."""
        if self._cds_pending is None:
            return
        tmp, archive = self._cds_pending
        self._cds_pending = None
        try:
            if returncode in _CLEAN_EXIT_CODES and tmp.is_file() and tmp.stat().st_size:
                tmp.replace(archive)
            else:
                tmp.unlink(missing_ok=True)
        except OSError:
            pass

    def write_config(self) -> Path:
        """Render ``server.properties`` into ``data_dir`` and return its path."""
        template_path = self.kafka_dir / _TEMPLATE
        try:
            template = Template(template_path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise KafkaSetupError(f"cannot read {template_path}: {exc}") from exc
        text = template.substitute(
            port=self.port,
            controller_port=self.controller_port,
            log_dirs=_escape_property(str(self.log_dir)),
        )
        text = _apply_settings(text, self.settings)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.config_file.with_suffix(".properties.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(self.config_file)
        return self.config_file

    def format_storage(self) -> None:
        """Write the config and format the log dir unless already formatted."""
        java = _require_tool("java")
        classpath = self._classpath()
        self.write_config()
        if self.is_formatted():
            return
        cmd = [
            java,
            *_TOOL_JVM_FLAGS,
            *self._cds_options(java, dump=False),
            self._log4j_option(),
            "-cp",
            classpath,
            "kafka.tools.StorageTool",
            "format",
            # A static quorum (a cluster's controller.quorum.voters) is formatted without it.
            *([] if self.settings.get("controller.quorum.voters") else ["--standalone"]),
            "-t",
            self.cluster_id or random_cluster_id(),
            "-c",
            str(self.config_file),
        ]
        result = subprocess.run(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            check=False,
        )
        if result.returncode != 0 or not self.is_formatted():
            raise KafkaSetupError(
                f"kafka StorageTool format failed (exit {result.returncode}):\n" + _tail(result.stdout)
            )

    # -------------------------------------------------------------- lifecycle
    def start(self) -> None:
        """Start the broker JVM (formatting storage first if needed).

        Returns at once; call :meth:`wait_ready` to wait until it serves.
        """
        if self.is_running():
            raise KafkaLocalError(f"broker already running (pid {self.pid})")
        self._reap()
        self.format_storage()
        java = _require_tool("java")
        flags = list(_JVM_FLAGS)
        if self.heap is not None:
            flags = [f for f in flags if not f.startswith(("-Xms", "-Xmx"))] + list(self.heap)
        cmd = [
            java,
            *flags,
            *self._cds_options(java, dump=True),
            self._log4j_option(),
            "-cp",
            self._classpath(),
            "kafka.Kafka",
            str(self.config_file),
        ]
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        handle = self.log_file.open("ab")
        handle.write(f"{_RUN_MARKER} {time.ctime()} ---\n".encode())
        handle.flush()
        try:
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=handle,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                start_new_session=True,
                preexec_fn=die_with_parent(),
            )
        except BaseException:
            handle.close()
            self._finish_cds(None)
            raise
        self._log_handle = handle
        _live.add(self)

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Block until the broker serves requests; raise if it dies or times out."""
        if self._proc is None:
            raise KafkaStartError("broker was not started")
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                raise KafkaStartError(
                    f"broker exited with code {self._proc.returncode} before it was ready"
                    + self._failure_details()
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise KafkaStartError(
                    f"broker not ready on {self.bootstrap_servers} after {timeout:.0f}s"
                    + self._failure_details()
                )
            if _probe_broker(self.port, timeout=min(1.0, max(remaining, 0.1))):
                # The process might have died right after answering.
                if self._proc.poll() is None:
                    return
            else:
                time.sleep(min(0.1, max(deadline - time.monotonic(), 0.0)))

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM the broker (clean shutdown), SIGKILL after ``timeout``.

        Idempotent: does nothing if the broker is not running.  The first
        clean stop after a new jar set or JDK also writes the CDS archive,
        which adds a few seconds to that one stop.
        """
        proc = self._proc
        if proc is not None and proc.poll() is None:
            try:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._reap()

    def kill(self) -> None:
        """SIGKILL the broker at once (a crash, for fault tests)."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        self._reap()

    def _reap(self) -> None:
        if self._proc is not None and self._proc.poll() is not None:
            self._finish_cds(self._proc.returncode)
            self._proc = None
        if self._proc is None:
            if self._log_handle is not None:
                self._log_handle.close()
                self._log_handle = None
            _live.discard(self)

    def _failure_details(self) -> str:
        """First ERROR lines and the tail of the current run's log."""
        text = self.log_tail(lines=400)
        run = text.rsplit(_RUN_MARKER, 1)[-1].splitlines()
        errors = [line for line in run if " ERROR " in line or " FATAL " in line][:5]
        parts = [f"; see {self.log_file}"]
        if errors:
            parts.append("\nfirst errors:\n" + "\n".join(errors))
        parts.append("\nlast lines:\n" + "\n".join(run[-30:]))
        return "".join(parts)

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the broker's console log."""
        try:
            with self.log_file.open("rb") as handle:
                handle.seek(0, os.SEEK_END)
                size = handle.tell()
                handle.seek(max(0, size - 64 * 1024))
                data = handle.read()
        except OSError:
            return "(no log)"
        return _tail(data.decode("utf-8", errors="replace"), lines)

    # -------------------------------------------------------- context manager
    def __enter__(self) -> LocalKafka:
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid={self.pid}" if self.is_running() else "stopped"
        return f"LocalKafka({self.bootstrap_servers}, {self.data_dir}, {state})"


def _existing_cluster_id(log_dirs: list[Path]) -> str | None:
    """The cluster id an earlier run formatted one of these log dirs with (so a half-formatted cluster
    is completed with the same id rather than split in two)."""
    for log_dir in log_dirs:
        try:
            text = (log_dir / "meta.properties").read_text(encoding="utf-8")
        except OSError:
            continue
        match = re.search(r"^cluster\.id=(\S+)$", text, re.MULTILINE)
        if match:
            return match.group(1)
    return None


class LocalKafkaCluster:
    """``nodes`` combined broker+controller KRaft nodes (child JVMs), replicated like production.

    Node ``i`` (1..nodes) keeps its data in ``data_dir/node-<i>`` and listens on ``ports[i-1]`` (clients)
    and ``controller_ports[i-1]`` (the quorum); free ports are chosen when not given.  All nodes are
    controller voters (a static quorum) and formatted with one cluster id.  Topics default to replication
    factor 3 and ``min.insync.replicas=2`` (see :func:`cluster_settings`), so with three nodes any one may
    be killed (:meth:`kill`) while producers with ``acks=all`` keep writing and nothing acknowledged is
    lost; :meth:`start` of that node brings it back into the cluster.
    """

    def __init__(
        self,
        data_dir: Path,
        nodes: int = 3,
        ports: list[int] | None = None,
        controller_ports: list[int] | None = None,
        kafka_dir: Path = KAFKA_DIR,
        *,
        use_cds: bool = True,
    ) -> None:
        if nodes < 1:
            raise ValueError("a cluster has at least one node")
        self.data_dir = Path(data_dir).resolve()
        if ports is None or controller_ports is None:
            chosen: set[int] = set()
            while len(chosen) < 2 * nodes:
                chosen.add(free_port())
            spare = sorted(chosen)
            ports = ports or spare[:nodes]
            controller_ports = controller_ports or spare[nodes:]
        if len(ports) != nodes or len(controller_ports) != nodes:
            raise ValueError(f"{nodes} nodes need {nodes} ports and {nodes} controller ports")
        if len({*ports, *controller_ports}) != 2 * nodes:
            raise ValueError("every port must differ")
        voters = ",".join(f"{i}@{_HOST}:{cp}" for i, cp in enumerate(controller_ports, start=1))
        dirs = [self.data_dir / f"node-{i}" for i in range(1, nodes + 1)]
        cluster_id = _existing_cluster_id([d / "kafka-logs" for d in dirs]) or random_cluster_id()
        self.cluster_id = cluster_id
        self.nodes: dict[int, LocalKafka] = {
            i: LocalKafka(
                dirs[i - 1],
                port=ports[i - 1],
                controller_port=controller_ports[i - 1],
                kafka_dir=kafka_dir,
                use_cds=use_cds,
                settings=cluster_settings(i, voters, nodes),
                cluster_id=cluster_id,
                heap=_CLUSTER_HEAP,
            )
            for i in range(1, nodes + 1)
        }

    @property
    def bootstrap_servers(self) -> str:
        """Every node's client address, comma-separated (what clients and services are given)."""
        return ",".join(node.bootstrap_servers for node in self.nodes.values())

    @property
    def pids(self) -> dict[int, int | None]:
        return {i: node.pid for i, node in self.nodes.items()}

    def node(self, node_id: int) -> LocalKafka:
        try:
            return self.nodes[node_id]
        except KeyError:
            raise KafkaLocalError(f"no node {node_id}; nodes are {sorted(self.nodes)}") from None

    def node_at(self, address: str) -> int:
        """The id of the node whose client address (``host:port``) this is."""
        for i, node in self.nodes.items():
            if node.bootstrap_servers == address:
                return i
        raise KafkaLocalError(f"no node listens on {address}")

    def start(self, node: int | None = None) -> None:
        """Start one node (formatting it if new), or every node that is not running.

        Returns at once; :meth:`wait_ready` waits until they serve.  The nodes' storage is formatted in
        parallel (one short JVM each), then all JVMs start together: a quorum needs a majority up.
        """
        targets = [self.node(node)] if node is not None else [n for n in self.nodes.values()]
        targets = [n for n in targets if not n.is_running()]
        unformatted = [n for n in targets if not n.is_formatted()]
        if len(unformatted) > 1:
            with ThreadPoolExecutor(max_workers=len(unformatted)) as pool:
                for future in [pool.submit(n.format_storage) for n in unformatted]:
                    future.result()
        for n in targets:
            n.start()

    def wait_ready(self, timeout: float = 90.0) -> None:
        """Block until every running node serves and every one of them is a registered broker (so a topic
        of replication factor ``len(nodes)`` can be created at once)."""
        deadline = time.monotonic() + timeout
        running = {i: n for i, n in self.nodes.items() if n.is_running()}
        for n in running.values():
            n.wait_ready(max(deadline - time.monotonic(), 1.0))
        want = set(running)
        seen: list[int] = []
        while time.monotonic() < deadline:
            seen = []
            for n in running.values():
                seen = _metadata_brokers(n.port, timeout=1.0)
                if seen:
                    break
            if want <= set(seen):
                return
            time.sleep(0.1)
        raise KafkaStartError(
            f"brokers {sorted(want)} not all registered after {timeout:.0f}s (metadata lists {sorted(seen)})"
        )

    def kill(self, node: int | None = None) -> None:
        """SIGKILL one node (a crash, for fault tests), or every node (a test's throwaway cluster: a clean
        shutdown of a cluster takes seconds)."""
        for n in [self.node(node)] if node is not None else list(self.nodes.values()):
            n.kill()

    def stop(self, node: int | None = None, timeout: float = 20.0) -> None:
        """Stop one node, or all of them (in parallel: each clean shutdown waits on the others)."""
        targets = [self.node(node)] if node is not None else list(self.nodes.values())
        running = [n for n in targets if n.is_running()]
        if len(running) > 1:
            with ThreadPoolExecutor(max_workers=len(running)) as pool:
                for future in [pool.submit(n.stop, timeout) for n in running]:
                    future.result()
        for n in targets:
            n.stop(timeout)

    def __enter__(self) -> LocalKafkaCluster:
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        states = ", ".join(
            f"{i}: {'pid ' + str(n.pid) if n.is_running() else 'stopped'}" for i, n in self.nodes.items()
        )
        return f"LocalKafkaCluster({self.bootstrap_servers}, {states})"

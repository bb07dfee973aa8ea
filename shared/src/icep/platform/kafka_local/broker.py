"""One local KRaft broker+controller as a child JVM (:class:`LocalKafka`): storage formatting, start,
readiness, clean stop or kill, and its console log.

Brokers still running when the interpreter exits are stopped then.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from string import Template
from types import TracebackType
from typing import IO

from icep.platform.kafka_local.config import _TEMPLATE, _apply_settings, _escape_property, random_cluster_id
from icep.platform.kafka_local.errors import KafkaLocalError, KafkaSetupError, KafkaStartError
from icep.platform.kafka_local.jars import _LIBS, KAFKA_DIR, _require_tool, _tail, jars_present
from icep.platform.kafka_local.jvm import (
    _CDS_QUIET,
    _CDS_TMP_MAX_AGE_S,
    _CLEAN_EXIT_CODES,
    _JVM_FLAGS,
    _TOOL_JVM_FLAGS,
    _cds_archive,
    _cds_enabled_by_env,
)
from icep.platform.kafka_local.ports import _HOST
from icep.platform.kafka_local.probe import _probe_broker
from icep.platform.processes import die_with_parent

# Written to the broker log before each start, so a failure report can show
# the current run only.
_RUN_MARKER = "--- icep LocalKafka start"


_LOG4J2 = "log4j2.properties"


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

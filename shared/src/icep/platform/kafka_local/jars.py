"""The broker's classpath: where ``deploy/kafka`` is, whether its ``libs/`` holds a complete jar set
for the pom's Kafka version, and collecting that set with Maven (:func:`fetch_jars`).

Also the look-up of the command-line tools (java, mvn) the broker and the download need.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path

from icep.platform.kafka_local.errors import KafkaSetupError

_POM = "pom.xml"


_LIBS = "libs"


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

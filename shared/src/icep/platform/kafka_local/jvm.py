"""How the broker's JVMs are started: heap and JIT flags for a single node, a cluster node and the
storage tool, and the dynamic class-data-sharing (AppCDS) archive that makes later starts faster.
"""

from __future__ import annotations

import hashlib
import os
import signal
from pathlib import Path

from icep.platform.kafka_local.jars import _LIBS

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

"""The broker's configuration: ``server.properties`` rendered from the template with per-node
settings applied, what a node of a replicated cluster sets (:func:`cluster_settings`), and cluster ids.
"""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Mapping
from pathlib import Path

_TEMPLATE = "server.properties.template"


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

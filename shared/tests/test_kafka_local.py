"""End-to-end test of the local KRaft broker (icep.platform.kafka_local).

Starts a real single-node Kafka from deploy/kafka/libs (downloaded with Maven
on first use), produces and consumes a record with aiokafka, restarts the
broker on the same data dir and reads the record back.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from icep.platform.kafka_local import (
    KafkaStartError,
    LocalKafka,
    LocalKafkaCluster,
    fetch_jars,
    free_port,
    free_ports,
    jars_present,
    random_cluster_id,
)

aiokafka = pytest.importorskip("aiokafka")
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition  # noqa: E402
from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # noqa: E402

TOPIC = "icep.test.kafka-local"
READY_TIMEOUT = 90.0


def _ensure_jars() -> None:
    if jars_present():
        return
    if shutil.which("mvn") is None or shutil.which("java") is None:
        pytest.skip("Kafka jars missing and mvn/java not on PATH")
    fetch_jars()


@pytest.fixture
def kafka(tmp_path: Path) -> Iterator[LocalKafka]:
    _ensure_jars()
    port, controller_port = free_ports(2)
    broker = LocalKafka(tmp_path / "kafka", port=port, controller_port=controller_port)
    try:
        broker.start()
        broker.wait_ready(timeout=READY_TIMEOUT)
        yield broker
    finally:
        broker.stop()
        assert not broker.is_running()


async def _read_one(consumer: AIOKafkaConsumer) -> tuple[bytes | None, bytes | None]:
    record = await asyncio.wait_for(consumer.getone(), timeout=30)
    return record.key, record.value


def test_random_cluster_id_shape() -> None:
    for _ in range(200):
        cluster_id = random_cluster_id()
        assert re.fullmatch(r"[A-Za-z0-9_-]{22}", cluster_id)
        assert not cluster_id.startswith("-")


@pytest.mark.asyncio
async def test_produce_consume_restart(kafka: LocalKafka) -> None:
    bootstrap = kafka.bootstrap_servers
    assert bootstrap == f"127.0.0.1:{kafka.port}"
    assert kafka.is_running() and kafka.pid is not None

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(TOPIC, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        await producer.send_and_wait(TOPIC, key=b"k1", value=b"hello icep")
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        TOPIC,
        bootstrap_servers=bootstrap,
        group_id="icep-test-group",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        assert await _read_one(consumer) == (b"k1", b"hello icep")
        await consumer.commit()
    finally:
        await consumer.stop()

    # Restart on the same data dir: the record and the group's offset survive.
    first_pid = kafka.pid
    kafka.stop()
    assert not kafka.is_running() and kafka.pid is None
    kafka.stop()  # idempotent
    kafka.start()
    kafka.wait_ready(timeout=READY_TIMEOUT)
    assert kafka.pid is not None and kafka.pid != first_pid

    reader = AIOKafkaConsumer(
        TOPIC,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
    )
    await reader.start()
    try:
        assert await _read_one(reader) == (b"k1", b"hello icep")
    finally:
        await reader.stop()

    group = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id="icep-test-group")
    await group.start()
    try:
        committed = await group.committed(TopicPartition(TOPIC, 0))
        assert committed == 1
    finally:
        await group.stop()


def test_wait_ready_reports_dead_broker(tmp_path: Path) -> None:
    """A broker that cannot bind its port dies; wait_ready says so with the log."""
    _ensure_jars()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        broker = LocalKafka(tmp_path / "kafka", port=port, controller_port=free_port())
        try:
            broker.start()
            with pytest.raises(KafkaStartError, match="exited with code"):
                broker.wait_ready(timeout=READY_TIMEOUT)
        finally:
            broker.stop()
    assert not broker.is_running()


def _properties(path: Path) -> dict[str, str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    pairs = [line.split("=", 1) for line in lines if "=" in line and not line.startswith("#")]
    return {key.strip(): value.strip() for key, value in pairs}


def test_cluster_node_config(tmp_path: Path) -> None:
    """Each node of a cluster: its own id and ports, a static quorum of all nodes, production's replication;
    the single node's rendering is untouched (no JVM needed)."""
    cluster = LocalKafkaCluster(tmp_path / "cluster", nodes=3)
    configs = {i: _properties(node.write_config()) for i, node in cluster.nodes.items()}
    voters = ",".join(f"{i}@127.0.0.1:{n.controller_port}" for i, n in cluster.nodes.items())
    for i, config in configs.items():
        node = cluster.nodes[i]
        assert config["node.id"] == str(i)
        assert (
            config["listeners"]
            == f"PLAINTEXT://127.0.0.1:{node.port},CONTROLLER://127.0.0.1:{node.controller_port}"
        )
        assert config["controller.quorum.voters"] == voters
        assert "controller.quorum.bootstrap.servers" not in config
        assert config["log.dirs"] == str(tmp_path / "cluster" / f"node-{i}" / "kafka-logs")
        for key in (
            "default.replication.factor",
            "offsets.topic.replication.factor",
            "transaction.state.log.replication.factor",
        ):
            assert config[key] == "3", key
        assert config["min.insync.replicas"] == "2"
        assert config["transaction.state.log.min.isr"] == "2"
    assert cluster.bootstrap_servers == ",".join(f"127.0.0.1:{n.port}" for n in cluster.nodes.values())
    assert (
        len({*[n.port for n in cluster.nodes.values()], *[n.controller_port for n in cluster.nodes.values()]})
        == 6
    )

    single = _properties(
        LocalKafka(tmp_path / "single", port=free_port(), controller_port=free_port()).write_config()
    )
    assert single["node.id"] == "1"
    assert "controller.quorum.voters" not in single
    assert single["default.replication.factor"] == "1"
    assert single["min.insync.replicas"] == "1"

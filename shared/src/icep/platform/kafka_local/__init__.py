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

The package's modules: ``jars`` (the classpath and its download), ``config``
(``server.properties`` and cluster settings), ``jvm`` (JVM flags and the CDS
archive), ``probe`` (the readiness probe), ``ports``, ``broker``
(:class:`LocalKafka`), ``cluster`` (:class:`LocalKafkaCluster`) and ``errors``.
"""

from icep.platform.kafka_local.broker import LocalKafka
from icep.platform.kafka_local.cluster import LocalKafkaCluster
from icep.platform.kafka_local.config import cluster_settings, random_cluster_id
from icep.platform.kafka_local.errors import KafkaLocalError, KafkaSetupError, KafkaStartError
from icep.platform.kafka_local.jars import KAFKA_DIR, fetch_jars, jars_present
from icep.platform.kafka_local.ports import free_port, free_ports

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

"""A local cluster of combined broker+controller nodes replicated like production
(:class:`LocalKafkaCluster`), with per-node start, kill and stop for fault tests.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType

from icep.platform.kafka_local.broker import LocalKafka
from icep.platform.kafka_local.config import _existing_cluster_id, cluster_settings, random_cluster_id
from icep.platform.kafka_local.errors import KafkaLocalError, KafkaStartError
from icep.platform.kafka_local.jars import KAFKA_DIR
from icep.platform.kafka_local.jvm import _CLUSTER_HEAP
from icep.platform.kafka_local.ports import _HOST, free_port
from icep.platform.kafka_local.probe import _metadata_brokers


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
        targets = [self.node(node)] if node is not None else list(self.nodes.values())
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

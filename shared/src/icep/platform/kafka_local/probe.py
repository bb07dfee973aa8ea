"""Readiness probe: a raw Kafka Metadata request telling whether a node serves and which brokers
it knows, with no Kafka client library needed.
"""

from __future__ import annotations

import socket
import struct

from icep.platform.kafka_local.ports import _HOST


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

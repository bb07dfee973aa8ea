"""Free TCP ports on the loopback address, for local brokers and the services and tests beside them.

Ports are picked below the kernel's ephemeral range where it can be read, so a port handed out here
is not taken a moment later as the local end of an outgoing connection.
"""

from __future__ import annotations

import random
import socket

_HOST = "127.0.0.1"


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

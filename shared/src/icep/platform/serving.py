"""Serve a service from one process and one event loop: its API on the API port, its management app
(/metrics, health, the service's own API documents) on the management port.

The API server runs the app's lifespan and takes the signals; the management server has no lifespan of
its own and stops when the API server has stopped. Both ports are bound before anything starts, so a port
that is taken ends the process at once, with the error logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import socket
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI

from icep.platform.app import management_of
from icep.platform.settings import ServiceSettings


class _ManagementServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The API server takes SIGTERM and SIGINT; this one stops when that one has.
        yield


def run(app: FastAPI, settings: ServiceSettings) -> None:
    """Serve `app` (made by `service_app`) and its management app until SIGTERM or SIGINT."""
    # What exists now (modules, the app, its routes: about 160,000 objects) lives as long as the process.
    # Frozen, the collector's full passes stop scanning it: each took about 0.1 s of CPU under load, a
    # pause of the event loop every few seconds.
    gc.freeze()
    api_config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
        # Longer than the gateway keeps an idle pooled connection (30 s), so the gateway never sends a
        # request on a connection the service is closing at that moment (a "disconnected" 502).
        timeout_keep_alive=75,
        # The gateway alone decides whose X-Forwarded-* it believes (ICEP_GATEWAY_FORWARDED_ALLOW_IPS);
        # uvicorn's own proxy headers would trust any 127.0.0.1 peer's claims before it could look.
        proxy_headers=settings.service_name != "gateway",
    )
    host, port = settings.management_address
    management_config = uvicorn.Config(
        management_of(app),
        host=host,
        port=port,
        lifespan="off",
        proxy_headers=False,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=2,
    )
    api_socket = api_config.bind_socket()
    management_socket = management_config.bind_socket()
    with asyncio.Runner(loop_factory=api_config.get_loop_factory()) as runner:
        runner.run(
            _serve(
                uvicorn.Server(api_config),
                api_socket,
                _ManagementServer(management_config),
                management_socket,
            )
        )


async def _serve(
    api: uvicorn.Server,
    api_socket: socket.socket,
    management: uvicorn.Server,
    management_socket: socket.socket,
) -> None:
    serving = asyncio.create_task(management.serve(sockets=[management_socket]), name="management-server")
    try:
        await api.serve(sockets=[api_socket])
    finally:
        management.should_exit = True
        await serving

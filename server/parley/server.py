"""Running the app under uvicorn, with a shutdown that drains the hub before closing sockets."""

from __future__ import annotations

import socket
from typing import Any

import uvicorn
from starlette.applications import Starlette

from parley.app import create_app
from parley.config import Settings


class ParleyServer(uvicorn.Server):
    """uvicorn closes WebSockets with 1012 at once on shutdown; we first flush each client's
    queued frames, then close with 1012 ourselves, then let uvicorn finish."""

    def __init__(self, config: uvicorn.Config, app: Starlette, settings: Settings) -> None:
        super().__init__(config)
        self.parley_app = app
        self.settings = settings

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()  # stop accepting before draining
        hub = getattr(self.parley_app.state, "hub", None)
        if hub is not None:
            await hub.shutdown(self.settings.shutdown_flush_timeout)
        await super().shutdown(sockets)


def uvicorn_config(app: Any, settings: Settings) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        ws="websockets-sansio",
        # Frames above the protocol limit are answered with an error; only frames far above it
        # are cut off by the transport (close 1009) so a hostile client cannot exhaust memory.
        ws_max_size=settings.max_frame_bytes * 4,
        ws_ping_interval=20.0,
        ws_ping_timeout=20.0,
        lifespan="on",
        log_config=None,
        server_header=False,
        timeout_graceful_shutdown=int(settings.shutdown_flush_timeout) + 5,
    )


def run(settings: Settings, *, migrate: bool = True) -> int:
    """Serve until SIGINT/SIGTERM. Returns the process exit code."""
    app = create_app(settings, migrate=migrate)
    server = ParleyServer(uvicorn_config(app, settings), app, settings)
    server.run()
    return 0 if server.started else 1

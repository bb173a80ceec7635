"""Running the app under uvicorn, with a shutdown that drains the hub before closing sockets."""

from __future__ import annotations

import multiprocessing
import multiprocessing.process
import os
import signal
import socket
from typing import Any

import structlog
import uvicorn
from starlette.applications import Starlette

from parley.app import create_app
from parley.config import Settings
from parley.hub.wire import WireProtocol
from parley.logging import configure_logging
from parley.storage.migrate import upgrade

log = structlog.get_logger("parley")


class ParleyServer(uvicorn.Server):
    """uvicorn closes WebSockets with 1012 at once on shutdown; we first flush each client's
    queued frames, then close with 1012 ourselves, then let uvicorn finish."""

    def __init__(self, config: uvicorn.Config, app: Starlette, settings: Settings) -> None:
        super().__init__(config)
        self.parley_app = app
        self.settings = settings

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        if sockets is None:
            sockets = [self.config.bind_socket()]
        for sock in sockets:
            limit_send_buffer(sock, self.settings.socket_send_buffer)
        await super().startup(sockets=sockets)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()  # stop accepting before draining
        hub = getattr(self.parley_app.state, "hub", None)
        if hub is not None:
            await hub.shutdown(self.settings.shutdown_flush_timeout)
        await super().shutdown(sockets)


def limit_send_buffer(sock: socket.socket, size: int) -> None:
    """Cap the kernel send buffer of every connection accepted on ``sock`` (they inherit it).

    Linux otherwise lets a socket's send buffer grow to several megabytes, and a stalled client
    would absorb that much before its frames even reach the hub's queue cap: the cap would only
    act after tens of seconds. ``0`` keeps the kernel's autotuning.
    """
    if size > 0 and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)


def uvicorn_config(app: Any, settings: Settings) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        # websockets-sansio, plus frames written straight to the socket (hub/wire.py).
        ws=WireProtocol,
        # Frames above the protocol limit are answered with an error; only frames far above it
        # are cut off by the transport (close 1009) so a hostile client cannot exhaust memory.
        # /yjs shares the transport: never cut off a document update the settings allow.
        ws_max_size=max(settings.max_frame_bytes * 4, settings.doc_max_update_bytes + 64 * 1024),
        ws_per_message_deflate=settings.ws_compression,
        ws_ping_interval=20.0,
        ws_ping_timeout=20.0,
        lifespan="on",
        backlog=settings.listen_backlog,
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


def run_workers(settings: Settings, workers: int, *, migrate: bool = True) -> int:
    """Serve with ``workers`` processes sharing one listening socket; they must share a broker
    (``redis://``) to see each other's events. Crashed workers are restarted; SIGTERM/SIGINT
    drain every worker gracefully (close 1012) before the supervisor exits."""
    if settings.broker_url.startswith("memory"):
        raise ValueError(
            "--workers needs a shared broker: with memory:// each worker would only see its "
            "own clients. Set --broker-url redis://HOST:6379/0"
        )
    if migrate:
        upgrade(settings.effective_database_url)
    settings.signing_key  # noqa: B018 - generate the shared secret once, before forking
    config = uvicorn_config(None, settings)
    sock = config.bind_socket()
    limit_send_buffer(sock, settings.socket_send_buffer)
    context = multiprocessing.get_context("spawn")
    stopping = False

    def spawn(index: int) -> multiprocessing.process.BaseProcess:
        proc = context.Process(
            target=_worker,
            args=(worker_settings(settings, index), sock),
            name=f"parley-worker-{index}",
            daemon=False,
        )
        proc.start()
        return proc

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for proc in procs:
            if proc.pid is not None and proc.is_alive():
                os.kill(proc.pid, signal.SIGTERM)

    procs = [spawn(i) for i in range(workers)]
    log.info("workers started", workers=workers, port=sock.getsockname()[1])
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while True:
        for i, proc in enumerate(procs):
            proc.join(timeout=0.5)
            if proc.exitcode is not None and not stopping:
                log.warning("worker exited; restarting", worker=i, code=proc.exitcode)
                procs[i] = spawn(i)
        if stopping and all(p.exitcode is not None for p in procs):
            return 0


def worker_settings(settings: Settings, index: int) -> Settings:
    """The settings of worker ``index``: the first runs the background jobs (analysis queue,
    webhook delivery and automation, retention, blob collection), the others only serve.

    The jobs are safe to run in every process (leases and row claims), but N copies of each
    would poll the database N times as often for no gain; a crashed first worker is restarted
    with the same index, so the jobs come back with it."""
    if index == 0:
        return settings
    return settings.model_copy(
        update={
            "analysis_worker": False,
            "integrations_workers": False,
            "retention_interval": 0.0,
            "attachment_gc_interval": 0.0,
        }
    )


def _worker(settings: Settings, sock: socket.socket) -> None:
    configure_logging(settings.log_format, settings.log_level)
    app = create_app(settings, migrate=False)
    server = ParleyServer(uvicorn_config(app, settings), app, settings)
    server.run(sockets=[sock])

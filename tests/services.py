"""Private service instances for tests that stop, kill or reconfigure them (never the shared
ones), and hub processes for multi-process tests."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from websockets.asyncio.client import connect

from parley.governance.auth import create_token
from tests.conftest import TEST_SECRET
from tests.support import WsClient


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class RedisServer:
    """A redis-server of our own on a free port, which a test may stop and start again."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server is not installed")
        self.proc = subprocess.Popen(
            [
                exe,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)  # the process is still starting; nothing to wait on
    raise TimeoutError(f"nothing listens on port {port}")


class HubProcess:
    """``parley serve`` in a subprocess, on its own port, sharing a database and a broker."""

    def __init__(self, name: str, workdir: Path, database_url: str, broker_url: str) -> None:
        self.name = name
        self.port = free_port()
        self.workdir = workdir
        self.env = {
            **os.environ,
            "PARLEY_SECRET": TEST_SECRET,
            "PARLEY_DATABASE_URL": database_url,
            "PARLEY_BROKER_URL": broker_url,
            "PARLEY_LOG_LEVEL": "info",
            "PARLEY_LOG_FORMAT": "json",
            "PARLEY_FRAME_RATE": "10000",
            "PARLEY_FRAME_BURST": "10000",
            "PARLEY_PRESENCE_TTL": "3",
            # Loading the embedding model costs each process seconds of CPU at start-up; these
            # processes test the cluster, and semantic search has its own tests.
            "PARLEY_SEMANTIC": "false",
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / f"{name}.log"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "parley.cli",
                "serve",
                "--port",
                str(self.port),
                "--data-dir",
                str(self.workdir / self.name),
                "--no-migrate",
            ],
            env=self.env,
            stdout=log,
            stderr=log,
        )
        # Generous: under a parallel suite on two cores a start-up takes several seconds.
        deadline = time.monotonic() + 60
        with httpx.Client() as h:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.name} exited: {self.log_path.read_text()[-2000:]}")
                try:
                    if h.get(self.base_url + "/readyz", timeout=1).status_code == 200:
                        return
                except httpx.TransportError:
                    time.sleep(0.05)  # still starting; nothing to wait on
        raise TimeoutError(f"{self.name} did not become ready")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


def token(user: str, tenant: str = "acme") -> str:
    """A token for ``user`` that every hub process of these tests accepts."""
    return create_token(TEST_SECRET, user_id=user, tenant_id=tenant)


@asynccontextmanager
async def hub_client(hub: HubProcess, user: str) -> AsyncIterator[WsClient]:
    """A WebSocket client of ``hub``, authenticated as ``user`` (welcome already read)."""
    async with connect(f"{hub.ws_url}?token={token(user)}", max_size=None) as ws:
        c = WsClient(ws)
        assert (await c.recv())["type"] == "welcome"
        yield c

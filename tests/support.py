"""Test support: a real server on a free port and a WebSocket client that speaks protocol v1."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import msgpack
import orjson
from websockets.asyncio.client import ClientConnection, connect

from parley.app import create_app
from parley.config import Settings
from parley.governance.auth import UserKind, create_token
from parley.server import ParleyServer, uvicorn_config

DEFAULT_TIMEOUT = 10.0


@dataclass
class RunningServer:
    settings: Settings
    port: int
    app: Any
    server: ParleyServer

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def token(self, user: str = "alice", tenant: str = "acme", **kw: Any) -> str:
        kind = kw.pop("kind", UserKind.HUMAN)
        return create_token(
            self.settings.signing_key, user_id=user, tenant_id=tenant, kind=kind, **kw
        )

    def http(self, user: str = "alice", tenant: str = "acme") -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.base_url + "/api/v1",
            headers={"Authorization": f"Bearer {self.token(user, tenant)}"},
            timeout=DEFAULT_TIMEOUT,
        )

    @asynccontextmanager
    async def client(
        self,
        user: str = "alice",
        tenant: str = "acme",
        *,
        binary: bool = False,
        deflate: bool = False,
        **kw: Any,
    ) -> AsyncIterator[WsClient]:
        """A connected, authenticated client (welcome already received). With ``deflate`` it
        offers compression, as browsers do; a server with ``ws_compression`` on accepts, and
        then writes its frames through the ASGI path instead of straight to the socket
        (hub/wire.py)."""
        fmt = "msgpack" if binary else "json"
        url = f"{self.ws_url}?format={fmt}&token={self.token(user, tenant, **kw)}"
        compression = "deflate" if deflate else None
        async with connect(url, max_size=None, compression=compression) as ws:
            client = WsClient(ws, binary=binary)
            welcome = await client.recv()
            assert welcome["type"] == "welcome", welcome
            client.welcome = welcome
            yield client

    async def create_session(self, user: str = "alice", tenant: str = "acme", **body: Any) -> str:
        async with self.http(user, tenant) as h:
            r = await h.post("/sessions", json=body or {"title": "test"})
            assert r.status_code == 201, r.text
            sid: str = r.json()["id"]
            return sid


@asynccontextmanager
async def start_server(settings: Settings, **app_kw: Any) -> AsyncIterator[RunningServer]:
    """Run a real server (uvicorn, real socket) in this event loop until the block exits."""
    app = create_app(settings, **app_kw)
    server = ParleyServer(uvicorn_config(app, settings), app, settings)
    server.config.loop = "none"  # the test's own event loop
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("server stopped during start-up")
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield RunningServer(settings=settings, port=port, app=app, server=server)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)


@dataclass
class WsClient:
    """A protocol v1 client for tests: frames in and out as dicts, with timeouts everywhere."""

    ws: ClientConnection
    binary: bool = False
    welcome: dict[str, Any] = field(default_factory=dict)
    backlog: list[dict[str, Any]] = field(default_factory=list)
    _next_id: int = 0

    async def send(self, frame: dict[str, Any]) -> None:
        if self.binary:
            await self.ws.send(msgpack.packb(frame, use_bin_type=True))
        else:
            await self.ws.send(orjson.dumps(frame).decode())

    async def send_raw(self, data: bytes | str) -> None:
        await self.ws.send(data)

    async def recv(self, timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
        """The next frame, taking first any frame set aside by :meth:`request`."""
        if self.backlog:
            return self.backlog.pop(0)
        return await self._read(timeout)

    async def _read(self, timeout: float) -> dict[str, Any]:
        data = await asyncio.wait_for(self.ws.recv(), timeout)
        frame: dict[str, Any]
        frame = msgpack.unpackb(data, raw=False) if isinstance(data, bytes) else orjson.loads(data)
        return frame

    async def request(
        self, frame: dict[str, Any], timeout: float = DEFAULT_TIMEOUT
    ) -> dict[str, Any]:
        """Send ``frame`` with a fresh id; return its ack or error. Other frames are kept."""
        self._next_id += 1
        ref = f"r{self._next_id}"
        await self.send({**frame, "id": ref})
        return await self.wait_for(
            lambda f: f.get("ref") == ref and f["type"] in ("ack", "error", "pong"), timeout
        )

    async def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = DEFAULT_TIMEOUT
    ) -> dict[str, Any]:
        """The first frame matching ``predicate``; frames before it stay in the backlog."""
        for i, frame in enumerate(self.backlog):
            if predicate(frame):
                return self.backlog.pop(i)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            frame = await self._read(max(0.01, deadline - loop.time()))
            if predicate(frame):
                return frame
            self.backlog.append(frame)

    async def events(self, count: int, timeout: float = DEFAULT_TIMEOUT) -> list[dict[str, Any]]:
        """The next ``count`` durable event frames, in arrival order."""
        out: list[dict[str, Any]] = []
        while len(out) < count:
            out.append(
                await self.wait_for(
                    lambda f: f["type"] == "event" and not f.get("ephemeral"), timeout
                )
            )
        return out

    async def subscribe(self, session: str, since_seq: int | None = None) -> dict[str, Any]:
        frame: dict[str, Any] = {"type": "subscribe", "session": session}
        if since_seq is not None:
            frame["since_seq"] = since_seq
        reply = await self.request(frame)
        assert reply["type"] == "ack", reply
        return reply

    async def say(self, session: str, text: str, **extra: Any) -> dict[str, Any]:
        reply = await self.request({"type": "send", "session": session, "text": text, **extra})
        assert reply["type"] == "ack", reply
        return reply

"""A webhook receiver for tests: a real HTTP server on a free port that verifies signatures the
way docs/integrations.md tells receivers to, records every request, and fails on purpose."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
import uvicorn

from parley.integrations.signing import verify

DEFAULT_TIMEOUT = 15.0


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    signature_ok: bool
    status: int  # what the receiver answered (0: no answer, it was hanging)

    @property
    def json(self) -> Any:
        return orjson.loads(self.body)

    @property
    def delivery_id(self) -> str:
        return self.headers["parley-delivery-id"]


@dataclass
class Receiver:
    """Answers ``fail_with`` statuses first (one per request), then ``200``. While ``hang``
    is set, requests are recorded on arrival and get no answer until it is cleared."""

    secret: str = ""
    fail_with: list[int] = field(default_factory=list)
    hang: bool = False
    requests: list[Received] = field(default_factory=list)
    port: int = 0
    _arrived: asyncio.Condition = field(default_factory=asyncio.Condition)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        ok = bool(self.secret) and verify(self.secret, body, headers.get("parley-signature", ""))
        status = 0 if self.hang else self.fail_with.pop(0) if self.fail_with else 200
        async with self._arrived:
            self.requests.append(Received(scope["path"], headers, body, ok, status))
            self._arrived.notify_all()
        if status == 0:
            async with self._arrived:
                await self._arrived.wait_for(lambda: not self.hang)
            status = 200
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def stop_hanging(self) -> None:
        async with self._arrived:
            self.hang = False
            self._arrived.notify_all()

    async def wait_for(self, count: int, timeout: float = DEFAULT_TIMEOUT) -> list[Received]:
        """Wait until at least ``count`` requests arrived; return them all."""
        async with asyncio.timeout(timeout), self._arrived:
            await self._arrived.wait_for(lambda: len(self.requests) >= count)
        return list(self.requests)

    async def wait_until(self, predicate: Any, timeout: float = DEFAULT_TIMEOUT) -> list[Received]:
        async with asyncio.timeout(timeout), self._arrived:
            await self._arrived.wait_for(lambda: predicate(self.requests))
        return list(self.requests)


@asynccontextmanager
async def running_receiver(receiver: Receiver | None = None) -> AsyncIterator[Receiver]:
    """Serve ``receiver`` on a free port in this event loop until the block exits."""
    receiver = receiver or Receiver()
    config = uvicorn.Config(receiver, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    config.loop = "none"
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    receiver.port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield receiver
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)

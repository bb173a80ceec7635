"""Test helpers for the relay: a watcher that applies the client rule, and assistant set-up."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import httpx

from parley.relay.assembler import AssembledStream, StreamAssembler
from tests.support import DEFAULT_TIMEOUT, WsClient

_refs = itertools.count(1)


class Watcher:
    """A subscribed client that rebuilds streams from snapshots and deltas (the client rule),
    asking the server for a snapshot when it sees a gap."""

    def __init__(self, client: WsClient, session: str) -> None:
        self.client = client
        self.session = session
        self.asm = StreamAssembler()
        self.seen: list[dict[str, Any]] = []

    async def subscribe(self, since_seq: int | None = None) -> dict[str, Any]:
        """Subscribe; frames that arrive before the ack stay queued for :meth:`until`."""
        return await self.client.subscribe(self.session, since_seq)

    def _take(self, frame: dict[str, Any]) -> bool:
        self.seen.append(frame)
        return self.asm.feed(frame)

    async def until(self, predicate: Any, timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
        """Read (and apply) frames until one matches ``predicate``; return it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            # recv() takes frames set aside while waiting for an ack first, in arrival order.
            frame = await self.client.recv(max(0.01, deadline - loop.time()))
            if self._take(frame):
                ref = f"resync-{next(_refs)}"
                await self.client.send({"type": "streams", "session": self.session, "id": ref})
            if predicate(frame):
                return frame

    async def wait(self, condition: Any, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Read (and apply) frames until ``condition()`` holds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not condition():
            await self.until(lambda f: True, max(0.01, deadline - loop.time()))

    async def event(self, name: str, timeout: float = DEFAULT_TIMEOUT, **match: Any) -> Any:
        """The next event ``name`` whose data has the ``match`` items."""
        frame = await self.until(
            lambda f: (
                f.get("event") == name
                and all((f.get("data") or {}).get(k) == v for k, v in match.items())
            ),
            timeout,
        )
        return frame["data"]

    async def finished(self, stream_id: str, timeout: float = DEFAULT_TIMEOUT) -> AssembledStream:
        """Wait until the stream finished and its message arrived; return what was assembled."""

        def done() -> bool:
            s = self.asm.streams.get(stream_id)
            return s is not None and s.finish_reason is not None and s.final is not None

        await self.wait(done, timeout)
        return self.asm.streams[stream_id]

    def events(self, name: str) -> list[dict[str, Any]]:
        return [f["data"] for f in self.seen if f.get("event") == name]


async def add_assistant(http: httpx.AsyncClient, session: str, **body: Any) -> dict[str, Any]:
    r = await http.post(f"/sessions/{session}/assistants", json=body)
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


async def ask(client: WsClient, session: str, assistant: str, **fields: Any) -> dict[str, Any]:
    reply = await client.request(
        {"type": "ask", "session": session, "assistant": assistant, **fields}
    )
    assert reply["type"] == "ack", reply
    return reply


def answer_of(watcher: Watcher, stream_id: str) -> dict[str, Any]:
    """The stored answer (message) of a stream, as its message.created carried it."""
    for frame in watcher.seen:
        if frame.get("event") == "message.created":
            message: dict[str, Any] = frame["data"]["message"]
            if message["metadata"].get("stream_id") == stream_id:
                return message
    raise AssertionError(f"no message.created for stream {stream_id}")

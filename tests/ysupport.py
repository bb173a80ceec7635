"""A y-websocket client in Python for tests: pycrdt's own encoders, nothing from the server.

It behaves as the stock JavaScript provider does: on connect it sends sync step 1 and its
awareness state; it answers sync step 1 with step 2; it sends every local change as an update;
it applies awareness updates with the Yjs clock rules. It can also speak the same messages
multiplexed on ``/ws`` (``doc`` frames), so one class tests both transports.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import msgpack
import orjson
from pycrdt import (
    Array,
    Awareness,
    Decoder,
    Doc,
    Map,
    Text,
    TransactionEvent,
    YMessageType,
    YSyncMessageType,
    create_awareness_message,
    create_sync_message,
    create_update_message,
    handle_sync_message,
    read_message,
)
from websockets.asyncio.client import ClientConnection, connect

from tests.support import DEFAULT_TIMEOUT, RunningServer


class YClient:
    """One Yjs document kept in sync with the server over one socket."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.doc: Doc[Any] = Doc()
        self.awareness = Awareness(self.doc)
        self.denied: list[str] = []
        self.errors: list[dict[str, Any]] = []  # error frames (multiplexed transport)
        self.synced = False
        self.closed_code: int | None = None
        self._send_raw: Callable[[bytes], Any] | None = None
        self._changed = asyncio.Event()
        self._applying = False
        self._outbox: asyncio.Queue[bytes] = asyncio.Queue()
        self.doc.observe(self._on_local)

    # -- the document -----------------------------------------------------------------------

    @property
    def notes(self) -> Text:
        return self.doc.get("notes", type=Text)

    @property
    def annotations(self) -> Map[Any]:
        return self.doc.get("annotations", type=Map)

    @property
    def pins(self) -> Array[Any]:
        return self.doc.get("pins", type=Array)

    def _on_local(self, event: TransactionEvent) -> None:
        if not self._applying:
            self._outbox.put_nowait(create_update_message(event.update))

    # -- presence ---------------------------------------------------------------------------

    def set_presence(self, state: dict[str, Any] | None) -> None:
        self.awareness.set_local_state(state)
        self._outbox.put_nowait(self._own_awareness())

    def _own_awareness(self) -> bytes:
        return create_awareness_message(
            self.awareness.encode_awareness_update([self.awareness.client_id])
        )

    def others(self) -> dict[int, dict[str, Any]]:
        """Presence of everyone else, as this client sees it."""
        return {
            cid: state
            for cid, state in self.awareness.states.items()
            if cid != self.awareness.client_id
        }

    def others_by_user(self) -> dict[str, dict[str, Any]]:
        return {
            str(s.get("user", {}).get("id")): s for s in self.others().values() if s is not None
        }

    # -- protocol ---------------------------------------------------------------------------

    def handle(self, message: bytes) -> None:
        """One message from the server."""
        kind = message[0]
        if kind == YMessageType.SYNC:
            self._applying = True
            try:
                reply = handle_sync_message(message[1:], self.doc)
            finally:
                self._applying = False
            if reply is not None:
                self._outbox.put_nowait(reply)
            if message[1] == YSyncMessageType.SYNC_STEP2:
                self.synced = True
        elif kind == YMessageType.AWARENESS:
            self.awareness.apply_awareness_update(read_message(message[1:]), "remote")
        elif kind == 2:  # auth: permission denied + reason
            decoder = Decoder(message[2:])
            self.denied.append(decoder.read_var_string())
        elif kind == 3:  # query awareness
            everyone = list(self.awareness.states)
            self._outbox.put_nowait(
                create_awareness_message(self.awareness.encode_awareness_update(everyone))
            )
        self._changed.set()

    def start_messages(self) -> None:
        """What y-websocket sends when its socket opens."""
        self._outbox.put_nowait(create_sync_message(self.doc))
        if self.awareness.get_local_state() is not None:
            self._outbox.put_nowait(self._own_awareness())

    async def pump_out(self, send: Callable[[bytes], Any]) -> None:
        while True:
            message = await self._outbox.get()
            await send(message)

    async def wait(self, predicate: Callable[[], bool], timeout: float = DEFAULT_TIMEOUT) -> None:
        """Wait until ``predicate()`` holds, re-checking after every message from the server."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            self._changed.clear()
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"{self.name}: condition not met in {timeout}s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    async def flushed(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Wait until everything queued for the server was written to the socket."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self._outbox.empty():
            if loop.time() > deadline:
                raise TimeoutError(f"{self.name}: outbox not flushed")
            await asyncio.sleep(0)


async def _reader(client: YClient, ws: ClientConnection) -> None:
    try:
        async for data in ws:
            if isinstance(data, bytes):
                client.handle(data)
    finally:
        client.closed_code = ws.close_code
        client._changed.set()


@asynccontextmanager
async def yjs_client(
    server: RunningServer,
    session_id: str,
    user: str = "alice",
    *,
    presence: dict[str, Any] | None = None,
    token: str | None = None,
) -> AsyncIterator[YClient]:
    """A client on ``/yjs/{session_id}``, synced (step 2 received) when the block starts."""
    client = YClient(user)
    if presence is not None:
        client.awareness.set_local_state(presence)
    url = f"ws://127.0.0.1:{server.port}/yjs/{session_id}?token={token or server.token(user)}"
    async with connect(url, max_size=None) as ws:
        reader = asyncio.create_task(_reader(client, ws))
        writer = asyncio.create_task(client.pump_out(ws.send))
        client.start_messages()
        try:
            await client.wait(lambda: client.synced or client.closed_code is not None)
            yield client
        finally:
            writer.cancel()
            reader.cancel()
            await asyncio.gather(reader, writer, return_exceptions=True)


@asynccontextmanager
async def mux_client(
    server: RunningServer,
    session_id: str,
    user: str = "alice",
    *,
    binary: bool = True,
    presence: dict[str, Any] | None = None,
) -> AsyncIterator[YClient]:
    """A client of the document multiplexed on ``/ws`` (``doc_join`` + ``doc`` frames)."""
    client = YClient(user)
    if presence is not None:
        client.awareness.set_local_state(presence)
    fmt = "msgpack" if binary else "json"
    url = f"{server.ws_url}?format={fmt}&token={server.token(user)}"

    def encode(frame: dict[str, Any]) -> bytes | str:
        if binary:
            packed: bytes = msgpack.packb(frame, use_bin_type=True)
            return packed
        return orjson.dumps(frame).decode()

    async with connect(url, max_size=None) as ws:
        welcome = await ws.recv()
        assert b"welcome" in (welcome if isinstance(welcome, bytes) else welcome.encode())
        joined = asyncio.Event()

        async def read() -> None:
            try:
                async for data in ws:
                    frame = (
                        msgpack.unpackb(data, raw=False)
                        if isinstance(data, bytes)
                        else orjson.loads(data)
                    )
                    if frame["type"] == "doc":
                        raw = frame["data"]
                        client.handle(raw if isinstance(raw, bytes) else base64.b64decode(raw))
                    elif frame["type"] == "ack" and frame.get("ref") == "join":
                        client.role = frame.get("role")  # type: ignore[attr-defined]
                        joined.set()
                    elif frame["type"] == "error":
                        client.errors.append(frame)
                        client._changed.set()
                        if frame.get("ref") == "join":
                            joined.set()
            finally:
                client.closed_code = ws.close_code
                client._changed.set()

        async def send(message: bytes) -> None:
            data: bytes | str = message if binary else base64.b64encode(message).decode()
            await ws.send(encode({"type": "doc", "session": session_id, "data": data}))

        reader = asyncio.create_task(read())
        await ws.send(encode({"type": "doc_join", "id": "join", "session": session_id}))
        await asyncio.wait_for(joined.wait(), DEFAULT_TIMEOUT)
        writer = asyncio.create_task(client.pump_out(send))
        client.start_messages()
        try:
            if not client.errors:
                await client.wait(lambda: client.synced)
            yield client
        finally:
            writer.cancel()
            reader.cancel()
            await asyncio.gather(reader, writer, return_exceptions=True)

"""Frames written straight to the socket (hub/wire.py) and through ASGI (clients that
negotiated compression) carry the same events, in the same order, in both encodings; and
compression is negotiated only where the server offers it (``PARLEY_WS_COMPRESSION``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from websockets.extensions.permessage_deflate import PerMessageDeflate

from parley.config import Settings
from tests.support import RunningServer, WsClient, start_server


@pytest.fixture
async def compressing(
    database_url: str, settings_factory: Callable[..., Settings]
) -> AsyncIterator[RunningServer]:
    settings = settings_factory(database_url=database_url, ws_compression=True)
    async with start_server(settings) as running:
        yield running


def deflated(client: WsClient) -> bool:
    return any(isinstance(e, PerMessageDeflate) for e in client.ws.protocol.extensions)


async def test_compression_is_declined_unless_the_server_offers_it(
    sqlite_server: RunningServer,
) -> None:
    """By default a client that offers permessage-deflate (every browser) gets none, and so
    the frames every subscriber shares."""
    sid = await sqlite_server.create_session("alice")
    async with (
        sqlite_server.client("alice") as alice,
        sqlite_server.client("alice", deflate=True) as browser_like,
    ):
        assert not deflated(browser_like)
        await browser_like.subscribe(sid)
        await alice.send({"type": "send", "id": "m", "session": sid, "text": "plain"})
        [event] = await browser_like.events(1)
        assert event["data"]["message"]["text"] == "plain"


def _summary(events: list[dict[str, Any]]) -> list[tuple[int, str, str]]:
    return [(e["seq"], e["event"], e["data"].get("message", {}).get("text", "")) for e in events]


async def test_direct_and_compressed_clients_get_the_same_events(
    compressing: RunningServer,
) -> None:
    server = compressing
    sid = await server.create_session("alice")
    async with (
        server.client("alice") as alice,
        server.client("alice", binary=True) as plain_binary,
        server.client("alice", deflate=True) as compressed,
        server.client("alice", binary=True, deflate=True) as compressed_binary,
    ):
        assert not deflated(plain_binary)
        assert deflated(compressed)
        assert deflated(compressed_binary)
        watchers = [plain_binary, compressed, compressed_binary]
        for w in watchers:
            await w.subscribe(sid)
        # Sent without waiting for each ack: the fan-out finds queues empty and non-empty.
        for i in range(60):
            text = f"message {i} " + "€" * (i * 977 % 30_000)
            await alice.send({"type": "send", "id": f"m{i}", "session": sid, "text": text})
        seen = await asyncio.gather(*(w.events(60, timeout=30) for w in watchers))

    assert _summary(seen[0]) == _summary(seen[1]) == _summary(seen[2])
    assert [e["seq"] for e in seen[0]] == list(range(3, 63))
    sizes = sorted(len(t.encode()) for _, _, t in _summary(seen[0]))
    assert sizes[-1] > 65_536, "frames with a 64-bit length went out too"


async def test_acks_and_events_of_one_connection_stay_in_order(server: RunningServer) -> None:
    """A client's own acks (written for it alone) and the session's events (framed once for
    all) share one ordered stream: the ack of a send never comes before that send's event."""
    sid = await server.create_session("alice")
    async with server.client("alice") as alice:
        await alice.subscribe(sid)
        for i in range(30):
            await alice.send({"type": "send", "id": f"s{i}", "session": sid, "text": f"t{i}"})
        order: list[tuple[str, int]] = []
        while len(order) < 60:
            frame = await alice.recv()
            if frame["type"] == "ack":
                order.append(("ack", frame["seq"]))
            elif frame["type"] == "event" and frame["event"] == "message.created":
                order.append(("event", frame["seq"]))

    for seq in range(3, 33):
        assert order.index(("event", seq)) < order.index(("ack", seq))

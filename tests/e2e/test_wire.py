"""Frames written straight to the socket (hub/wire.py) and through ASGI (clients that
negotiated compression) carry the same events, in the same order, in both encodings."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.support import RunningServer


def _summary(events: list[dict[str, Any]]) -> list[tuple[int, str, str]]:
    return [(e["seq"], e["event"], e["data"].get("message", {}).get("text", "")) for e in events]


async def test_direct_and_compressed_clients_get_the_same_events(server: RunningServer) -> None:
    sid = await server.create_session("alice")
    async with (
        server.client("alice") as alice,
        server.client("alice", binary=True) as plain_binary,
        server.client("alice", deflate=True) as deflated,
        server.client("alice", binary=True, deflate=True) as deflated_binary,
    ):
        watchers = [plain_binary, deflated, deflated_binary]
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

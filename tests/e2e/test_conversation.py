"""Two clients in one session, through a real server, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

from tests.support import RunningServer


async def test_two_clients_see_each_others_messages_in_the_same_order(
    server: RunningServer,
) -> None:
    sid = await server.create_session("alice")
    async with server.client("alice") as alice, server.client("bob", binary=True) as bob:
        await alice.subscribe(sid)
        await bob.subscribe(sid)

        async def talk(client: object, who: str) -> None:
            for i in range(10):
                await client.say(sid, f"{who} {i}", client_id=f"{who}-{i}")  # type: ignore[attr-defined]

        await asyncio.gather(talk(alice, "alice"), talk(bob, "bob"))
        # bob's first message also makes him a participant: 20 messages + 1 join
        seen_by_alice = await alice.events(21)
        seen_by_bob = await bob.events(21)

    def summary(events: list[dict]) -> list[tuple[int, str, str]]:
        return [
            (e["seq"], e["event"], e["data"].get("message", {}).get("text", "")) for e in events
        ]

    assert summary(seen_by_alice) == summary(seen_by_bob)
    seqs = [e["seq"] for e in seen_by_alice]
    assert seqs == list(range(3, 24)), "seq is gap-free and strictly increasing"
    texts = [t for _, name, t in summary(seen_by_alice) if name == "message.created"]
    assert [t for t in texts if t.startswith("alice")] == [f"alice {i}" for i in range(10)]
    assert [t for t in texts if t.startswith("bob")] == [f"bob {i}" for i in range(10)]

"""Recovery by ``since_seq``: exactly what was missed, no gap, no duplicate, even under load."""

from __future__ import annotations

import asyncio
import socket

import httpx
from websockets.exceptions import ConnectionClosed

from tests.e2e.gov_helpers import admin
from tests.support import RunningServer, WsClient, start_server


async def test_resubscribe_with_since_seq_gets_exactly_what_was_missed(
    server: RunningServer,
) -> None:
    sid = await server.create_session("alice")
    async with server.client("bob") as bob:
        await bob.subscribe(sid)
        async with server.client("alice") as alice:
            ack = await alice.subscribe(sid)
            assert ack["seq"] == 2
            await bob.say(sid, "before")
            # bob's join, then his message
            last_seen = (await alice.events(2))[-1]["seq"]
        # alice is gone; bob talks on
        for i in range(5):
            await bob.say(sid, f"missed {i}")
        async with server.client("alice") as alice:
            ack = await alice.subscribe(sid, since_seq=last_seen)
            replayed = await alice.events(5)
            assert [e["data"]["message"]["text"] for e in replayed] == [
                f"missed {i}" for i in range(5)
            ]
            assert [e["seq"] for e in replayed] == list(range(last_seen + 1, last_seen + 6))
            # the ack comes after the replay and names the last replayed seq
            assert ack["replayed"] == 5
            assert ack["seq"] == last_seen + 5
            assert alice.backlog == []
            await bob.say(sid, "live again")
            (live,) = await alice.events(1)
            assert live["seq"] == last_seen + 6
            assert live["data"]["message"]["text"] == "live again"


async def test_replay_while_events_keep_arriving_has_no_gap_and_no_duplicate(
    server: RunningServer,
) -> None:
    sid = await server.create_session("alice")
    async with server.http("bob") as h:
        for i in range(520):  # more than one replay page
            r = await h.post(f"/sessions/{sid}/messages", json={"text": f"m{i}"})
            assert r.status_code == 201
    async with server.client("bob", binary=True) as bob:

        async def keep_talking() -> None:
            for i in range(60):
                await bob.say(sid, f"live {i}")

        async with server.client("alice") as alice:
            talker = asyncio.create_task(keep_talking())
            await alice.send({"type": "subscribe", "session": sid, "since_seq": 0, "id": "sub"})
            await talker
            total = 2 + 1 + 520 + 60  # created, owner joined, bob joined, messages
            frames = []
            while len([f for f in frames if f["type"] == "event"]) < total:
                frames.append(await alice.recv())
            seqs = [f["seq"] for f in frames if f["type"] == "event"]
            assert seqs == list(range(1, total + 1))
            acks = [i for i, f in enumerate(frames) if f.get("ref") == "sub"]
            assert len(acks) == 1
            ack = frames[acks[0]]
            # everything before the ack is replay, everything after is live, and they join up
            before = [f["seq"] for f in frames[: acks[0]] if f["type"] == "event"]
            assert before == list(range(1, ack["seq"] + 1))


async def test_since_seq_ahead_of_the_session_is_refused(sqlite_server: RunningServer) -> None:
    sid = await sqlite_server.create_session("alice")
    async with sqlite_server.client("alice") as alice:
        reply = await alice.request({"type": "subscribe", "session": sid, "since_seq": 99})
        assert reply["type"] == "error"
        assert reply["code"] == "invalid_request"
        assert reply["details"]["last_seq"] == 2


async def test_a_slow_subscriber_is_cut_off_with_4008_and_recovers_by_replay(
    sqlite_url: str, settings_factory: object
) -> None:
    settings = settings_factory(  # type: ignore[operator]
        database_url=sqlite_url, send_queue_frames=16, frame_rate=10_000, frame_burst=10_000
    )
    async with start_server(settings) as srv:
        sid = await srv.create_session("alice")
        async with srv.client("alice") as fast:
            await fast.subscribe(sid)
            from websockets.asyncio.client import connect

            url = f"{srv.ws_url}?token={srv.token('slow')}"
            # A client that stops reading: a tiny receive buffer, no compression, one frame
            # of read-ahead; TCP then pushes back on the server within a few megabytes.
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
            sock.connect(("127.0.0.1", srv.port))
            async with connect(url, sock=sock, max_queue=1, max_size=None, compression=None) as raw:
                slow = WsClient(raw)
                await slow.recv()  # welcome
                await slow.subscribe(sid)
                text = "x" * 30_000
                hub = srv.app.state.hub
                (conn,) = [c for c in hub.connections if c.principal.user_id == "slow"]
                sent = 0
                while conn.is_open and sent < 1000:
                    await fast.say(sid, f"{sent} {text}")
                    sent += 1
                assert not conn.is_open, "the server gave up on the slow client"
                assert not hub.subscribed(conn, sid), "fan-out to it stopped at once"
                # the fast subscriber was never held back: it has everything
                assert len(await fast.events(sent)) == sent
                # once the slow client reads again, it finds the named close code
                assert await _read_until_closed(slow) == 4008
            # recovery: replay everything the slow client missed
            async with srv.client("slow") as again:
                ack = await again.subscribe(sid, since_seq=2)
                assert ack["replayed"] >= 1
                events = await again.events(ack["replayed"])
                assert [e["seq"] for e in events] == list(range(3, ack["seq"] + 1))


async def _read_until_closed(client: WsClient) -> int | None:
    """Read (and drop) frames until the server's close arrives; return its code."""
    try:
        while True:
            await client.recv(timeout=10)
    except ConnectionClosed as exc:
        return exc.rcvd.code if exc.rcvd else None


async def test_a_send_retried_after_a_reconnect_is_stored_once(server: RunningServer) -> None:
    """The client loses its connection before the ack arrives, reconnects and sends again with
    the same client_id: one message, one event, and the retry's ack names the original."""
    sid = await server.create_session("alice")
    async with server.client("bob") as watcher:
        await watcher.subscribe(sid)
        async with server.client("alice") as first:
            await first.send(
                {"type": "send", "id": 1, "session": sid, "text": "hi", "client_id": "k"}
            )
        # the socket closed without reading the ack; did the message land? the client cannot know
        async with server.client("alice") as retry:
            ack = await retry.say(sid, "hi", client_id="k")
            again = await retry.say(sid, "hi", client_id="k")
        (created,) = await watcher.events(1)
        assert created["event"] == "message.created"
        assert ack["seq"] == again["seq"] == created["seq"]
        assert ack["message_id"] == again["message_id"] == created["data"]["message"]["id"]
        assert again["duplicate"] is True
    async with server.http("alice") as h:
        items = (await h.get(f"/sessions/{sid}/messages")).json()["items"]
    assert [(m["text"], m["client_id"]) for m in items] == [("hi", "k")]


def _replays(text: str, source: str) -> float:
    sample = f'parley_replays_total{{source="{source}"}}'
    for line in text.splitlines():
        if line.startswith(sample + " "):
            return float(line.split()[-1])
    return 0.0


async def test_resume_is_answered_from_recent_events_until_a_purge_rewrites_them(
    server: RunningServer,
) -> None:
    """A resume within the feed's recent events needs no storage read; after a purge blanked
    stored events, the memory copy is never served again (on every database)."""
    secret = "kiwi-private-words"
    sid = await server.create_session("bob")  # open: alice joins with her first message
    async with (
        server.client("bob") as keeper,
        httpx.AsyncClient(base_url=server.base_url, timeout=30) as plain,
    ):
        ack = await keeper.subscribe(sid)  # keeps the session's feed on this process
        last_seen = ack["seq"]
        async with server.http("alice") as alice:
            r = await alice.post(f"/sessions/{sid}/messages", json={"text": secret})
            assert r.status_code == 201, r.text
            r = await alice.post(f"/sessions/{sid}/messages", json={"text": "second"})
            assert r.status_code == 201, r.text
        await keeper.events(3)  # alice joined, her two messages: delivered through the feed

        before = (await plain.get("/metrics")).text
        async with server.client("bob") as resumed:
            ack = await resumed.subscribe(sid, since_seq=last_seen)
            events = await resumed.events(3)
            assert ack["replayed"] == 3
            assert [e["event"] for e in events] == [
                "participant.joined",
                "message.created",
                "message.created",
            ]
            assert [e["data"]["message"]["text"] for e in events[1:]] == [secret, "second"]
            assert [e["seq"] for e in events] == [last_seen + 1, last_seen + 2, last_seen + 3]
        after = (await plain.get("/metrics")).text
        assert _replays(after, "memory") == _replays(before, "memory") + 1
        assert _replays(after, "storage") == _replays(before, "storage")

        async with admin(server) as root:
            r = await root.post("/tenant/users/alice/purge")
            assert r.status_code == 200, r.text

        before = (await plain.get("/metrics")).text
        async with server.client("bob") as resumed:
            ack = await resumed.subscribe(sid, since_seq=last_seen)
            events = await resumed.events(ack["replayed"])
            assert secret not in str(events)
            texts = [e["data"]["message"]["text"] for e in events if e["event"].startswith("m")]
            assert texts == ["", ""]
        after = (await plain.get("/metrics")).text
        assert _replays(after, "storage") == _replays(before, "storage") + 1
        assert _replays(after, "memory") == _replays(before, "memory")

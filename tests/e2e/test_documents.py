"""Collaborative documents end to end: real servers, real sockets, pycrdt clients speaking the
y-websocket protocol on ``/yjs`` and the multiplexed ``doc`` frames on ``/ws``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import msgpack
import pytest
from pycrdt import Map
from websockets.asyncio.client import connect

from parley.broker.memory import MemoryBroker, MemoryBus
from parley.config import Settings
from parley.crdt.manager import DocManager, doc_channel
from parley.crdt.updates import inspect_update
from tests.support import RunningServer, start_server
from tests.ysupport import YClient, mux_client, yjs_client


@pytest.fixture
async def doc_server(
    sqlite_url: str, settings_factory: Callable[..., Settings]
) -> AsyncIterator[RunningServer]:
    """A server that lets go of a document as soon as its last client leaves."""
    async with start_server(settings_factory(database_url=sqlite_url, doc_idle_seconds=0)) as s:
        yield s


def docs_of(server: RunningServer) -> DocManager:
    docs: DocManager = server.app.state.docs
    return docs


async def add(server: RunningServer, sid: str, user: str, role: str) -> None:
    """Alice (the owner) grants ``role`` to ``user`` (who must have been seen once)."""
    async with server.http(user) as h:
        await h.get("/me")
    async with server.http("alice") as h:
        r = await h.post(f"/sessions/{sid}/participants", json={"user_id": user, "role": role})
        assert r.status_code in (200, 201), r.text


async def document(server: RunningServer, sid: str, user: str = "alice") -> dict[str, Any]:
    async with server.http(user) as h:
        r = await h.get(f"/sessions/{sid}/document")
        assert r.status_code == 200, r.text
        doc: dict[str, Any] = r.json()
        return doc


async def room_closed(server: RunningServer, sid: str, tenant: str = "acme") -> None:
    """Wait until the process has let go of the document (stored, reconciled, compacted)."""
    handle = docs_of(server).rooms.get(doc_channel(tenant, sid))
    if handle is not None:
        await asyncio.wait_for(handle.closed.wait(), 10)


def notes(client: YClient) -> str:
    return str(client.notes)


async def test_two_clients_converge_and_the_document_survives_a_restart(
    database_url: str, settings_factory: Callable[..., Settings]
) -> None:
    settings = settings_factory(database_url=database_url)
    async with start_server(settings) as server:
        sid = await server.create_session("alice")
        await add(server, sid, "bob", "editor")
        async with yjs_client(server, sid, "alice") as a, yjs_client(server, sid, "bob") as b:
            a.notes.insert(0, "Hello")
            b.notes.insert(0, "World")  # concurrent with alice's insert
            await a.wait(lambda: len(notes(a)) == 10)
            await b.wait(lambda: notes(b) == notes(a))
            with a.doc.transaction():
                a.annotations["a1"] = Map({"id": "a1", "message_id": "m1", "author": "alice"})
            await b.wait(lambda: "a1" in b.annotations)
            final = notes(a)
    async with start_server(settings) as server:  # same database, new process
        async with yjs_client(server, sid, "bob") as c:
            assert notes(c) == final
            assert c.annotations["a1"]["message_id"] == "m1"
        assert (await document(server, sid))["notes"] == final


async def test_presence_late_joiners_see_others_at_once_and_leavers_vanish_at_once(
    doc_server: RunningServer,
) -> None:
    server = doc_server
    sid = await server.create_session("alice")
    await add(server, sid, "bob", "commenter")
    viewing = {"viewing": "m1", "selection": {"message_id": "m1", "start": 0, "end": 4}}
    async with yjs_client(server, sid, "alice", presence={"user": {"color": "#f00"}}) as a:
        async with yjs_client(server, sid, "bob", presence=viewing) as b:
            # already there once synced: the room sends presence before answering sync step 1
            assert set(b.others_by_user()) == {"alice"}
            assert b.others_by_user()["alice"]["user"] == {
                "id": "alice",
                "name": "alice",
                "color": "#f00",
            }
            await a.wait(lambda: "bob" in a.others_by_user())
            assert a.others_by_user()["bob"]["selection"]["end"] == 4
            b.set_presence({"typing": True})
            await a.wait(lambda: a.others_by_user().get("bob", {}).get("typing") is True)
        # bob's socket closed: alice sees him go long before any timeout (30 s)
        await asyncio.wait_for(a.wait(lambda: not a.others()), 2)


async def test_viewers_are_refused_and_change_nothing(doc_server: RunningServer) -> None:
    server = doc_server
    sid = await server.create_session("alice")
    await add(server, sid, "cat", "commenter")
    async with yjs_client(server, sid, "alice") as a:
        a.notes.insert(0, "owner text")
        await a.flushed()
        async with yjs_client(server, sid, "vic") as v:  # not a participant: reads like a viewer
            await v.wait(lambda: notes(v) == "owner text")
            v.notes.insert(0, "vandal ")
            v.annotations["x"] = Map({"author": "vic", "message_id": "m1"})
            await v.wait(lambda: len(v.denied) >= 2)
            assert v.denied[0].startswith("forbidden: viewers may read")
            # the second change builds on the first, refused one
            assert v.denied[1].startswith("conflict: the update builds on")
            async with yjs_client(server, sid, "cat") as c:
                c.annotations["c1"] = Map({"id": "c1", "author": "cat", "message_id": "m1"})
                await a.wait(lambda: "c1" in a.annotations)
                c.notes.insert(0, "commenter text ")
                await c.wait(lambda: bool(c.denied))
                assert c.denied[0].startswith("forbidden: commenters")
        a.notes.insert(len(a.notes), "!")
        await a.flushed()
    await room_closed(server, sid)
    doc = await document(server, sid)
    assert doc["notes"] == "owner text!"
    assert [x["id"] for x in doc["annotations"]] == ["c1"]


async def test_the_document_multiplexed_on_the_main_socket(doc_server: RunningServer) -> None:
    server = doc_server
    sid = await server.create_session("alice")
    async with (
        yjs_client(server, sid, "alice") as a,
        mux_client(server, sid, "alice", binary=True, presence={"n": 1}) as m,
        mux_client(server, sid, "alice", binary=False) as j,
    ):
        assert getattr(m, "role", None) == "owner"
        m.notes.insert(0, "msgpack ")
        await j.wait(lambda: notes(j) == "msgpack ")
        j.notes.insert(len(j.notes), "json")
        await a.wait(lambda: notes(a) == "msgpack json")
        await m.wait(lambda: notes(m) == "msgpack json")
        await a.wait(lambda: any(s.get("n") == 1 for s in a.others().values()))
    async with mux_client(server, sid, "vic", binary=False) as v:
        assert getattr(v, "role", None) == "viewer"
        v.notes.insert(0, "no")
        await v.wait(lambda: bool(v.errors))
        assert v.errors[0]["code"] == "forbidden"
    assert (await document(server, sid))["notes"] == "msgpack json"


async def test_mux_errors(doc_server: RunningServer) -> None:
    server = doc_server
    sid = await server.create_session("alice")
    async with server.client("alice", binary=True) as ws:
        reply = await ws.request({"type": "doc", "session": sid, "data": b"\x00\x00\x00"})
        assert reply["code"] == "not_subscribed"
        reply = await ws.request({"type": "doc_join", "session": "nope"})
        assert reply["code"] == "not_found"
        reply = await ws.request({"type": "doc_join", "session": sid})
        assert reply["type"] == "ack"
        reply = await ws.request({"type": "doc", "session": sid, "data": b"\x07"})
        assert reply["code"] == "bad_doc_message"
        reply = await ws.request({"type": "doc_leave", "session": sid})
        assert reply["type"] == "ack"
    async with server.client("alice") as ws:
        reply = await ws.request({"type": "doc", "session": sid, "data": "***"})
        assert reply["code"] == "invalid_frame"


async def test_annotation_events_reach_subscribers_and_the_rest_view(
    doc_server: RunningServer,
) -> None:
    server = doc_server
    sid = await server.create_session("alice")
    async with server.client("bob") as watcher, yjs_client(server, sid, "alice") as a:
        ack = await watcher.subscribe(sid)
        with a.doc.transaction():
            a.annotations["n1"] = Map(
                {
                    "id": "n1",
                    "message_id": "m7",
                    "range": {"start": 2, "end": 9},
                    "kind": "highlight",
                    "body": "look",
                    "author": "alice",
                    "created": "2026-11-25T10:00:00.000Z",
                    "resolved": False,
                }
            )
        (created,) = await watcher.events(1)
        assert created["event"] == "annotation.created"
        assert created["seq"] == ack["seq"] + 1
        assert created["actor"] == "alice"
        assert created["data"]["annotation"]["range"] == {"start": 2, "end": 9}
        with a.doc.transaction():
            a.annotations["n1"]["resolved"] = True
            a.annotations["n1"]["resolved_by"] = "alice"
        (resolved,) = await watcher.events(1)
        assert resolved["event"] == "annotation.resolved"
        assert resolved["data"]["annotation"]["resolved_by"] == "alice"
    async with server.http("bob") as h:
        items = (await h.get(f"/sessions/{sid}/annotations")).json()["items"]
        assert [(i["id"], i["kind"], i["resolved"]) for i in items] == [("n1", "highlight", True)]
        r = await h.get(f"/sessions/{sid}/annotations", params={"message_id": "other"})
        assert r.json()["items"] == []
        events = (await h.get(f"/sessions/{sid}/events")).json()["items"]
        assert [e["event"] for e in events][-2:] == ["annotation.created", "annotation.resolved"]
    async with server.http("mallory", tenant="evil") as h:
        assert (await h.get(f"/sessions/{sid}/annotations")).status_code == 404


async def test_limits_are_clear_errors(
    sqlite_url: str, settings_factory: Callable[..., Settings]
) -> None:
    settings = settings_factory(
        database_url=sqlite_url, doc_max_update_bytes=2048, doc_max_bytes=8192
    )
    async with start_server(settings) as server:
        sid = await server.create_session("alice")
        async with yjs_client(server, sid, "alice") as a:
            a.notes.insert(0, "x" * 3000)
            await a.wait(lambda: bool(a.denied))
            assert a.denied[0].startswith("update_too_large: the update is")
            # Yjs numbers a client's changes consecutively: what it writes next builds on the
            # refused change and cannot be applied either, until it reloads
            a.notes.insert(0, "y")
            await a.wait(lambda: len(a.denied) == 2)
            assert a.denied[1].startswith("conflict: the update builds on changes")
        async with yjs_client(server, sid, "alice") as b:
            for _ in range(8):
                b.notes.insert(len(b.notes), "y" * 1500)
            await b.wait(lambda: any(d.startswith("document_too_large") for d in b.denied))
        doc = await document(server, sid)
        assert doc["size"]["document_bytes"] <= 8192
        assert "x" not in doc["notes"]


async def test_storage_stays_bounded_and_compacts(
    sqlite_url: str, settings_factory: Callable[..., Settings]
) -> None:
    settings = settings_factory(
        database_url=sqlite_url,
        doc_compact_updates=50,
        doc_idle_seconds=0,
        frame_rate=100_000,  # the rate limit would only slow this writer down, not refuse it
    )
    async with start_server(settings) as server:
        sid = await server.create_session("alice")
        async with yjs_client(server, sid, "alice") as a, yjs_client(server, sid, "alice") as b:
            for i in range(600):
                a.notes.insert(len(a.notes) // 2, str(i % 10))
                if i % 3 == 0:
                    del a.notes[0]
                if i % 50 == 0:
                    await a.flushed()
            await b.wait(lambda: notes(b) == notes(a))
            expected = notes(a)
        await room_closed(server, sid)
        doc = await document(server, sid)
        assert doc["notes"] == expected
        assert doc["size"]["stored_updates"] == 0  # compacted when the room closed
        assert doc["size"]["stored_bytes"] <= doc["size"]["document_bytes"] + 64


async def test_no_client_is_served_before_the_document_loaded(
    doc_server: RunningServer,
) -> None:
    server = doc_server
    sid = await server.create_session("alice")
    async with yjs_client(server, sid, "alice") as a:
        a.notes.insert(0, "stored")
        await a.flushed()
    await room_closed(server, sid)
    store = docs_of(server).store
    real_read = store.read
    release = asyncio.Event()

    async def slow_read(session_id: str) -> Any:
        await release.wait()
        return await real_read(session_id)

    store.read = slow_read  # type: ignore[method-assign]
    url = f"ws://127.0.0.1:{server.port}/yjs/{sid}?token={server.token('alice')}"
    async with connect(url) as ws:
        await ws.send(b"\x00\x00\x01\x00")  # sync step 1, empty state vector
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ws.recv(), 0.3)  # nothing at all before the load
        release.set()
        client = YClient("raw")
        while not client.synced:
            client.handle(await asyncio.wait_for(ws.recv(), 5))  # type: ignore[arg-type]
        assert notes(client) == "stored"
    store.read = real_read  # type: ignore[method-assign]


async def test_a_failed_load_refuses_clients_and_overwrites_nothing(
    doc_server: RunningServer,
) -> None:
    server = doc_server
    sid = await server.create_session("alice")
    async with yjs_client(server, sid, "alice") as a:
        a.notes.insert(0, "precious")
        await a.flushed()
    await room_closed(server, sid)
    store = docs_of(server).store
    real_read = store.read

    async def broken(session_id: str) -> Any:
        raise OSError("disk on fire")

    store.read = broken  # type: ignore[method-assign]
    async with yjs_client(server, sid, "alice") as c:
        await c.wait(lambda: c.closed_code is not None)
        assert c.closed_code == 4503
    store.read = real_read  # type: ignore[method-assign]
    async with yjs_client(server, sid, "alice") as d:
        assert notes(d) == "precious"


async def test_bad_tokens_and_unknown_sessions_are_closed_for_good(
    doc_server: RunningServer,
) -> None:
    server = doc_server
    sid = await server.create_session("alice")
    async with yjs_client(server, sid, token="nope") as c:
        assert c.closed_code == 4401
    async with yjs_client(server, "0" * 36, "alice") as c:
        assert c.closed_code == 4404
    other = await server.create_session("mallory", tenant="evil")
    async with yjs_client(server, other, "alice") as c:
        assert c.closed_code == 4404
    url = f"ws://127.0.0.1:{server.port}/yjs/{sid}?token={server.token('alice')}"
    async with connect(url) as ws:
        await ws.send("text is not y-protocol")
        refusal = b""
        while not refusal.startswith(b"\x02"):  # skip sync step 1; wait for "permission denied"
            data = await asyncio.wait_for(ws.recv(), 5)
            refusal = data if isinstance(data, bytes) else b""
        assert b"bad_doc_message" in refusal


# -- several processes on one bus ---------------------------------------------------------------


def _structs(stored: dict[str, list[bytes]]) -> int:
    return sum(inspect_update(u).structs for rows in stored.values() for u in rows)


def _recording(
    append: Callable[..., Awaitable[None]], into: list[bytes], on_stored: Callable[[], None]
) -> Callable[..., Awaitable[None]]:
    """``append`` that also records what it stored, once it is stored (committed)."""

    async def recorded(tenant_id: str, session_id: str, *updates: bytes) -> None:
        await append(tenant_id, session_id, *updates)
        into.extend(updates)
        on_stored()

    return recorded


@asynccontextmanager
async def two_hubs(
    settings_factory: Callable[..., Settings], sqlite_url: str, **overrides: Any
) -> AsyncIterator[tuple[RunningServer, RunningServer, MemoryBus]]:
    bus = MemoryBus()
    settings = settings_factory(database_url=sqlite_url, doc_idle_seconds=0, **overrides)
    async with (
        start_server(settings, broker=MemoryBroker(bus)) as one,
        start_server(settings, broker=MemoryBroker(bus)) as two,
    ):
        yield one, two, bus


async def test_two_processes_converge_share_presence_and_store_once(
    sqlite_url: str, settings_factory: Callable[..., Settings]
) -> None:
    async with two_hubs(settings_factory, sqlite_url) as (one, two, _):
        sid = await one.create_session("alice")
        await add(one, sid, "bob", "editor")
        async with (
            yjs_client(one, sid, "alice", presence={"viewing": "m1"}) as a,
            yjs_client(two, sid, "bob", presence={"viewing": "m2"}) as b,
        ):
            await b.wait(lambda: "alice" in b.others_by_user())
            await a.wait(lambda: "bob" in a.others_by_user())
            stored: dict[str, list[bytes]] = {"one": [], "two": []}
            all_stored = asyncio.Event()

            def counted() -> None:
                if _structs(stored) >= 10:
                    all_stored.set()

            for name, hub in (("one", one), ("two", two)):
                store = docs_of(hub).store
                store.append = _recording(store.append, stored[name], counted)  # type: ignore[method-assign]
            for i in range(10):
                writer, reader = (a, b) if i % 2 == 0 else (b, a)
                writer.notes.insert(len(writer.notes), str(i))
                await reader.wait(lambda r=reader, w=writer: notes(r) == notes(w))
            assert notes(a) == "0123456789"
            await a.flushed()
            await b.flushed()
            # Each process's writer has stored (committed) its own client's changes before the
            # rooms close; otherwise a closing room stores a change the other has not committed
            # yet (a harmless repeat, by design for crashes, but not what this test checks).
            await asyncio.wait_for(all_stored.wait(), 10)
        await room_closed(one, sid)
        await room_closed(two, sid)
        # each change was stored once, by the process of the client that made it (the rooms'
        # closing reconcile found nothing missing)
        alice, bob = a.doc.client_id, b.doc.client_id
        clients = {
            name: {c for u in rows for c in inspect_update(u).ranges}
            for name, rows in stored.items()
        }
        assert clients == {"one": {alice}, "two": {bob}}
        assert _structs(stored) == 10
        async with yjs_client(two, sid, "alice", presence={"viewing": "m1"}) as a:
            async with yjs_client(one, sid, "bob", presence={"viewing": "m2"}) as b:
                await a.wait(lambda: "bob" in a.others_by_user())
                async with yjs_client(two, sid, "carol") as late:
                    assert set(late.others_by_user()) == {"alice", "bob"}
            await asyncio.wait_for(a.wait(lambda: "bob" not in a.others_by_user()), 2)


async def test_presence_of_a_crashed_process_expires_and_its_changes_are_kept(
    sqlite_url: str, settings_factory: Callable[..., Settings]
) -> None:
    async with two_hubs(settings_factory, sqlite_url, doc_awareness_timeout=0.6) as (
        one,
        _two,
        bus,
    ):
        sid = await one.create_session("alice")
        async with yjs_client(one, sid, "alice") as a:
            # a process that then dies without a word: its client's presence and one edit
            ghost = MemoryBroker(bus)
            ghost_client = YClient("ghost")
            ghost_client.doc.apply_update(a.doc.get_update())
            updates: list[bytes] = []
            ghost_client.doc.observe(lambda event: updates.append(event.update))
            ghost_client.notes.insert(0, "from the crashed process")
            state = '{"user":{"id":"ghost","name":"Ghost"}}'
            channel = doc_channel("acme", sid)
            await ghost.publish(channel, msgpack.packb(["u", "ghost", [updates[-1]]]))
            await ghost.publish(channel, msgpack.packb(["a", "ghost", [[4242, state]]]))
            await a.wait(lambda: "ghost" in a.others_by_user())
            await a.wait(lambda: notes(a) == "from the crashed process")
            await asyncio.wait_for(a.wait(lambda: "ghost" not in a.others_by_user()), 5)
        await room_closed(one, sid)
    # nobody stored the ghost's edit when it arrived (not our client's); closing the room
    # stored what storage lacked
    async with start_server(settings_factory(database_url=sqlite_url)) as again:
        assert (await document(again, sid))["notes"] == "from the crashed process"


async def test_role_changes_archiving_and_deletion_reach_connected_clients(
    sqlite_url: str, settings_factory: Callable[..., Settings]
) -> None:
    settings = settings_factory(database_url=sqlite_url, doc_idle_seconds=0, doc_role_ttl=0)
    async with start_server(settings) as server:
        sid = await server.create_session("alice")
        async with yjs_client(server, sid, "vic") as v, yjs_client(server, sid, "alice") as a:
            await add(server, sid, "vic", "editor")  # vic was a non-participant: a viewer
            v.notes.insert(0, "now I may")
            await a.wait(lambda: notes(a) == "now I may")
            async with server.http("alice") as h:
                r = await h.post(f"/sessions/{sid}/archive")
                assert r.status_code == 200, r.text
            v.notes.insert(0, "archived? ")
            await v.wait(lambda: bool(v.denied))
            assert v.denied[0].startswith("session_archived")
            async with server.http("alice") as h:
                assert (await h.delete(f"/sessions/{sid}")).status_code == 204
            a.set_presence({"still": "here"})
            await a.wait(lambda: a.closed_code is not None)
            assert a.closed_code == 4404


async def test_shutdown_stores_what_was_still_queued(
    sqlite_url: str, settings_factory: Callable[..., Settings]
) -> None:
    settings = settings_factory(database_url=sqlite_url, doc_idle_seconds=60)
    running: Any = start_server(settings)
    server = await running.__aenter__()
    try:
        sid = await server.create_session("alice")
        docs = docs_of(server)
        real_append, real_stop = docs.store.append, docs.stop
        storage_free, stop_called = asyncio.Event(), asyncio.Event()

        async def stuck_append(*args: Any) -> None:
            await storage_free.wait()  # storage is slow: changes pile up in memory
            await real_append(*args)

        async def stop(*args: Any, **kw: Any) -> None:
            stop_called.set()
            await real_stop(*args, **kw)

        docs.store.append = stuck_append  # type: ignore[method-assign]
        docs.stop = stop  # type: ignore[method-assign]
        async with yjs_client(server, sid, "alice") as a, yjs_client(server, sid, "alice") as b:
            for i in range(20):
                a.notes.insert(len(a.notes), str(i % 10))
            await b.wait(lambda: notes(b) == notes(a))  # the server holds every change
            expected = notes(a)
        stopping = asyncio.create_task(running.__aexit__(None, None, None))
        running = None
        await asyncio.wait_for(stop_called.wait(), 10)
        storage_free.set()
        await asyncio.wait_for(stopping, 30)
    finally:
        if running is not None:
            await running.__aexit__(None, None, None)
    async with start_server(settings) as again:
        assert (await document(again, sid))["notes"] == expected

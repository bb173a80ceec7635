"""Roles and visibility, end to end on SQLite and PostgreSQL: who may read and write a session,
through REST, the socket and the documents, and how a change takes effect at once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
from pycrdt import Map

from parley.broker.memory import MemoryBroker, MemoryBus
from parley.config import Settings
from parley.governance.auth import TenantRole
from parley.ids import new_id
from tests.support import DEFAULT_TIMEOUT, RunningServer, start_server
from tests.ysupport import mux_client, yjs_client


def http(server: RunningServer, user: str, *, admin: bool = False) -> httpx.AsyncClient:
    role = TenantRole.ADMIN if admin else TenantRole.MEMBER
    return httpx.AsyncClient(
        base_url=server.base_url + "/api/v1",
        headers={"Authorization": f"Bearer {server.token(user, tenant_role=role)}"},
        timeout=DEFAULT_TIMEOUT,
    )


async def seen(server: RunningServer, *users: str) -> None:
    """Users exist in the tenant once their token was seen."""
    for user in users:
        async with server.http(user) as h:
            assert (await h.get("/me")).status_code == 200


async def new_session(server: RunningServer, visibility: str, owner: str = "alice") -> str:
    async with server.http(owner) as h:
        r = await h.post("/sessions", json={"title": "t", "visibility": visibility})
        assert r.status_code == 201, r.text
        assert r.json()["visibility"] == visibility
        sid: str = r.json()["id"]
        r = await h.post(f"/sessions/{sid}/messages", json={"text": "hello"})
        assert r.status_code == 201, r.text
        return sid


async def grant(server: RunningServer, sid: str, user: str, role: str) -> None:
    async with server.http("alice") as h:
        r = await h.post(f"/sessions/{sid}/participants", json={"user_id": user, "role": role})
        assert r.status_code == 201, r.text


async def remove(server: RunningServer, sid: str, user: str) -> None:
    async with server.http("alice") as h:
        r = await h.delete(f"/sessions/{sid}/participants/{user}")
        assert r.status_code == 204, r.text


def body_without(r: httpx.Response, *ids: str) -> dict[str, Any]:
    text = r.text
    for value in ids:
        text = text.replace(value, "<id>")
    return {"status": r.status_code, "body": text}


async def test_private_sessions_do_not_exist_for_other_members(server: RunningServer) -> None:
    sid = await new_session(server, "private")
    await seen(server, "bob", "root")
    missing = new_id()
    async with server.http("bob") as h:
        for path in ("", "/messages", "/events", "/participants", "/document", "/presence"):
            real = await h.get(f"/sessions/{sid}{path}")
            fake = await h.get(f"/sessions/{missing}{path}")
            assert real.status_code == 404, (path, real.text)
            assert body_without(real, sid) == body_without(fake, missing), path
        r = await h.post(f"/sessions/{sid}/messages", json={"text": "let me in"})
        assert r.status_code == 404, r.text
        assert sid not in [s["id"] for s in (await h.get("/sessions")).json()["items"]]
    async with server.client("bob") as bob:
        reply = await bob.request({"type": "subscribe", "session": sid})
        assert reply["code"] == "not_found"
    # A tenant admin reads every session, as a viewer, and may administer it ...
    async with http(server, "root", admin=True) as h:
        assert (await h.get(f"/sessions/{sid}/messages")).status_code == 200
        assert sid in [s["id"] for s in (await h.get("/sessions")).json()["items"]]
        r = await h.post(f"/sessions/{sid}/messages", json={"text": "admin speaking"})
        assert (r.status_code, r.json()["error"]["code"]) == (403, "forbidden")
        r = await h.post(f"/sessions/{sid}/participants", json={"user_id": "bob", "role": "viewer"})
        assert r.status_code == 201, r.text
    # ... and once added, bob reads it.
    async with server.http("bob") as h:
        assert (await h.get(f"/sessions/{sid}/messages")).status_code == 200


async def test_tenant_sessions_are_read_only_for_non_participants(server: RunningServer) -> None:
    sid = await new_session(server, "tenant")
    async with server.http("bob") as h:
        assert (await h.get(f"/sessions/{sid}/messages")).status_code == 200
        r = await h.post(f"/sessions/{sid}/messages", json={"text": "hi"})
        assert (r.status_code, r.json()["error"]["code"]) == (403, "forbidden")
        assert r.json()["error"]["details"] == {"role": "viewer", "needs": "editor"}
    async with server.client("bob") as bob:
        assert (await bob.subscribe(sid, since_seq=0))["replayed"] == 3
        reply = await bob.request({"type": "send", "session": sid, "text": "hi"})
        assert reply["code"] == "forbidden"


async def test_commenters_annotate_but_do_not_post(server: RunningServer) -> None:
    sid = await new_session(server, "private")
    await seen(server, "cat")
    await grant(server, sid, "cat", "commenter")
    async with server.http("cat") as h:
        r = await h.post(f"/sessions/{sid}/messages", json={"text": "a message"})
        assert (r.status_code, r.json()["error"]["code"]) == (403, "forbidden")
    async with yjs_client(server, sid, "cat") as c:
        c.annotations["c1"] = Map({"id": "c1", "author": "cat", "message_id": "m1"})
        c.notes.insert(0, "not mine to write")
        await c.wait(lambda: bool(c.denied))
        assert c.denied[0].startswith("forbidden: commenters")
    async with server.http("alice") as h:
        doc = (await h.get(f"/sessions/{sid}/document")).json()
        assert [a["id"] for a in doc["annotations"]] == ["c1"]
        assert doc["notes"] == ""


async def test_a_downgrade_refuses_the_next_write_at_once(server: RunningServer) -> None:
    sid = await new_session(server, "private")
    await seen(server, "bob")
    await grant(server, sid, "bob", "editor")
    async with server.client("bob") as bob, yjs_client(server, sid, "bob") as doc:
        await bob.subscribe(sid)
        await bob.say(sid, "as an editor")
        doc.notes.insert(0, "editor text")
        await doc.flushed()
        await grant(server, sid, "bob", "viewer")
        changed = await bob.wait_for(lambda f: f.get("event") == "participant.updated")
        assert changed["data"]["participant"]["role"] == "viewer"
        reply = await bob.request({"type": "send", "session": sid, "text": "still here?"})
        assert reply["code"] == "forbidden"
        # The document re-read bob's role when the change was announced, not seconds later.
        doc.notes.insert(0, "viewer text ")
        await doc.wait(lambda: bool(doc.denied))
        assert doc.denied[0].startswith("forbidden: viewers")


async def test_a_downgrade_holds_the_next_document_update_until_the_role_is_read_again(
    server: RunningServer,
) -> None:
    """The re-read of a role after an announced change may be slow (a busy database): the
    client's next update waits for it instead of slipping through with the old role."""
    docs = server.app.state.docs
    read_access = docs.access

    async def slow_access(p: Any, session_id: str) -> Any:
        await asyncio.sleep(0.5)
        return await read_access(p, session_id)

    sid = await new_session(server, "private")
    await seen(server, "bob")
    await grant(server, sid, "bob", "editor")
    async with yjs_client(server, sid, "bob") as doc:
        doc.notes.insert(0, "editor text")
        await doc.flushed()
        docs.access = slow_access
        try:
            await grant(server, sid, "bob", "viewer")
            doc.notes.insert(0, "viewer text ")
            await doc.wait(lambda: bool(doc.denied))
        finally:
            docs.access = read_access
        assert doc.denied[0].startswith("forbidden: viewers")


async def test_a_removed_user_is_cut_off_everywhere_and_stays_out(server: RunningServer) -> None:
    sid = await new_session(server, "open")
    await seen(server, "bob")
    await grant(server, sid, "bob", "editor")
    async with (
        server.client("bob") as bob,
        server.client("carol") as carol,
        yjs_client(server, sid, "bob") as ydoc,
        mux_client(server, sid, "bob") as mdoc,
    ):
        await bob.subscribe(sid)
        await carol.subscribe(sid)
        await remove(server, sid, "bob")
        left = await bob.wait_for(lambda f: f.get("event") == "participant.left")
        assert left["data"] == {"user_id": "bob", "removed_by": "alice"}
        revoked = await bob.wait_for(lambda f: f["type"] == "error")
        assert revoked["code"] == "access_revoked"
        assert revoked["details"]["session"] == sid
        assert "removed from the session by alice" in revoked["message"]
        await ydoc.wait(lambda: ydoc.closed_code is not None)
        assert ydoc.closed_code == 4403
        await mdoc.wait(lambda: bool(mdoc.errors))
        assert mdoc.errors[0]["code"] == "access_revoked"
        # The bystander still gets the session's events.
        await carol.wait_for(lambda f: f.get("event") == "participant.left")
        async with server.http("alice") as h:
            await h.post(f"/sessions/{sid}/messages", json={"text": "after bob"})
        assert (await carol.events(1))[0]["data"]["message"]["text"] == "after bob"
        # Bob's connection is alive but no longer subscribed, and cannot come back.
        assert (await bob.request({"type": "ping"}))["type"] == "pong"
        assert [f for f in bob.backlog if f.get("event") == "message.created"] == []
        reply = await bob.request({"type": "send", "session": sid, "text": "I'm back"})
        assert reply["code"] == "not_found"
        reply = await bob.request({"type": "subscribe", "session": sid})
        assert reply["code"] == "not_found"
    async with server.http("bob") as h:
        r = await h.post(f"/sessions/{sid}/messages", json={"text": "I'm back"})
        assert r.status_code == 404, r.text
    # Only an owner (or admin, or invitation) brings him back; an editor may not.
    await seen(server, "dan")
    await grant(server, sid, "dan", "editor")
    async with server.http("dan") as h:
        r = await h.post(f"/sessions/{sid}/participants", json={"user_id": "bob", "role": "viewer"})
        assert (r.status_code, r.json()["error"]["code"]) == (403, "forbidden")
    await grant(server, sid, "bob", "editor")
    async with server.http("bob") as h:
        r = await h.post(f"/sessions/{sid}/messages", json={"text": "back for real"})
        assert r.status_code == 201, r.text


async def test_leaving_is_not_a_removal(server: RunningServer) -> None:
    sid = await new_session(server, "open")
    async with server.http("bob") as h:
        assert (await h.post(f"/sessions/{sid}/messages", json={"text": "hi"})).status_code == 201
        assert (await h.delete(f"/sessions/{sid}/participants/bob")).status_code == 204
        assert (await h.post(f"/sessions/{sid}/messages", json={"text": "re"})).status_code == 201


async def test_making_a_session_private_drops_non_participants(server: RunningServer) -> None:
    sid = await new_session(server, "tenant")
    await seen(server, "bob")
    await grant(server, sid, "bob", "viewer")
    async with server.client("bob") as bob, server.client("eve") as eve:
        await bob.subscribe(sid)
        await eve.subscribe(sid)
        async with server.http("bob") as h:  # only owners and admins change the visibility
            r = await h.patch(f"/sessions/{sid}", json={"visibility": "private"})
            assert r.status_code == 403, r.text
        async with server.http("alice") as h:
            r = await h.patch(f"/sessions/{sid}", json={"visibility": "private"})
            assert r.status_code == 200, r.text
        revoked = await eve.wait_for(lambda f: f["type"] == "error")
        assert revoked["code"] == "access_revoked"
        # bob is a participant: he keeps reading.
        await bob.wait_for(lambda f: f.get("event") == "session.updated")
        async with server.http("alice") as h:
            await h.post(f"/sessions/{sid}/messages", json={"text": "private now"})
        assert (await bob.events(1))[0]["data"]["message"]["text"] == "private now"


async def test_a_removal_reaches_every_process(
    sqlite_url: str, settings_factory: Callable[..., Settings]
) -> None:
    """Two hub processes on one broker and one database: bob's subscription on the second is
    dropped by a removal made through the first."""
    bus = MemoryBus()
    settings = settings_factory(database_url=sqlite_url)
    async with (
        start_server(settings, broker=MemoryBroker(bus)) as one,
        start_server(settings, broker=MemoryBroker(bus), migrate=False) as two,
    ):
        sid = await new_session(one, "open")
        await seen(one, "bob")
        await grant(one, sid, "bob", "editor")
        async with two.client("bob") as bob, yjs_client(two, sid, "bob") as ydoc:
            await bob.subscribe(sid)
            await remove(one, sid, "bob")
            revoked = await bob.wait_for(lambda f: f["type"] == "error")
            assert revoked["code"] == "access_revoked"
            await ydoc.wait(lambda: ydoc.closed_code is not None)
            assert ydoc.closed_code == 4403

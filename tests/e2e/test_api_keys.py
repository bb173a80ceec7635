"""API keys for bots through REST and both WebSocket endpoints: creation shown once, hashed at
rest, scopes enforced, revocation refused at once, tenants apart."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib

import pytest
from sqlalchemy import create_engine, text
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.frames import Close

from parley.errors import CloseCode
from tests.e2e.gov_helpers import admin, client
from tests.support import RunningServer, WsClient


async def create_key(server: RunningServer, scopes: list[str], **body: object) -> dict:
    async with admin(server) as root:
        r = await root.post("/api-keys", json={"name": "Deploy bot", "scopes": scopes, **body})
        assert r.status_code == 201, r.text
        out: dict = r.json()
        return out


async def closed_by_server(raw: ClientConnection) -> Close:
    """Read until the server closes the socket; its close frame."""
    with contextlib.suppress(ConnectionClosed):
        async with asyncio.timeout(10):
            while True:
                await raw.recv()
    assert raw.protocol.close_rcvd is not None
    return raw.protocol.close_rcvd


async def test_key_is_shown_once_and_stored_only_as_a_hash(server: RunningServer) -> None:
    created = await create_key(server, ["sessions:read"], user_id="deploy-bot")
    key = created["key"]
    assert key.startswith(f"pk_{created['id']}_")
    assert created["user_id"] == "deploy-bot"
    async with admin(server) as root:
        listed = (await root.get("/api-keys")).json()["items"]
    assert [k["id"] for k in listed] == [created["id"]]
    assert "key" not in listed[0]
    assert key not in str(listed)
    # What the database holds is the SHA-256 of the secret part, never the key.
    url = server.settings.effective_database_url
    if url.startswith("sqlite"):
        engine = create_engine(url.replace("+aiosqlite", ""))
        with engine.connect() as conn:
            row = conn.execute(text("SELECT secret_hash FROM api_keys")).one()
        engine.dispose()
        secret = key.split("_", 2)[2]
        assert row[0] == hashlib.sha256(secret.encode()).hexdigest()


async def test_key_works_as_a_bearer_token_with_its_scopes(server: RunningServer) -> None:
    sid = await server.create_session("alice")
    reader = (await create_key(server, ["sessions:read"]))["key"]
    writer = (await create_key(server, ["sessions:read", "messages:write"]))["key"]
    async with server.http("alice") as h:
        for key in (reader, writer):
            bot = key.split("_")[1]
            r = await h.post(
                f"/sessions/{sid}/participants", json={"user_id": f"bot.{bot}", "role": "editor"}
            )
            assert r.status_code in (200, 201), r.text
    async with client(server, reader) as bot:
        me = (await bot.get("/me")).json()
        assert me["kind"] == "bot"
        assert (await bot.get(f"/sessions/{sid}/messages")).status_code == 200
        r = await bot.post(f"/sessions/{sid}/messages", json={"text": "hi"})
        assert r.status_code == 403
        assert r.json()["error"]["code"] == "insufficient_scope"
        assert r.json()["error"]["details"]["required"] == "messages:write"
        assert (await bot.post("/sessions", json={})).status_code == 403
        assert (await bot.get("/api-keys")).status_code == 403  # keys are never admins
    async with client(server, writer) as bot:
        r = await bot.post(f"/sessions/{sid}/messages", json={"text": "from the bot"})
        assert r.status_code == 201, r.text
        assert r.json()["message"]["author"].startswith("bot.")
    async with connect(f"{server.ws_url}?token={reader}") as raw:
        ws = WsClient(raw)
        welcome = await ws.recv()
        assert welcome["user"]["kind"] == "bot"
        await ws.subscribe(sid)
        reply = await ws.request({"type": "send", "session": sid, "text": "nope"})
        assert reply["type"] == "error"
        assert reply["code"] == "insufficient_scope"
    async with connect(f"{server.ws_url}?token={writer}") as raw:
        ws = WsClient(raw)
        await ws.recv()
        await ws.say(sid, "socket bot")
    async with admin(server) as root:
        listed = (await root.get("/api-keys")).json()["items"]
    assert all(k["last_used_at"] is not None for k in listed)


async def test_revoked_keys_are_refused_and_their_sockets_closed(server: RunningServer) -> None:
    sid = await server.create_session("alice")
    created = await create_key(server, ["sessions:read"])
    key = created["key"]
    async with connect(f"{server.ws_url}?token={key}") as raw:
        await raw.recv()
        async with admin(server) as root:
            r = await root.delete(f"/api-keys/{created['id']}")
            assert r.status_code == 200
            assert r.json()["revoked_at"] is not None
        closed = await closed_by_server(raw)
        assert closed.code == CloseCode.KEY_REVOKED
    async with client(server, key) as bot:
        r = await bot.get(f"/sessions/{sid}")
        assert r.status_code == 401
        assert r.json()["error"]["code"] == "unauthenticated"
    async with connect(f"{server.ws_url}?token={key}") as raw:
        await raw.recv()  # the error frame
        with pytest.raises(ConnectionClosed) as closed:
            await raw.recv()
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == CloseCode.UNAUTHENTICATED
    async with connect(f"{server.base_url.replace('http', 'ws')}/yjs/{sid}?token={key}") as raw:
        with pytest.raises(ConnectionClosed) as closed:
            await raw.recv()
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == CloseCode.DOC_UNAUTHENTICATED


async def test_malformed_and_foreign_keys(server: RunningServer) -> None:
    created = await create_key(server, ["sessions:read"])
    forged = created["key"][:-4] + "AAAA"
    for bad in (forged, "pk_", "pk_short_x", "pk_" + "a" * 12 + "_" + "b" * 40):
        async with client(server, bad) as bot:
            r = await bot.get("/sessions")
            assert r.status_code == 401, bad
    # Another tenant's admin cannot see or revoke the key: same answer as a missing id.
    async with admin(server, tenant="globex") as other:
        assert (await other.get("/api-keys")).json()["items"] == []
        r1 = await other.delete(f"/api-keys/{created['id']}")
        r2 = await other.delete("/api-keys/doesnotexist")
        assert r1.status_code == r2.status_code == 404
        assert r1.json()["error"]["code"] == r2.json()["error"]["code"] == "not_found"
    async with admin(server) as root:
        for bad in ({"name": "x", "scopes": []}, {"name": "x", "scopes": ["root"]}, {"scopes": []}):
            r = await root.post("/api-keys", json=bad)
            assert r.status_code == 422, (bad, r.text)
        r = await root.post(
            "/api-keys", json={"name": "x", "scopes": ["sessions:read"], "user_id": "root"}
        )
        assert r.status_code == 422  # root is a person, not a bot
    async with server.http("bob") as bob:
        assert (
            await bob.post("/api-keys", json={"name": "x", "scopes": ["sessions:read"]})
        ).status_code == 403


async def test_key_with_the_read_scope_opens_the_document_socket(server: RunningServer) -> None:
    sid = await server.create_session("alice")
    created = await create_key(server, ["sessions:read"])
    async with server.http("alice") as h:
        await h.post(
            f"/sessions/{sid}/participants",
            json={"user_id": created["user_id"], "role": "viewer"},
        )
    url = f"{server.base_url.replace('http', 'ws')}/yjs/{sid}?token={created['key']}"
    async with connect(url) as raw:
        first = await raw.recv()  # sync step 1 from the server
        assert isinstance(first, bytes)
        async with admin(server) as root:
            await root.delete(f"/api-keys/{created['id']}")
        closed = await closed_by_server(raw)  # revoked: closed at once, not to retry
        assert closed.code == CloseCode.DOC_UNAUTHENTICATED

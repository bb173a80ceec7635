"""Tenant quotas through REST and the socket: sessions, messages per minute, connections and
LLM tokens per month; admin endpoints; refusals with their code and retry-after."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from parley.config import Settings
from parley.errors import CloseCode
from tests.conftest import redis_url_or_skip
from tests.e2e.gov_helpers import admin
from tests.fakes.relay_client import Watcher, add_assistant, ask
from tests.support import RunningServer, start_server


async def test_admins_read_and_override_quotas_members_may_not(server: RunningServer) -> None:
    async with admin(server) as root, server.http("bob") as bob:
        r = await root.get("/tenant/quotas")
        assert r.status_code == 200, r.text
        assert r.json()["quotas"]["messages_per_minute"] == 0  # server default: unlimited
        r = await root.put("/tenant/quotas", json={"messages_per_minute": 5, "sessions": 2})
        assert r.status_code == 200, r.text
        assert r.json()["quotas"]["messages_per_minute"] == 5
        assert r.json()["overrides"] == {"messages_per_minute": 5, "sessions": 2}
        r = await root.put("/tenant/quotas", json={"sessions": None})
        assert r.json()["overrides"] == {"messages_per_minute": 5}
        for bad in ({"nope": 1}, {"sessions": -1}, {"sessions": "ten"}, {"sessions": True}):
            r = await root.put("/tenant/quotas", json=bad)
            assert r.status_code == 422, (bad, r.text)
            assert r.json()["error"]["code"] == "invalid_request"
        for path in ("/tenant/quotas", "/tenant/usage"):
            r = await bob.get(path)
            assert r.status_code == 403
            assert r.json()["error"]["code"] == "forbidden"
        assert (await bob.put("/tenant/quotas", json={"sessions": 100})).status_code == 403
    # Another tenant's admin sees its own defaults, not acme's overrides.
    async with admin(server, tenant="globex") as other:
        assert (await other.get("/tenant/quotas")).json()["overrides"] == {}


async def test_session_quota_counts_active_sessions(server: RunningServer) -> None:
    async with admin(server) as root:
        await root.put("/tenant/quotas", json={"sessions": 2})
        first = await root.post("/sessions", json={"title": "a"})
        assert (await root.post("/sessions", json={"title": "b"})).status_code == 201
        r = await root.post("/sessions", json={"title": "c"})
        assert r.status_code == 429
        err = r.json()["error"]
        assert err["code"] == "quota_exceeded"
        assert err["details"] == {"quota": "sessions", "limit": 2, "retry_after": None}
        assert "Retry-After" not in r.headers  # waiting does not help; archiving does
        await root.post(f"/sessions/{first.json()['id']}/archive")
        assert (await root.post("/sessions", json={"title": "c"})).status_code == 201
        usage = (await root.get("/tenant/usage")).json()
        assert usage["usage"]["sessions"] == 2
        assert usage["limits"]["sessions"] == 2


async def test_messages_per_minute_on_rest_and_socket_share_one_counter(
    server: RunningServer,
) -> None:
    sid = await server.create_session("alice")
    async with admin(server) as root:
        await root.put("/tenant/quotas", json={"messages_per_minute": 3})
    async with server.http("alice") as h, server.client("alice") as ws:
        for i in range(2):
            r = await h.post(f"/sessions/{sid}/messages", json={"text": f"m{i}"})
            assert r.status_code == 201, r.text
        await ws.say(sid, "third")
        reply = await ws.request({"type": "send", "session": sid, "text": "fourth"})
        assert reply["type"] == "error"
        assert reply["code"] == "quota_exceeded"
        assert reply["details"]["quota"] == "messages_per_minute"
        assert 0 < reply["details"]["retry_after"] <= 60
        r = await h.post(f"/sessions/{sid}/messages", json={"text": "fifth"})
        assert r.status_code == 429
        assert r.json()["error"]["code"] == "quota_exceeded"
        assert 1 <= int(r.headers["Retry-After"]) <= 60
        # Other tenants have their own counter.
        other = await server.create_session("zed", "globex")
        async with server.http("zed", "globex") as z:
            r = await z.post(f"/sessions/{other}/messages", json={"text": "fine"})
            assert r.status_code == 201
        # The refused messages were not stored.
        texts = [m["text"] for m in (await h.get(f"/sessions/{sid}/messages")).json()["items"]]
        assert texts == ["m0", "m1", "third"]
    async with admin(server) as root:
        usage = (await root.get("/tenant/usage")).json()["usage"]
        assert usage["messages_per_minute"] == 3


async def test_connection_quota_refuses_the_socket_with_its_close_code(
    sqlite_url: str, settings_factory: Callable[..., Settings]
) -> None:
    async with start_server(settings_factory(database_url=sqlite_url, quota_connections=2)) as srv:
        async with srv.client("a") as one, srv.client("b"):
            url = f"{srv.ws_url}?token={srv.token('c')}"
            async with connect(url) as third:
                frame = await third.recv()
                assert '"quota_exceeded"' in str(frame)
                with pytest.raises(ConnectionClosed) as closed:
                    await third.recv()
                assert closed.value.rcvd is not None
                assert closed.value.rcvd.code == CloseCode.QUOTA_EXCEEDED
            # Another tenant is not affected.
            async with srv.client("x", "globex") as elsewhere:
                assert elsewhere.welcome["tenant"] == "globex"
            async with admin(srv) as root:
                usage = (await root.get("/tenant/usage")).json()["usage"]
                assert usage["connections"] == 2
            await one.ws.close()
        # Closed connections gave their slots back.
        async with srv.client("c"), srv.client("d"):
            pass


async def test_llm_token_quota_refuses_asks_after_the_month_is_used_up(
    sqlite_url: str, settings_factory: Callable[..., Settings]
) -> None:
    settings = settings_factory(database_url=sqlite_url, quota_llm_tokens_per_month=1)
    async with start_server(settings) as srv:
        sid = await srv.create_session("alice")
        async with srv.http("alice") as h, srv.client("alice") as ws:
            await add_assistant(h, sid, name="bot", provider="scripted", params={"reply": "hi"})
            watcher = Watcher(ws, sid)
            await watcher.subscribe()
            first = await ask(ws, sid, "bot", text="hello")
            await watcher.finished(first["stream_id"])
            async with admin(srv) as root:
                usage = (await root.get("/tenant/usage")).json()["usage"]
            assert usage["llm_tokens_per_month"] > 1
            reply = await ws.request({"type": "ask", "session": sid, "assistant": "bot"})
            assert reply["type"] == "error"
            assert reply["code"] == "quota_exceeded"
            assert reply["details"]["quota"] == "llm_tokens_per_month"
            assert reply["details"]["retry_after"] > 0
            r = await h.post(f"/sessions/{sid}/assistants/bot/ask", json={})
            assert r.status_code == 429
            assert "Retry-After" in r.headers


async def test_two_processes_on_redis_share_the_tenants_counters(
    database_url: str, settings_factory: Callable[..., Settings]
) -> None:
    redis = redis_url_or_skip()
    tenant = "t" + uuid.uuid4().hex[:12]  # Redis outlives the test: a tenant of its own
    settings = settings_factory(database_url=database_url, broker_url=redis)
    async with start_server(settings) as a, start_server(settings, migrate=False) as b:
        sid = await a.create_session("alice", tenant)
        async with admin(a, tenant=tenant) as root:
            r = await root.put("/tenant/quotas", json={"messages_per_minute": 2, "connections": 1})
            assert r.status_code == 200
        async with a.http("alice", tenant) as ha, b.http("alice", tenant) as hb:
            assert (
                await ha.post(f"/sessions/{sid}/messages", json={"text": "1"})
            ).status_code == 201
            assert (
                await hb.post(f"/sessions/{sid}/messages", json={"text": "2"})
            ).status_code == 201
            refused = await ha.post(f"/sessions/{sid}/messages", json={"text": "3"})
            assert refused.status_code == 429
            assert refused.json()["error"]["details"]["quota"] == "messages_per_minute"
        # b read the tenant's policy after the change (for the post above), so it knows the
        # connection limit; the slot a's socket holds is in Redis, where b sees it.
        async with a.client("alice", tenant):
            url = f"{b.ws_url}?token={b.token('bob', tenant)}"
            async with connect(url) as second:
                assert '"quota_exceeded"' in str(await second.recv())
                with pytest.raises(ConnectionClosed) as closed:
                    await second.recv()
                assert closed.value.rcvd is not None
                assert closed.value.rcvd.code == CloseCode.QUOTA_EXCEEDED

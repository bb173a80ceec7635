"""A tenant's PII mode through REST and the socket: off, flag, redact and redact_llm."""

from __future__ import annotations

from collections.abc import Callable

from parley.config import Settings
from tests.e2e.gov_helpers import admin
from tests.fakes.llm_server import FakeLLM, Reply
from tests.fakes.relay_client import Watcher, add_assistant, ask
from tests.support import RunningServer, start_server

SECRET_TEXT = "mail ann@example.org or call +44 20 7946 0958, card 4111 1111 1111 1111"


async def set_mode(server: RunningServer, mode: str, tenant: str = "acme") -> None:
    async with admin(server, tenant=tenant) as root:
        r = await root.put("/tenant/pii", json={"mode": mode})
        assert r.status_code == 200, r.text
        assert (await root.get("/tenant/pii")).json() == {"mode": mode}


async def test_pii_mode_needs_an_admin_and_a_known_mode(server: RunningServer) -> None:
    async with server.http("bob") as bob:
        r = await bob.put("/tenant/pii", json={"mode": "redact"})
        assert r.status_code == 403
    async with admin(server) as root:
        r = await root.put("/tenant/pii", json={"mode": "shred"})
        assert r.status_code == 422
        assert r.json()["error"]["details"][0]["field"] == "mode"
        assert (await root.get("/tenant/pii")).json() == {"mode": "off"}


async def test_flag_stores_as_written_and_marks_the_types(server: RunningServer) -> None:
    await set_mode(server, "flag")
    sid = await server.create_session("alice")
    async with server.http("alice") as h:
        r = await h.post(
            f"/sessions/{sid}/messages",
            json={"text": SECRET_TEXT, "metadata": {"pii": "client says none"}},
        )
        assert r.status_code == 201, r.text
        message = r.json()["message"]
        assert message["text"] == SECRET_TEXT
        assert message["metadata"]["pii"] == {
            "types": ["CARD", "EMAIL", "PHONE"],
            "count": 3,
            "redacted": False,
        }
        listed = (await h.get(f"/sessions/{sid}/messages")).json()["items"][-1]
        assert listed["metadata"]["pii"]["types"] == ["CARD", "EMAIL", "PHONE"]
        # An edit that removes the PII removes the flag; other metadata stays.
        await h.patch(
            f"/sessions/{sid}/messages/{message['id']}", json={"metadata": {"topic": "x"}}
        )
        r = await h.patch(f"/sessions/{sid}/messages/{message['id']}", json={"text": "clean"})
        assert r.json()["message"]["metadata"] == {"topic": "x"}


async def test_redact_stores_and_broadcasts_only_placeholders(server: RunningServer) -> None:
    await set_mode(server, "redact")
    sid = await server.create_session("alice")
    async with server.client("alice") as ws, server.client("bob") as watcher:
        async with server.http("alice") as h:
            await h.post(f"/sessions/{sid}/participants", json={"user_id": "bob", "role": "viewer"})
        await watcher.subscribe(sid)
        ack = await ws.say(sid, SECRET_TEXT, parts=[{"type": "note", "body": "ip 10.1.2.3"}])
        [event] = await watcher.events(1)
        assert event["event"] == "message.created"
        seen = event["data"]["message"]
        assert seen["text"] == "mail [EMAIL] or call [PHONE], card [CARD]"
        assert seen["parts"] == [{"type": "note", "body": "ip [IP]"}]
        assert seen["metadata"]["pii"]["redacted"] is True
        async with server.http("alice") as h:
            stored = (await h.get(f"/sessions/{sid}/messages")).json()["items"]
            assert [m["text"] for m in stored if m["id"] == ack["message_id"]] == [seen["text"]]
            events = (await h.get(f"/sessions/{sid}/events")).json()["items"]
            assert "ann@example.org" not in str(events)
            assert "4111" not in str(events)
    # Another tenant with the default (off) keeps its text as written.
    other = await server.create_session("zed", "globex")
    async with server.http("zed", "globex") as z:
        r = await z.post(f"/sessions/{other}/messages", json={"text": SECRET_TEXT})
        assert r.json()["message"]["text"] == SECRET_TEXT


async def test_redact_llm_keeps_the_text_and_redacts_what_the_provider_sees(
    sqlite_url: str, settings_factory: Callable[..., Settings]
) -> None:
    async with FakeLLM() as llm:
        settings = settings_factory(
            database_url=sqlite_url,
            relay_openai_base_url=llm.openai_url,
            relay_openai_api_key="sk-test-openai-0123456789abcdef",
            relay_retry_base_delay=0.01,
        )
        async with start_server(settings) as srv:
            await set_mode(srv, "redact_llm")
            sid = await srv.create_session("alice")
            llm.script(Reply(chunks=["ok"]))
            async with srv.http("alice") as h, srv.client("alice") as ws:
                await add_assistant(h, sid, name="gpt", provider="openai", model="gpt-4o-mini")
                watcher = Watcher(ws, sid)
                await watcher.subscribe()
                answer = await ask(ws, sid, "gpt", text=SECRET_TEXT)
                await watcher.finished(answer["stream_id"])
                stored = (await h.get(f"/sessions/{sid}/messages")).json()["items"]
                assert stored[0]["text"] == SECRET_TEXT
                assert "pii" not in stored[0]["metadata"]
            sent = str(llm.requests[-1].body["messages"])
            assert "ann@example.org" not in sent
            assert "4111 1111 1111 1111" not in sent
            for placeholder in ("[EMAIL]", "[CARD]", "[PHONE]"):
                assert placeholder in sent

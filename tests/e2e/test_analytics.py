"""Analytics over REST on SQLite and PostgreSQL: per tenant, session, user, assistant and
model; LLM tokens, cost and first-token times from the relay's answers; JSON and CSV."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from parley.config import Settings
from tests.support import RunningServer, start_server

FAST = {"analysis_debounce": 0.0, "analysis_poll_interval": 0.05}


@pytest.fixture
async def intel(
    database_url: str, settings_factory: Callable[..., Settings]
) -> AsyncIterator[RunningServer]:
    async with start_server(settings_factory(database_url=database_url, **FAST)) as running:
        yield running


async def wait_for(check: Callable[[], Any], timeout: float = 20.0) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await check()
        if value:
            return value
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.05)


async def report(h: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    r = await h.get("/analytics", params=params)
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


async def test_analytics_per_scope_in_json_and_csv(intel: RunningServer) -> None:
    async with intel.http("alice") as alice, intel.http("bob") as bob:
        sid = (await alice.post("/sessions", json={"title": "support"})).json()["id"]
        other = (await bob.post("/sessions", json={"title": "other"})).json()["id"]
        r = await alice.post(
            f"/sessions/{sid}/assistants",
            json={"name": "Helper", "trigger": "message", "params": {"reply": "Happy to help!"}},
        )
        assert r.status_code == 201, r.text
        model = r.json()["model"]
        await alice.post(f"/sessions/{sid}/messages", json={"text": "How do I reset it?"})
        await wait_for(lambda: _assistant_messages(alice, sid, 1))
        await bob.post(f"/sessions/{sid}/messages", json={"text": "Use the settings page."})
        await wait_for(lambda: _assistant_messages(alice, sid, 2))
        await bob.post(f"/sessions/{other}/messages", json={"text": "Just me here"})

        async def analysed() -> bool:
            t = await report(alice)
            return bool(t["sentiment"]["analysed_messages"] == t["messages"])

        await wait_for(analysed)

        tenant = await report(alice)
        assert tenant["messages"] == 5
        assert tenant["messages_by_kind"] == {"human": 3, "assistant": 2}
        assert tenant["active_users"] == 2
        assert tenant["sessions"] == 2
        assert tenant["sessions_created"] == 2
        llm = tenant["llm"]
        assert llm["generations"] == 2
        assert llm["finished_ok"] == 2
        assert llm["output_tokens"] > 0
        assert llm["first_token_ms"]["p50"] is not None
        assert llm["first_token_ms"]["p99"] >= llm["first_token_ms"]["p50"]
        assert tenant["human_response_seconds"]["count"] == 1
        assert tenant["engagement"]["conversational_sessions"] == 1
        assert tenant["intents"]["question"] == 1
        q = tenant["quality"]
        assert 0 <= q["score"] <= 100
        assert set(q["parts"]) == {"tone", "answered", "assistant_ok", "engagement"}
        assert q["parts"]["engagement"] == 0.5
        assert q["parts"]["assistant_ok"] == 1.0
        assert sum(d["messages"] for d in tenant["series"]) == 5

        session = await report(alice, scope="session", id=sid)
        assert session["messages"] == 4
        assert session["sessions"] == 1
        user = await report(alice, scope="user", id="bob")
        assert user["messages"] == 2
        assert user["active_users"] == 1
        by_name = await report(alice, scope="assistant", id="helper")
        assert by_name["messages"] == 2
        assert by_name["llm"]["generations"] == 2
        by_model = await report(alice, scope="model", id=model)
        assert by_model["llm"]["generations"] == 2
        assert (await report(alice, scope="model", id="no-such-model"))["messages"] == 0
        future = await report(alice, **{"from": "2999-01-01T00:00:00Z"})
        assert future["messages"] == 0
        assert future["quality"]["parts"]["engagement"] == 0.0

        r = await alice.get("/analytics", params={"format": "csv"})
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/csv")
        rows = dict(csv.reader(io.StringIO(r.text)))
        assert rows["messages"] == "5"
        assert rows["llm.generations"] == "2"
        assert "quality.score" in rows

        for bad in (
            {"scope": "planet"},
            {"scope": "session"},
            {"format": "xml"},
            {"from": "last week"},
            {"from": "2026-01-01T00:00:00"},
            {"from": "2026-02-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"},
        ):
            r = await alice.get("/analytics", params=bad)
            assert r.status_code == 422, (bad, r.text)
        assert (
            await alice.get("/analytics", params={"scope": "session", "id": "x"})
        ).status_code == 404

    async with intel.http("eve", "evil") as eve:
        assert (await report(eve))["messages"] == 0
        r = await eve.get("/analytics", params={"scope": "session", "id": sid})
        assert r.status_code == 404


async def _assistant_messages(h: httpx.AsyncClient, sid: str, count: int) -> bool:
    items = (await h.get(f"/sessions/{sid}/messages")).json()["items"]
    return sum(1 for m in items if m["author"].startswith("assistant.")) >= count


async def test_breakdowns_and_daily_series(intel: RunningServer) -> None:
    async with intel.http("alice") as alice, intel.http("bob") as bob:
        sid = (await alice.post("/sessions", json={"title": "pricing"})).json()["id"]
        quiet = (await bob.post("/sessions", json={"title": "notes"})).json()["id"]
        r = await alice.post(
            f"/sessions/{sid}/assistants",
            json={"name": "Pricer", "trigger": "message", "params": {"reply": "It costs 5."}},
        )
        assert r.status_code == 201, r.text
        assistant = r.json()
        await alice.post(f"/sessions/{sid}/messages", json={"text": "What does it cost?"})
        await wait_for(lambda: _assistant_messages(alice, sid, 1))
        await bob.post(f"/sessions/{quiet}/messages", json={"text": "Only notes here"})

        data = await report(alice, by="model,assistant,user,session,model")
        groups = data["breakdowns"]
        assert list(groups) == ["model", "assistant", "user", "session"]
        (model,) = groups["model"]
        assert model["key"] == assistant["model"]
        assert model["generations"] == 1
        assert model["messages"] == 1
        assert model["output_tokens"] == data["llm"]["output_tokens"] > 0
        assert model["first_token_ms"]["p50"] is not None
        (by_assistant,) = groups["assistant"]
        assert by_assistant["key"] == assistant["id"]
        assert by_assistant["label"] == "Pricer"
        assert by_assistant["cost"]["total"] == 0.0
        users = {g["key"]: g for g in groups["user"]}
        assert {k: g["messages"] for k, g in users.items()} == {"alice": 1, "bob": 1}
        assert all(g["generations"] == 0 for g in users.values())
        sessions = {g["key"]: g for g in groups["session"]}
        assert {k: (g["label"], g["messages"]) for k, g in sessions.items()} == {
            sid: ("pricing", 2),
            quiet: ("notes", 1),
        }
        assert sum(d["sessions"] for d in data["series"]) >= 2
        assert sum(d["llm_tokens"] for d in data["series"]) == (
            data["llm"]["input_tokens"] + data["llm"]["output_tokens"]
        )
        assert "breakdowns" not in await report(alice)

        r = await alice.get("/analytics", params={"format": "csv", "by": "assistant"})
        rows = dict(csv.reader(io.StringIO(r.text)))
        assert rows[f"breakdowns.assistant.{assistant['id']}.label"] == "Pricer"
        assert rows[f"breakdowns.assistant.{assistant['id']}.generations"] == "1"
        day = data["series"][0]["day"]
        assert rows[f"series.{day}.messages"] == str(data["series"][0]["messages"])

        r = await alice.get("/analytics", params={"by": "planet"})
        assert r.status_code == 422
        assert "unknown breakdown 'planet'" in r.json()["error"]["message"]

    async with intel.http("eve", "evil") as eve:
        assert (await report(eve, by="session,user"))["breakdowns"] == {"session": [], "user": []}

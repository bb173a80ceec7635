"""Background analysis end to end over REST, on SQLite and PostgreSQL: the durable job queue,
sentiment and intent per message, keywords, topics, tag suggestions with their words,
automatic titles, summaries (extractive, LLM through the fake provider, "since I was last
here")."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from parley.config import Settings
from parley.governance.auth import TenantRole
from tests.fakes.llm_server import FakeLLM, Reply
from tests.support import RunningServer, start_server

FAST = {"analysis_debounce": 0.0, "analysis_poll_interval": 0.05}


@pytest.fixture
async def intel(
    database_url: str, settings_factory: Callable[..., Settings]
) -> AsyncIterator[RunningServer]:
    async with start_server(settings_factory(database_url=database_url, **FAST)) as running:
        yield running


async def post(h: httpx.AsyncClient, sid: str, text: str, **kw: Any) -> dict[str, Any]:
    r = await h.post(f"/sessions/{sid}/messages", json={"text": text, **kw})
    assert r.status_code == 201, r.text
    message: dict[str, Any] = r.json()["message"]
    return message


async def analysed(h: httpx.AsyncClient, sid: str, timeout: float = 20.0) -> dict[str, Any]:
    """The insights once the analysis has caught up with the session's newest message."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        last_seq = (await h.get(f"/sessions/{sid}")).json()["last_seq"]
        r = await h.get(f"/sessions/{sid}/insights")
        assert r.status_code == 200, r.text
        data: dict[str, Any] = r.json()
        if data["analyzed"] and not data["pending"] and data["analyzed_seq"] >= last_seq - 1:
            return data
        assert loop.time() < deadline, f"analysis did not catch up: {data}"
        await asyncio.sleep(0.05)


CONVERSATION = [
    ("alice", "Why was the customer charged twice for the invoice?"),
    ("bob", "Because the payment retry ran after the refund. Sorry, that's a terrible bug."),
    ("alice", "We decided to disable payment retries until the billing fix ships."),
    ("bob", "I'll write the refund script for the invoice by Friday."),
    ("alice", "Thanks, great work on finding it so fast!"),
]


async def test_messages_and_sessions_are_analysed_in_the_background(
    intel: RunningServer,
) -> None:
    async with intel.http("alice") as alice, intel.http("bob") as bob:
        sid = (await alice.post("/sessions", json={"tags": ["invoices"]})).json()["id"]
        await alice.post(f"/sessions/{sid}/participants", json={"user_id": "bob", "role": "editor"})
        ids = []
        for who, text in CONVERSATION:
            ids.append((await post(alice if who == "alice" else bob, sid, text))["id"])
        data = await analysed(alice, sid)

        by_id = {m["id"]: m for m in data["messages"]}
        assert [by_id[i]["intent"] for i in ids] == [
            "question",
            "answer",
            "decision",
            "action_item",
            "statement",
        ]
        assert by_id[ids[1]]["sentiment_label"] == "negative"
        assert by_id[ids[4]]["sentiment_label"] == "positive"
        assert data["sentiment"]["messages"] == 5
        assert data["sentiment"]["method"] == "vader"
        assert data["intents"]["counts"]["question"] == 1

        terms = [k["term"] for k in data["keywords"]]
        assert "invoice" in terms or "payment" in terms, terms
        billing = next(t for t in data["topics"] if t["topic"] == "billing")
        assert {"invoice", "payment", "refund"} <= set(billing["words"])
        suggested = {t["tag"]: t for t in data["suggested_tags"]}
        assert "invoices" not in suggested  # the session has it already
        assert suggested["billing"]["status"] == "suggested"
        assert "refund" in suggested["billing"]["words"]

        # The session had no title: analysis gave it one, announced as an event.
        session = (await alice.get(f"/sessions/{sid}")).json()
        assert session["title"] == CONVERSATION[0][1]
        events = (await alice.get(f"/sessions/{sid}/events")).json()["items"]
        titled = [e for e in events if e["event"] == "session.updated"]
        assert titled[-1]["data"]["automatic"] is True
        assert titled[-1]["actor"] == "parley-analysis"

        # An edit is analysed again.
        r = await bob.patch(f"/sessions/{sid}/messages/{ids[4]}", json={"text": "Can you?"})
        assert r.status_code == 403  # bob may not edit alice's message
        await alice.patch(f"/sessions/{sid}/messages/{ids[4]}", json={"text": "Is it fixed?"})

        async def edited() -> dict[str, Any]:
            while True:
                data = await analysed(alice, sid)
                found = {m["id"]: m for m in data["messages"]}[ids[4]]
                if found["intent"] == "question":
                    return data
                await asyncio.sleep(0.05)

        await asyncio.wait_for(edited(), 20)

        # A deleted message leaves no trace in the insights.
        await alice.delete(f"/sessions/{sid}/messages/{ids[4]}")

        async def forgotten() -> None:
            while True:
                data = await analysed(alice, sid)
                if ids[4] not in {m["id"] for m in data["messages"]}:
                    return
                await asyncio.sleep(0.05)

        await asyncio.wait_for(forgotten(), 20)


async def test_tag_suggestions_are_accepted_or_rejected(intel: RunningServer) -> None:
    async with intel.http("alice") as alice, intel.http("carol") as carol:
        sid = (await alice.post("/sessions", json={"title": "t"})).json()["id"]
        for _, text in CONVERSATION:
            await post(alice, sid, text)
        await post(alice, sid, "The deploy to production failed, rollback the release pipeline")
        data = await analysed(alice, sid)
        suggested = {t["tag"] for t in data["suggested_tags"]}
        assert {"billing", "deployment"} <= suggested, suggested

        r = await carol.post(f"/sessions/{sid}/tag-suggestions/billing/accept")
        assert r.status_code == 403  # not a participant: may read, may not change tags
        r = await alice.post(f"/sessions/{sid}/tag-suggestions/billing/accept")
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "accepted"
        assert "billing" in (await alice.get(f"/sessions/{sid}")).json()["tags"]
        r = await alice.post(f"/sessions/{sid}/tag-suggestions/deployment/reject")
        assert r.json()["status"] == "rejected"
        assert "deployment" not in (await alice.get(f"/sessions/{sid}")).json()["tags"]

        await post(alice, sid, "Another deploy, another rollback of the release")
        data = await analysed(alice, sid)
        status = {t["tag"]: t["status"] for t in data["suggested_tags"]}
        assert status["deployment"] == "rejected"
        assert status["billing"] == "accepted"

        r = await alice.post(f"/sessions/{sid}/tag-suggestions/nothing/accept")
        assert r.status_code == 404
        async with intel.http("eve", "evil") as eve:
            r = await eve.post(f"/sessions/{sid}/tag-suggestions/billing/accept")
            assert r.status_code == 404
            assert (await eve.get(f"/sessions/{sid}/insights")).status_code == 404
            assert (await eve.get(f"/sessions/{sid}/summary")).status_code == 404


async def test_summaries_whole_and_since_last_seen(intel: RunningServer) -> None:
    async with intel.http("alice") as alice, intel.http("bob") as bob:
        sid = (await alice.post("/sessions", json={"title": "incident"})).json()["id"]
        for _, text in CONVERSATION:
            await post(alice, sid, text)
        await analysed(alice, sid)
        whole = (await alice.get(f"/sessions/{sid}/summary")).json()
        assert whole["method"] == "extractive"
        assert whole["stored"] is True
        assert whole["from_seq"] == 0
        assert "decided to disable payment retries" in whole["text"]

        seen = (await bob.put(f"/sessions/{sid}/seen", json={})).json()
        assert seen["last_seen_seq"] == (await bob.get(f"/sessions/{sid}")).json()["last_seq"]
        await post(alice, sid, "Update: the refund script ran and every customer got money back.")
        since = (await bob.get(f"/sessions/{sid}/summary", params={"since": "last_seen"})).json()
        assert since["from_seq"] == seen["last_seen_seq"]
        assert since["messages"] == 1
        assert "refund script ran" in since["text"]
        assert "disable payment retries" not in since["text"]
        # Alice never marked anything: since last_seen is the whole session.
        mine = (await alice.get(f"/sessions/{sid}/summary", params={"since": "last_seen"})).json()
        assert mine["from_seq"] == 0
        assert mine["messages"] == 6

        made = await bob.post(f"/sessions/{sid}/summary", json={"since": "last_seen"})
        assert made.status_code == 201
        assert made.json()["created_by"] == "bob"
        assert made.json()["method"] == "extractive"
        for bad in ("yesterday", "-1", "9" * 20):
            r = await bob.get(f"/sessions/{sid}/summary", params={"since": bad})
            assert r.status_code == 422
        r = await bob.post(f"/sessions/{sid}/summary", json={"since": 3, "x": 1})
        assert r.status_code == 422
        r = await bob.put(f"/sessions/{sid}/seen", json={"seq": -1})
        assert r.status_code == 422


async def test_llm_summary_when_configured_and_fallback_when_it_fails(
    sqlite_url: str, settings_factory: Callable[..., Settings]
) -> None:
    async with FakeLLM() as fake:
        settings = settings_factory(
            database_url=sqlite_url,
            intelligence_llm_provider="openai",
            intelligence_llm_model="gpt-test",
            relay_openai_base_url=fake.openai_url,
            relay_openai_api_key="sk-test-intel-0123456789",
            **FAST,
        )
        async with start_server(settings) as server, server.http() as h:
            sid = await server.create_session()
            for _, text in CONVERSATION:
                await post(h, sid, text)
            fake.script(Reply(chunks=["- Retries ", "are off.\n- Bob writes the script."]))
            made = (await h.post(f"/sessions/{sid}/summary", json={})).json()
            assert made["method"] == "llm"
            assert made["model"] == "openai/gpt-test"
            assert made["text"] == "- Retries are off.\n- Bob writes the script."
            sent = fake.requests[-1].body
            assert "We decided to disable payment retries" in str(sent["messages"])
            latest = (await h.get(f"/sessions/{sid}/summary")).json()
            assert latest["method"] in ("llm", "extractive")
            fake.script(Reply(status=401, error="auth"))
            fallback = (await h.post(f"/sessions/{sid}/summary", json={})).json()
            assert fallback["method"] == "extractive"
            assert fallback["text"]


async def test_jobs_are_durable_and_wait_for_a_worker(
    database_url: str, settings_factory: Callable[..., Settings]
) -> None:
    """Jobs are written with the message; a process without a worker leaves them queued and the
    next process with one analyses them (nothing is lost when no worker runs)."""
    idle = settings_factory(database_url=database_url, analysis_worker=False)
    async with start_server(idle) as server, server.http() as h:
        sid = await server.create_session()
        await post(h, sid, "Is the invoice ready?")
        data = (await h.get(f"/sessions/{sid}/insights")).json()
        assert data["pending"] is True
        assert data["analyzed"] is False
    busy = settings_factory(database_url=database_url, **FAST)
    async with start_server(busy) as server, server.http() as h:
        data = await analysed(h, sid)
        assert data["messages"][0]["intent"] == "question"


async def test_related_sessions_by_tfidf(intel: RunningServer) -> None:
    async with intel.http("alice") as alice:
        topics = {
            "billing": [
                "The invoice total is wrong after the refund",
                "Refund the invoice and check the payment plan",
            ],
            "billing2": [
                "Another refund request: the invoice was charged twice",
                "Payment plan changes need a new invoice",
            ],
            "deploy": [
                "The kubernetes rollout failed in staging",
                "Rollback the deployment and check the pipeline",
            ],
        }
        ids = {}
        for name, texts in topics.items():
            ids[name] = (await alice.post("/sessions", json={"title": name})).json()["id"]
            for text in texts:
                await post(alice, ids[name], text)
        for sid in ids.values():
            await analysed(alice, sid)
        r = await alice.get(f"/sessions/{ids['billing']}/related")
        assert r.status_code == 200, r.text
        data = r.json()
        assert data["method"] == "tfidf"
        assert data["items"][0]["session"]["id"] == ids["billing2"]
        assert {"invoice", "refund"} & set(data["items"][0]["shared_terms"])
        assert ids["deploy"] not in [i["session"]["id"] for i in data["items"]][:1]
        assert ids["billing"] not in [i["session"]["id"] for i in data["items"]]
        assert (await alice.get(f"/sessions/{ids['billing']}/related?limit=0")).status_code == 422
    async with intel.http("eve", "evil") as eve:
        assert (await eve.get(f"/sessions/{ids['billing']}/related")).status_code == 404
        other = (await eve.post("/sessions", json={"title": "x"})).json()["id"]
        await post(eve, other, "invoice refund payment plan invoice")
        await analysed(eve, other)
        found = (await eve.get(f"/sessions/{other}/related")).json()["items"]
        assert found == []  # acme's sessions are never related to evil's


async def test_a_separate_worker_process_analyses_what_serving_processes_queued(
    database_url: str, settings_factory: Callable[..., Settings]
) -> None:
    """``parley analysis worker`` in its own process takes the jobs of a server that runs none;
    ``parley analysis status`` counts what waits."""
    env = {
        **os.environ,
        "PARLEY_DATABASE_URL": database_url,
        "PARLEY_ANALYSIS_DEBOUNCE": "0",
        "PARLEY_ANALYSIS_POLL_INTERVAL": "0.05",
        "PARLEY_LOG_LEVEL": "warning",
        # As in every test but the semantic ones (conftest): no PyTorch to load in the worker.
        "PARLEY_SEMANTIC": "false",
    }
    cli = [sys.executable, "-m", "parley.cli", "analysis"]
    idle = settings_factory(database_url=database_url, analysis_worker=False)
    async with start_server(idle) as server, server.http() as h:
        sid = await server.create_session()
        await post(h, sid, "Could you send me the slides?")
        status = await asyncio.to_thread(
            subprocess.run, [*cli, "status"], env=env, capture_output=True, text=True, timeout=60
        )
        assert status.returncode == 0, status.stderr
        assert status.stdout.strip() == "sessions waiting for analysis: 1"
        worker = await asyncio.create_subprocess_exec(*cli, "worker", env=env)
        try:
            data = await analysed(h, sid, timeout=60)
        finally:
            worker.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(worker.wait(), 30) == 0
        assert data["messages"][0]["intent"] == "request"


async def test_tenant_tag_rules_apply_or_silence_suggestions(intel: RunningServer) -> None:
    admin_token = intel.token("root", tenant_role=TenantRole.ADMIN)
    async with (
        intel.http("alice") as alice,
        httpx.AsyncClient(
            base_url=intel.base_url + "/api/v1",
            headers={"Authorization": f"Bearer {admin_token}"},
        ) as admin,
    ):
        r = await alice.post("/tag-rules/billing/accept")
        assert r.status_code == 403  # members may not set tenant rules
        assert (await admin.post("/tag-rules/billing/accept")).json()["status"] == "accepted"
        assert (await admin.post("/tag-rules/Bug/reject")).json()["tag"] == "bug"
        rules = (await admin.get("/tag-rules")).json()["items"]
        assert [(r["tag"], r["status"]) for r in rules] == [
            ("billing", "accepted"),
            ("bug", "rejected"),
        ]
        sid = (await alice.post("/sessions", json={"title": "t"})).json()["id"]
        for _, text in CONVERSATION:
            await post(alice, sid, text)
        data = await analysed(alice, sid)
        status = {t["tag"]: (t["status"], t["decided_by"]) for t in data["suggested_tags"]}
        assert status["billing"] == ("accepted", "parley-analysis")
        assert "bug" not in status
        assert "billing" in (await alice.get(f"/sessions/{sid}")).json()["tags"]
        events = (await alice.get(f"/sessions/{sid}/events")).json()["items"]
        tagged = [e for e in events if e["event"] == "session.updated"][-1]
        assert tagged["data"]["changed"] == ["tags"]
        assert tagged["data"]["automatic"] is True
        assert (await admin.delete("/tag-rules/bug")).json()["status"] is None
        assert (await admin.delete("/tag-rules/bug")).status_code == 404
        assert (await admin.post("/tag-rules/%20/accept")).status_code == 422
    async with intel.http("eve", "evil") as eve:
        assert (await eve.get("/tag-rules")).json()["items"] == []

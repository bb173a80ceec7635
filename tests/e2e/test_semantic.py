"""Semantic search and related sessions end to end over REST, on SQLite and PostgreSQL, with the
real all-MiniLM-L6-v2 model of the ``semantic`` extra: paraphrases that share no word with the
text are found, always within the caller's read scope; embedding runs in the analysis worker,
never in the request; without the extra, semantic search answers 501 and related sessions use
TF-IDF."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from parley.config import Settings
from parley.governance.scoping import all_tenants
from parley.intelligence.semantic.embedder import missing
from parley.storage import models as m
from tests.conftest import REQUIRE_SERVICES
from tests.e2e.test_encryption import new_key
from tests.support import RunningServer, start_server

FAST = {"analysis_debounce": 0.0, "analysis_poll_interval": 0.05}
ON = {"semantic": True, **FAST}
# The first test in a process loads PyTorch and the model (seconds on a busy machine).
pytestmark = pytest.mark.timeout(240)

# `make test` installs the extra; CI (PARLEY_REQUIRE_SERVICES=1) fails rather than skips.
needs_extra = pytest.mark.skipif(
    missing() is not None and not REQUIRE_SERVICES,
    reason=f"the semantic extra is not installed: {missing()}",
)


@contextlib.asynccontextmanager
async def semantic_server(settings: Settings) -> AsyncIterator[RunningServer]:
    """A server whose embedding model has loaded, as a load balancer waiting for warm-up
    would see it (the first query would otherwise wait seconds for the model)."""
    async with start_server(settings) as running:
        await running.app.state.intelligence.semantic.ready()
        yield running


@pytest.fixture
async def intel(
    database_url: str, settings_factory: Callable[..., Settings]
) -> AsyncIterator[RunningServer]:
    async with semantic_server(settings_factory(database_url=database_url, **ON)) as running:
        yield running


async def post(h: httpx.AsyncClient, sid: str, text: str) -> dict[str, Any]:
    r = await h.post(f"/sessions/{sid}/messages", json={"text": text})
    assert r.status_code == 201, r.text
    message: dict[str, Any] = r.json()["message"]
    return message


async def session(h: httpx.AsyncClient, title: str, texts: list[str], **body: Any) -> str:
    r = await h.post("/sessions", json={"title": title, **body})
    assert r.status_code == 201, r.text
    sid: str = r.json()["id"]
    for text in texts:
        await post(h, sid, text)
    return sid


async def settled(h: httpx.AsyncClient, sid: str, timeout: float = 180.0) -> None:
    """Wait until the worker has analysed (and so embedded) the session's newest message."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        last_seq = (await h.get(f"/sessions/{sid}")).json()["last_seq"]
        data = (await h.get(f"/sessions/{sid}/insights")).json()
        if data["analyzed"] and not data["pending"] and data["analyzed_seq"] >= last_seq - 1:
            return
        assert loop.time() < deadline, f"analysis did not catch up: {data}"
        await asyncio.sleep(0.1)


async def semantic(h: httpx.AsyncClient, q: str, **params: Any) -> dict[str, Any]:
    r = await h.get("/search", params={"q": q, "mode": "semantic", **params})
    assert r.status_code == 200, r.text
    result: dict[str, Any] = r.json()
    return result


BILLING = [
    "The invoice was charged twice to the card this month.",
    "Finance will send the refund back to the account.",
]
BILLING_TOO = ["My credit card statement shows a duplicate payment for the subscription."]
DEPLOY = [
    "We ship the new release to production servers on Friday night.",
    "Roll back the deployment if the health checks fail.",
]
PARAPHRASE = "someone paid double for a bill"  # no word in common with BILLING


@needs_extra
async def test_paraphrases_are_found_by_meaning_within_the_read_scope(
    intel: RunningServer,
) -> None:
    async with (
        intel.http("alice") as alice,
        intel.http("carol") as carol,
        intel.http("eve", "evil") as eve,
    ):
        billing = await session(alice, "card issue", BILLING)
        billing_too = await session(alice, "statement question", BILLING_TOO)
        deploy = await session(alice, "release plan", DEPLOY)
        hidden = await session(carol, "carol's own", BILLING, visibility="private")
        other_tenant = await session(eve, "evil billing", BILLING)
        for h, sid in (
            (alice, billing),
            (alice, billing_too),
            (alice, deploy),
            (carol, hidden),
            (eve, other_tenant),
        ):
            await settled(h, sid)

        # Keywords find nothing: the query shares no word with the messages.
        r = await alice.get("/search", params={"q": PARAPHRASE})
        assert r.json()["items"] == []

        found = await semantic(alice, PARAPHRASE)
        assert found["engine"] in ("semantic-numpy", "semantic-pgvector")
        assert found["query"]["mode"] == "semantic"
        top = found["items"][0]
        assert top["kind"] == "message"
        assert top["session"]["id"] == billing
        assert top["snippet"]["text"] == BILLING[0]
        assert top["snippet"]["highlights"] == []
        assert top["message"]["seq"] >= 1
        assert 0.25 <= top["score"] <= 1.0
        scores = [i["score"] for i in found["items"]]
        assert scores == sorted(scores, reverse=True)
        sessions = {i["session"]["id"] for i in found["items"]}
        assert deploy not in sessions  # unrelated: under the score floor
        # Never carol's private session, never another tenant's.
        assert hidden not in sessions
        assert other_tenant not in sessions
        assert found["facets"]["total"] == len(found["items"])

        # Filters narrow semantic hits like keyword ones.
        titles = await semantic(alice, "shipping software to production", kinds="title")
        assert all(i["kind"] == "title" for i in titles["items"])
        only_deploy = await semantic(alice, "shipping software to production", kinds="message")
        assert only_deploy["items"][0]["session"]["id"] == deploy

        # Eve sees only her tenant; carol sees her private session.
        assert {i["session"]["id"] for i in (await semantic(eve, PARAPHRASE))["items"]} == {
            other_tenant
        }
        assert hidden in {i["session"]["id"] for i in (await semantic(carol, PARAPHRASE))["items"]}

        # POST takes the mode too.
        r = await alice.post("/search", json={"q": PARAPHRASE, "mode": "semantic", "limit": 1})
        assert r.status_code == 200, r.text
        assert [i["ref_id"] for i in r.json()["items"]] == [top["ref_id"]]
        assert r.json()["next_cursor"] == "1"

        # Related sessions by meaning: the other billing session, not the deploy one; never
        # carol's private one nor eve's.
        r = await alice.get(f"/sessions/{billing}/related")
        assert r.status_code == 200, r.text
        related = r.json()
        assert related["method"] == "semantic"
        ids = [i["session"]["id"] for i in related["items"]]
        assert ids[0] == billing_too
        assert hidden not in ids
        assert other_tenant not in ids
        assert deploy not in ids
        r = await eve.get(f"/sessions/{billing}/related")
        assert r.status_code == 404


@needs_extra
async def test_embedding_runs_in_the_worker_and_follows_edits_and_deletes(
    database_url: str, settings_factory: Callable[..., Settings]
) -> None:
    idle = settings_factory(database_url=database_url, analysis_worker=False, **ON)
    async with semantic_server(idle) as server, server.http("alice") as alice:
        sid = await session(alice, "card issue", [])
        message = await post(alice, sid, BILLING[0])
        # Posting answered without embedding anything: no worker runs in this process.
        assert (await semantic(alice, PARAPHRASE))["items"] == []
        keyword = await alice.get("/search", params={"q": "invoice"})
        assert [i["ref_id"] for i in keyword.json()["items"]] == [message["id"]]

        worker = server.app.state.intelligence.worker
        assert await worker.run_once() == 1
        hits = (await semantic(alice, PARAPHRASE))["items"]
        assert [i["ref_id"] for i in hits if i["kind"] == "message"] == [message["id"]]

        # An edit is embedded again: the old meaning is gone, the new one is found.
        r = await alice.patch(
            f"/sessions/{sid}/messages/{message['id']}",
            json={"text": "The database backup finished overnight without errors."},
        )
        assert r.status_code == 200, r.text
        assert await worker.run_once() == 1
        hits = (await semantic(alice, PARAPHRASE, kinds="message"))["items"]
        assert hits == []
        hits = (await semantic(alice, "nightly data copy completed", kinds="message"))["items"]
        assert [i["ref_id"] for i in hits] == [message["id"]]

        # A deleted message loses its vector.
        r = await alice.delete(f"/sessions/{sid}/messages/{message['id']}")
        assert r.status_code in (200, 204), r.text
        assert await worker.run_once() == 1
        hits = (await semantic(alice, "nightly data copy completed", kinds="message"))["items"]
        assert hits == []


async def test_without_the_extra_semantic_search_is_refused_and_related_uses_tfidf(
    database_url: str, settings_factory: Callable[..., Settings]
) -> None:
    off = settings_factory(database_url=database_url, semantic=False, **FAST)
    async with semantic_server(off) as server, server.http("alice") as alice:
        assert server.app.state.intelligence.semantic.available is False
        billing = await session(alice, "card issue", [*BILLING, "The invoice refund is late."])
        other = await session(alice, "more billing", ["Where is my invoice refund?"])
        await settled(alice, billing)
        await settled(alice, other)

        r = await alice.get("/search", params={"q": PARAPHRASE, "mode": "semantic"})
        assert r.status_code == 501
        assert r.json()["error"]["code"] == "semantic_unavailable"
        assert "PARLEY_SEMANTIC=false" in r.json()["error"]["message"]
        r = await alice.post("/search", json={"q": PARAPHRASE, "mode": "semantic"})
        assert r.status_code == 501
        # Keyword search is unaffected.
        r = await alice.get("/search", params={"q": "invoice"})
        assert r.status_code == 200
        assert r.json()["items"]

        related = (await alice.get(f"/sessions/{billing}/related")).json()
        assert related["method"] == "tfidf"
        assert [i["session"]["id"] for i in related["items"]] == [other]
        assert "invoice" in related["items"][0]["shared_terms"]


async def test_semantic_queries_are_validated(sqlite_server: RunningServer) -> None:
    async with sqlite_server.http("alice") as alice:
        r = await alice.get("/search", params={"mode": "semantic"})
        assert r.status_code == 422
        assert "semantic search needs q" in r.json()["error"]["message"]
        r = await alice.get("/search", params={"q": "x", "mode": "vibes"})
        assert r.status_code == 422
        assert r.json()["error"]["details"][0]["field"] == "mode"


@needs_extra
async def test_sealed_message_text_gets_no_vector_but_titles_do(
    database_url: str, settings_factory: Callable[..., Settings]
) -> None:
    """As the keyword index: a vector of sealed text would give much of it away."""
    sealed = settings_factory(
        database_url=database_url, master_key=new_key(), analysis_worker=False, **ON
    )
    async with semantic_server(sealed) as server, server.http("alice") as alice:
        sid = await session(alice, "Moving to the new office", BILLING)
        assert await server.app.state.intelligence.worker.run_once() == 1

        def kinds(s: Session) -> list[str]:
            return sorted(s.scalars(select(m.Embedding.kind).where(m.Embedding.session_id == sid)))

        stored = await server.app.state.db.read(all_tenants("test inspection", kinds))
        assert stored == ["session", "title"]
        assert (await semantic(alice, PARAPHRASE, kinds="message"))["items"] == []
        hits = (await semantic(alice, "relocating to another workplace"))["items"]
        assert [(i["kind"], i["session"]["id"]) for i in hits] == [("title", sid)]


async def test_a_missing_module_makes_semantic_search_unavailable(
    sqlite_url: str, settings_factory: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The path of a server installed without the extra: it starts, and says what to install."""
    from parley.intelligence.semantic import embedder

    monkeypatch.setattr(embedder, "_MODULES", ("parley_no_such_module",))
    settings = settings_factory(database_url=sqlite_url, **ON)
    async with semantic_server(settings) as server, server.http("alice") as alice:
        sid = await session(alice, "card issue", BILLING)
        await settled(alice, sid)
        r = await alice.get("/search", params={"q": PARAPHRASE, "mode": "semantic"})
        assert r.status_code == 501
        error = r.json()["error"]
        assert error["code"] == "semantic_unavailable"
        assert "parley_no_such_module" in error["message"]
        assert "parley[semantic]" in error["message"]
        assert (await alice.get(f"/sessions/{sid}/related")).json()["method"] == "tfidf"

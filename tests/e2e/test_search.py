"""Search end to end over REST, on SQLite (FTS5) and PostgreSQL (tsvector): ranking, snippets
with safe highlights, facets, filters, read scope, index kept in step with edits and deletes."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from pycrdt import Map

from parley.config import Settings
from tests.fakes.llm_server import FakeLLM, Reply
from tests.support import RunningServer, start_server
from tests.ysupport import yjs_client


async def post(h: httpx.AsyncClient, sid: str, text: str) -> dict[str, Any]:
    r = await h.post(f"/sessions/{sid}/messages", json={"text": text})
    assert r.status_code == 201, r.text
    message: dict[str, Any] = r.json()["message"]
    return message


async def find(h: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    r = await h.get("/search", params=params)
    assert r.status_code == 200, r.text
    result: dict[str, Any] = r.json()
    return result


async def test_messages_titles_and_tags_are_found_ranked_with_safe_snippets(
    server: RunningServer,
) -> None:
    async with server.http("alice") as alice, server.http("bob") as bob:
        s1 = (
            await alice.post("/sessions", json={"title": "Budget planning", "tags": ["finance"]})
        ).json()["id"]
        s2 = (await bob.post("/sessions", json={"title": "Lunch", "tags": ["social"]})).json()["id"]
        m1 = await post(alice, s1, "The <b>budget</b> for Q3 is approved & final.")
        await post(alice, s1, "Nothing to see here")
        await post(bob, s2, "Where do we go for lunch? Budgets are tight.")

        result = await find(alice, q="budget")
        kinds = {(i["kind"], i["session"]["id"]) for i in result["items"]}
        assert ("message", s1) in kinds
        assert ("title", s1) in kinds
        assert ("message", s2) in kinds
        assert result["engine"] in ("sqlite-fts5", "postgresql-tsvector")
        hit = next(i for i in result["items"] if i["ref_id"] == m1["id"])
        assert hit["message"] == {"id": m1["id"], "seq": m1["seq"]}
        assert hit["author"] == "alice"
        snippet = hit["snippet"]
        assert "<b>" not in snippet["html"]
        assert "</b>" not in snippet["html"]
        assert "b&gt;" in snippet["html"]
        assert "<mark>budget</mark>" in snippet["html"]
        assert "&amp;" in snippet["html"]
        start, end = snippet["highlights"][0]
        assert snippet["text"][start:end].lower() == "budget"
        scores = [i["score"] for i in result["items"]]
        assert scores == sorted(scores, reverse=True)

        tagged = await find(alice, q="finance")
        assert [(i["kind"], i["session"]["id"]) for i in tagged["items"]] == [("tag", s1)]

        facets = result["facets"]
        assert facets["total"] == len(result["items"])
        assert {f["value"]: f["count"] for f in facets["participant"]} == {"alice": 1, "bob": 1}
        assert {f["value"] for f in facets["tag"]} == {"finance", "social"}
        assert facets["status"] == [{"value": "active", "count": 2}]
        assert sum(d["count"] for d in facets["date"]["days"]) == facets["total"]

        only_bob = await find(alice, q="budget", participant="bob")
        assert {i["session"]["id"] for i in only_bob["items"]} == {s2}
        by_tag = await find(alice, q="budget", tag="finance", kinds="message")
        assert [i["ref_id"] for i in by_tag["items"]] == [m1["id"]]
        by_author = await find(alice, q="budget", author="bob")
        assert [i["session"]["id"] for i in by_author["items"]] == [s2]


async def test_phrases_exclusions_stemming_and_hostile_input(server: RunningServer) -> None:
    async with server.http() as h:
        sid = await server.create_session(title="x")
        a = await post(h, sid, "the quarterly report is late")
        b = await post(h, sid, "the report was quarterly once")
        assert {i["ref_id"] for i in (await find(h, q="reports"))["items"]} == {a["id"], b["id"]}
        phrase = await find(h, q='"quarterly report"')
        assert [i["ref_id"] for i in phrase["items"]] == [a["id"]]
        excluded = await find(h, q="report -late")
        assert [i["ref_id"] for i in excluded["items"]] == [b["id"]]
        for hostile in ['"', "AND OR NOT", "report*)(", "col:report", "NEAR(a b)", "\\'; --"]:
            r = await h.get("/search", params={"q": hostile})
            assert r.status_code in (200, 422), (hostile, r.text)
        r = await h.get("/search", params={"q": "!!!"})
        assert r.status_code == 422
        assert r.json()["error"]["code"] == "invalid_request"
        for bad in (
            {"limit": "0"},
            {"from": "yesterday"},
            {"status": "gone"},
            {"cursor": "x"},
            {"nope": "1"},
            {"kinds": "sessions"},
        ):
            r = await h.get("/search", params={"q": "report", **bad})
            assert r.status_code == 422, (bad, r.text)
        r = await h.get(
            "/search",
            params={"from": "2026-02-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"},
        )
        assert r.status_code == 422


async def test_edits_deletes_titles_and_tags_keep_the_index_in_step(server: RunningServer) -> None:
    async with server.http() as h:
        sid = await server.create_session(title="alpha")
        msg = await post(h, sid, "kangaroo facts")
        assert len((await find(h, q="kangaroo"))["items"]) == 1
        r = await h.patch(f"/sessions/{sid}/messages/{msg['id']}", json={"text": "wombat facts"})
        assert r.status_code == 200
        assert (await find(h, q="kangaroo"))["items"] == []
        assert len((await find(h, q="wombat"))["items"]) == 1
        await h.delete(f"/sessions/{sid}/messages/{msg['id']}")
        assert (await find(h, q="wombat"))["items"] == []
        await h.patch(f"/sessions/{sid}", json={"title": "omega", "tags": ["zebra"]})
        assert (await find(h, q="alpha"))["items"] == []
        assert [i["kind"] for i in (await find(h, q="omega"))["items"]] == ["title"]
        assert [i["kind"] for i in (await find(h, q="zebra"))["items"]] == ["tag"]
        await h.delete(f"/sessions/{sid}")
        assert (await find(h, q="omega"))["items"] == []


async def test_other_tenants_are_never_seen(server: RunningServer) -> None:
    async with server.http("alice", "acme") as acme, server.http("eve", "evil") as evil:
        sid = await server.create_session("alice", "acme", title="secret plans")
        await post(acme, sid, "the secret launch code")
        assert (await find(evil, q="secret"))["items"] == []
        facets = (await find(evil, q="secret"))["facets"]
        assert facets["total"] == 0
        assert facets["participant"] == []
        assert (await find(evil))["items"] == []
        assert len((await find(acme, q="secret"))["items"]) == 2


async def test_filters_without_text_list_sessions_and_dates_narrow(server: RunningServer) -> None:
    async with server.http("alice") as alice, server.http("bob") as bob:
        s1 = (await alice.post("/sessions", json={"title": "one", "tags": ["x"]})).json()["id"]
        s2 = (await bob.post("/sessions", json={"title": "two"})).json()["id"]
        await post(bob, s1, "hello from bob")
        assert (await bob.post(f"/sessions/{s2}/archive")).status_code == 200
        everything = await find(alice)
        assert {i["session"]["id"] for i in everything["items"]} == {s1, s2}
        assert everything["engine"] == "filters"
        assert {i["session"]["id"] for i in (await find(alice, owner="bob"))["items"]} == {s2}
        assert {i["session"]["id"] for i in (await find(alice, participant="bob"))["items"]} == {
            s1,
            s2,
        }
        assert {i["session"]["id"] for i in (await find(alice, status="archived"))["items"]} == {s2}
        assert {i["session"]["id"] for i in (await find(alice, author="bob"))["items"]} == {s1}
        future = (datetime.now(UTC) + timedelta(days=2)).isoformat()
        assert (await find(alice, **{"from": future}))["items"] == []
        assert (await find(alice, q="hello", **{"from": future}))["items"] == []
        past = (datetime.now(UTC) - timedelta(days=2)).isoformat()
        assert len((await find(alice, q="hello", **{"from": past}))["items"]) == 1
        page1 = await find(alice, limit=1)
        assert page1["next_cursor"] == "1"
        page2 = await find(alice, limit=1, cursor=page1["next_cursor"])
        assert page2["next_cursor"] is None
        assert page1["items"][0]["session"]["id"] != page2["items"][0]["session"]["id"]
        posted = await alice.post("/search", json={"q": "hello", "participant": "bob"})
        assert posted.status_code == 200
        assert len(posted.json()["items"]) == 1
        bad = await alice.post("/search", json={"q": "hello", "colour": "red"})
        assert bad.status_code == 422


async def test_annotations_are_found(server: RunningServer) -> None:
    sid = await server.create_session("alice")
    async with server.client("bob") as watcher, yjs_client(server, sid, "alice") as a:
        await watcher.subscribe(sid)
        with a.doc.transaction():
            a.annotations["n1"] = Map(
                {
                    "id": "n1",
                    "message_id": "m7",
                    "kind": "comment",
                    "body": "double-check the <script> numbers",
                    "author": "alice",
                    "created": "2026-11-25T10:00:00.000Z",
                    "resolved": False,
                }
            )
        await watcher.events(1)
    async with server.http() as h:
        result = await find(h, q="numbers")
        (hit,) = result["items"]
        assert (hit["kind"], hit["ref_id"], hit["author"]) == ("annotation", "n1", "alice")
        assert "&lt;script&gt; <mark>numbers</mark>" in hit["snippet"]["html"]


async def test_sentences_parse_to_editable_queries_that_search(server: RunningServer) -> None:
    async with server.http("alice") as alice, server.http("bob") as bob:
        mine = (await alice.post("/sessions", json={"title": "models"})).json()["id"]
        theirs = (await bob.post("/sessions", json={"title": "other"})).json()["id"]
        await post(alice, mine, "We compared two AI models today")
        await post(bob, theirs, "AI is everywhere")
        r = await alice.post(
            "/search/parse", json={"q": "show me my conversations about AI from this week"}
        )
        assert r.status_code == 200, r.text
        parsed = r.json()
        assert parsed["method"] == "rules"
        assert parsed["fallback"] is None
        query = parsed["query"]
        assert query["q"] == "ai"
        assert query["participant"] == "alice"
        assert "from" in query
        assert parsed["notes"]
        found = await alice.post("/search", json=query)
        assert found.status_code == 200, found.text
        assert {i["session"]["id"] for i in found.json()["items"]} == {mine}
        edited = {**query, "participant": "bob"}
        found = await alice.post("/search", json=edited)
        assert {i["session"]["id"] for i in found.json()["items"]} == {theirs}
        for bad in ({}, {"q": ""}, {"q": "x" * 501}, {"q": "ai", "now": "2020-01-01"}):
            assert (await alice.post("/search/parse", json=bad)).status_code == 422


async def test_llm_parses_queries_when_configured_and_rules_catch_bad_output(
    sqlite_url: str, settings_factory: Callable[..., Settings]
) -> None:
    async with FakeLLM() as fake:
        settings = settings_factory(
            database_url=sqlite_url,
            intelligence_llm_provider="anthropic",
            intelligence_llm_model="claude-test",
            relay_anthropic_base_url=fake.anthropic_url,
            relay_anthropic_api_key="sk-ant-test-intel-0123456789",
        )
        async with start_server(settings) as server, server.http() as h:
            fake.script(
                Reply(chunks=['{"q": "ai", ', '"participant": "alice", "status": "active"}'])
            )
            r = (await h.post("/search/parse", json={"q": "my open chats on AI"})).json()
            assert r["method"] == "llm"
            assert r["query"] == {"q": "ai", "participant": "alice", "status": "active"}
            assert "alice" in fake.requests[-1].body["system"]
            for junk in (
                "Sure! Here are your filters.",
                '{"q": "ai", "colour": "red"}',
                '{"status": "deleted"}',
                '{"from": "2026-02-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}',
            ):
                fake.script(Reply(chunks=[junk]))
                r = (await h.post("/search/parse", json={"q": "my chats about AI"})).json()
                assert r["method"] == "rules", junk
                assert r["fallback"] == "the LLM's answer did not fit the schema"
                assert r["query"] == {"q": "ai", "participant": "alice"}
            fake.script(Reply(status=500, error="server"), Reply(status=500, error="server"))
            r = (await h.post("/search/parse", json={"q": "my chats about AI"})).json()
            assert r["method"] == "rules"
            assert r["fallback"] == "the LLM did not answer"

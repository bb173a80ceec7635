"""The GraphQL read API end to end on SQLite and PostgreSQL: the same data, tenant scoping and
read permissions as REST, pagination, limits, and precise errors without stack traces."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
from pycrdt import Map
from sqlalchemy import event

from parley.config import Settings
from tests.fakes.relay_client import add_assistant
from tests.support import DEFAULT_TIMEOUT, RunningServer, start_server
from tests.ysupport import yjs_client

Json = dict[str, Any]


async def gql(
    server: RunningServer,
    query: str,
    variables: Json | None = None,
    *,
    user: str = "alice",
    tenant: str = "acme",
    status: int = 200,
) -> Json:
    async with httpx.AsyncClient(timeout=DEFAULT_TIMEOUT) as h:
        r = await h.post(
            server.base_url + "/api/graphql",
            json={"query": query, "variables": variables},
            headers={"Authorization": f"Bearer {server.token(user, tenant)}"},
        )
    assert r.status_code == status, r.text
    assert "Traceback" not in r.text
    body: Json = r.json()
    return body


def data_of(body: Json) -> Json:
    assert "errors" not in body, body["errors"]
    data: Json = body["data"]
    return data


SESSION_Q = """
query One($id: ID!, $first: Int!, $after: String) {
  session(id: $id) {
    id title tags status lastSeq createdBy
    participants { userId name kind role }
    assistants { name provider model }
    usage { answers inputTokens outputTokens cost }
    annotations { id messageId kind body resolved }
    attachments { id name contentType size }
    messages(first: $first, after: $after) {
      nodes {
        id seq author text edited deleted parentId
        parent { id text }
        attachments { id name contentType sha256 url thumbnailUrl }
      }
      pageInfo { endCursor hasNextPage }
    }
  }
}
"""


async def test_a_session_with_its_messages_pages_participants_and_annotations(
    server: RunningServer,
) -> None:
    sid = await server.create_session(title="Planning", tags=["q4", "ops"])
    async with server.http() as h, server.http("bob") as hb:
        ids = []
        for i in range(5):
            r = await h.post(f"/sessions/{sid}/messages", json={"text": f"m{i}"})
            ids.append(r.json()["message"]["id"])
        r = await hb.post(
            f"/sessions/{sid}/messages", json={"text": "reply to m1", "parent_id": ids[1]}
        )
        reply = r.json()["message"]["id"]
        await h.patch(f"/sessions/{sid}/messages/{ids[2]}", json={"text": "m2 fixed"})
        await h.delete(f"/sessions/{sid}/messages/{ids[3]}")
        up = await h.post(
            f"/sessions/{sid}/attachments",
            params={"filename": "notes.txt"},
            content=b"hello",
            headers={"Content-Type": "text/plain"},
        )
        att = up.json()
        r = await h.post(
            f"/sessions/{sid}/messages",
            json={"text": "file", "parts": [{"type": "attachment", "attachment_id": att["id"]}]},
        )
        assert r.status_code == 201, r.text
        await add_assistant(h, sid, name="helper")
    async with yjs_client(server, sid, "alice") as y, server.client("carol") as watcher:
        await watcher.subscribe(sid)
        with y.doc.transaction():
            y.annotations["n1"] = Map(
                {"id": "n1", "message_id": ids[0], "kind": "comment", "body": "nice"}
            )
        await watcher.wait_for(lambda f: f.get("event") == "annotation.created")

    s = data_of(await gql(server, SESSION_Q, {"id": sid, "first": 3}))["session"]
    assert (s["id"], s["title"], sorted(s["tags"]), s["status"]) == (
        sid,
        "Planning",
        ["ops", "q4"],
        "active",
    )
    assert [p["userId"] for p in s["participants"]][:2] == ["alice", "bob"]
    assert s["participants"][2]["kind"] == "assistant"
    assert s["assistants"] == [{"name": "helper", "provider": "scripted", "model": "scripted"}]
    assert s["usage"] == {"answers": 0, "inputTokens": 0, "outputTokens": 0, "cost": None}
    assert s["annotations"] == [
        {"id": "n1", "messageId": ids[0], "kind": "comment", "body": "nice", "resolved": False}
    ]
    assert [a["name"] for a in s["attachments"]] == ["notes.txt"]

    page = s["messages"]
    assert [n["text"] for n in page["nodes"]] == ["m0", "m1", "m2 fixed"]
    assert page["nodes"][2]["edited"] is True
    assert page["pageInfo"]["hasNextPage"] is True

    seen = list(page["nodes"])
    cursor = page["pageInfo"]["endCursor"]
    while cursor:
        s2 = data_of(await gql(server, SESSION_Q, {"id": sid, "first": 3, "after": cursor}))
        page = s2["session"]["messages"]
        seen += page["nodes"]
        cursor = page["pageInfo"]["endCursor"] if page["pageInfo"]["hasNextPage"] else None
    assert [n["id"] for n in seen] == [*ids, reply, seen[-1]["id"]]
    assert seen[3]["deleted"] is True
    assert seen[3]["text"] == ""
    by_id = {n["id"]: n for n in seen}
    assert by_id[reply]["parent"] == {"id": ids[1], "text": "m1"}
    assert by_id[reply]["parentId"] == ids[1]
    (file_part,) = seen[-1]["attachments"]
    assert file_part["id"] == att["id"]
    assert file_part["contentType"] == "text/plain"
    assert file_part["url"] == f"/api/v1/attachments/{att['id']}"

    branch = data_of(
        await gql(
            server,
            "query($id: ID!, $b: ID!) { session(id: $id) { messages(branch: $b) {"
            " nodes { id } } } }",
            {"id": sid, "b": reply},
        )
    )["session"]["messages"]["nodes"]
    assert [n["id"] for n in branch] == [ids[0], ids[1], reply], "m2.. came after the branch"


async def test_sessions_page_newest_first_and_other_tenants_are_invisible(
    server: RunningServer,
) -> None:
    sids = [await server.create_session(title=f"s{i}") for i in range(3)]
    theirs = await server.create_session("mallory", tenant="evil", title="secret")
    q = (
        "query($after: String) { sessions(first: 2, after: $after) {"
        " nodes { id title } pageInfo { endCursor hasNextPage } } }"
    )
    first = data_of(await gql(server, q))["sessions"]
    assert [n["title"] for n in first["nodes"]] == ["s2", "s1"]
    assert first["pageInfo"]["hasNextPage"] is True
    rest = data_of(await gql(server, q, {"after": first["pageInfo"]["endCursor"]}))["sessions"]
    assert [n["id"] for n in rest["nodes"]] == [sids[0]]
    assert rest["pageInfo"]["hasNextPage"] is False

    one = "query($id: ID!) { session(id: $id) { id title } }"
    assert await gql(server, one, {"id": theirs}) == {"data": {"session": None}}
    missing = "0" * 8 + theirs[8:]
    assert await gql(server, one, {"id": missing}) == {"data": {"session": None}}
    assert await gql(server, one, {"id": "../../etc"}) == {"data": {"session": None}}
    mine = data_of(await gql(server, one, {"id": theirs}, user="mallory", tenant="evil"))
    assert mine["session"]["title"] == "secret"

    viewer = data_of(await gql(server, "{ viewer { userId tenantId tenantRole } }"))
    assert viewer["viewer"] == {"userId": "alice", "tenantId": "acme", "tenantRole": "member"}


async def test_analytics_counts_and_assistant_usage(server: RunningServer) -> None:
    sid = await server.create_session()
    async with server.http() as h, server.client() as ws:
        await add_assistant(h, sid, name="helper", params={"token_delay": 0}, trigger="manual")
        await h.post(f"/sessions/{sid}/messages", json={"text": "hello"})
        await ws.subscribe(sid)
        r = await h.post(f"/sessions/{sid}/assistants/helper/ask", json={"text": "sum up"})
        assert r.status_code == 202, r.text
        done = await ws.wait_for(
            lambda f: (
                f.get("event") == "message.created"
                and f["data"]["message"]["author"].startswith("assistant.")
            )
        )
    usage = done["data"]["message"]["metadata"]["usage"]
    await server.create_session("zed", tenant="other")

    q = """{ analytics { sessions messages activeUsers activeDays
              assistants { name provider model answers inputTokens outputTokens } } }"""
    a = data_of(await gql(server, q))["analytics"]
    assert a["sessions"] == 1, "the other tenant's session is not counted"
    assert a["messages"] == 3
    assert a["activeUsers"] == 1, "alice; the assistant is not a user"
    assert a["activeDays"] == 30
    assert a["assistants"] == [
        {
            "name": "helper",
            "provider": "scripted",
            "model": "scripted",
            "answers": 1,
            "inputTokens": usage["input_tokens"],
            "outputTokens": usage["output_tokens"],
        }
    ]
    s = data_of(
        await gql(
            server,
            "query($id: ID!) { session(id: $id) { usage { answers inputTokens } } }",
            {"id": sid},
        )
    )
    assert s["session"]["usage"] == {"answers": 1, "inputTokens": usage["input_tokens"]}


async def test_limits_and_bad_queries_get_precise_errors(server: RunningServer) -> None:
    sid = await server.create_session()
    nest = "parent { " * 10
    deep = f'{{ session(id: "{sid}") {{ messages {{ nodes {{ {nest} id {"}" * 10} }} }} }} }}'
    body = await gql(server, deep, status=400)
    assert body["data"] is None
    assert "exceeds maximum operation depth" in body["errors"][0]["message"]

    costly = """{ sessions(first: 100) { nodes { id messages(first: 100) {
                  nodes { id text author } } } } }"""
    body = await gql(server, costly, status=400)
    err = body["errors"][0]
    assert err["extensions"]["code"] == "query_too_complex"
    assert err["extensions"]["cost"] > 5000

    body = await gql(server, "{ sessions(first: 500) { nodes { id } } }")
    err = body["errors"][0]
    assert err["extensions"]["code"] == "invalid_request"
    assert err["path"] == ["sessions"]
    assert "between 1 and 100" in err["message"]

    body = await gql(server, '{ sessions(after: "bm90LWEtY3Vyc29y") { nodes { id } } }')
    assert body["errors"][0]["extensions"]["code"] == "invalid_request"

    bad_seq = "c2VxOmFiYw=="  # "seq:abc"
    q = "query($id: ID!, $c: String) { session(id: $id) { messages(after: $c) { nodes { id } } } }"
    body = await gql(server, q, {"id": sid, "c": bad_seq})
    assert body["data"] == {"session": None}
    assert body["errors"][0]["path"] == ["session", "messages"]
    assert body["errors"][0]["extensions"]["code"] == "invalid_request"

    body = await gql(server, "{ sessions { nodes { id ", status=400)
    err = body["errors"][0]
    assert err["extensions"]["code"] == "invalid_query"
    assert err["locations"], "a syntax error points at where it is"

    body = await gql(server, "{ sessions { nodes { password } } }", status=400)
    assert "Cannot query field 'password'" in body["errors"][0]["message"]

    body = await gql(server, "mutation { x }", status=400)
    assert body["errors"]

    aliases = "{ " + " ".join(f"a{i}: viewer {{ userId }}" for i in range(40)) + " }"
    body = await gql(server, aliases, status=400)
    assert "aliases" in body["errors"][0]["message"]

    body = await gql(server, "{ viewer { " + "a " * 5001 + "} }", status=400)
    assert "more than 5000 tokens" in body["errors"][0]["message"]
    body = await gql(server, "{ viewer { " + "userId " * 5001 + "} }", status=422)
    assert "at most 20000 characters" in body["errors"][0]["message"]

    async with httpx.AsyncClient(timeout=DEFAULT_TIMEOUT) as h:
        r = await h.post(server.base_url + "/api/graphql", json={"query": "{ viewer { userId } }"})
        assert r.status_code == 401
        assert r.json()["errors"][0]["extensions"]["code"] == "unauthenticated"
        r = await h.post(
            server.base_url + "/api/graphql",
            content=b"{not json",
            headers={"Authorization": f"Bearer {server.token()}"},
        )
        assert r.status_code == 400
        assert r.json()["errors"][0]["extensions"]["code"] == "bad_encoding"
        r = await h.get(server.base_url + "/api/graphql")
        assert r.status_code == 405, "no GraphiQL page: it would load scripts from a CDN"


async def test_nested_lists_are_batch_loaded_not_queried_per_session(
    sqlite_url: str, settings_factory: Callable[..., Settings]
) -> None:
    """The number of SQL statements of a query over many sessions does not grow with them."""
    # No background jobs: their polls would run on the same engine while statements are counted.
    quiet = settings_factory(
        database_url=sqlite_url,
        analysis_worker=False,
        integrations_workers=False,
        retention_interval=0,
        attachment_gc_interval=0,
    )
    async with start_server(quiet) as server:
        await _count_batched_statements(server)


async def _count_batched_statements(server: RunningServer) -> None:
    q = """{ sessions(first: 50) { nodes { id participants { userId } usage { answers }
             messages(first: 5) { nodes { id parent { id } } } } } }"""
    engine = server.app.state.db._engines[0]  # the SQLite readers' engine
    counts = []
    for batch in (2, 10):
        for _ in range(batch):
            sid = await server.create_session()
            async with server.http() as h:
                first = await h.post(f"/sessions/{sid}/messages", json={"text": "a"})
                parent = first.json()["message"]["id"]
                await h.post(f"/sessions/{sid}/messages", json={"text": "b", "parent_id": parent})
        statements = 0

        def count(*_: Any) -> None:
            nonlocal statements
            statements += 1

        event.listen(engine, "before_cursor_execute", count)
        try:
            data = data_of(await gql(server, q))
        finally:
            event.remove(engine, "before_cursor_execute", count)
        assert len(data["sessions"]["nodes"]) in (2, 12)
        counts.append(statements)
    assert counts[0] == counts[1], counts

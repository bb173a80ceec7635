"""The REST API under /api/v1, plus /healthz, /readyz and /metrics, on SQLite and PostgreSQL."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx

from parley.governance.auth import UserKind, create_token
from tests.support import DEFAULT_TIMEOUT, RunningServer

Json = dict[str, Any]

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
SESSION_FIELDS = {
    "id",
    "title",
    "metadata",
    "tags",
    "status",
    "visibility",
    "created_by",
    "created_at",
    "updated_at",
    "last_seq",
}
MESSAGE_FIELDS = {
    "id",
    "session",
    "seq",
    "author",
    "parent_id",
    "text",
    "parts",
    "metadata",
    "client_id",
    "created_at",
    "edited_at",
    "deleted_at",
}
EVENT_FIELDS = {"type", "session", "seq", "event", "data", "actor", "ts"}


def error_of(r: httpx.Response, status: int, code: str) -> Json:
    """Assert ``r`` is the JSON error ``code`` with ``status``; return the error object."""
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json"), r.headers
    body = r.json()
    assert set(body) == {"error"}, body
    err: Json = body["error"]
    assert err["code"] == code, err
    assert isinstance(err["message"], str), err
    assert err["message"], err
    return err


def detail_fields(err: Json) -> list[str]:
    details = err["details"]
    assert isinstance(details, list), err
    assert details, err
    for problem in details:
        assert set(problem) == {"field", "problem"}, problem
        assert problem["problem"], problem
    return [p["field"] for p in details]


async def known(server: RunningServer, *users: str, tenant: str = "acme") -> None:
    """Make users exist in the tenant (a user exists once the server has seen their token)."""
    for user in users:
        async with server.http(user, tenant) as h:
            r = await h.get("/me")
            assert r.status_code == 200, r.text


async def post(h: httpx.AsyncClient, sid: str, text: str, **body: Any) -> Json:
    r = await h.post(f"/sessions/{sid}/messages", json={"text": text, **body})
    assert r.status_code == 201, r.text
    result: Json = r.json()
    return result


# -- sessions ------------------------------------------------------------------------------------


async def test_create_and_get_a_session(server: RunningServer) -> None:
    async with server.http() as h:
        r = await h.post(
            "/sessions",
            json={
                "title": "  Launch plan  ",
                "metadata": {"priority": 1, "nested": {"list": [1, "two", None]}},
                "tags": ["Alpha", "beta ", "ALPHA"],
            },
        )
        assert r.status_code == 201, r.text
        assert r.headers["content-type"].startswith("application/json")
        s = r.json()
        assert set(s) == SESSION_FIELDS
        assert uuid.UUID(s["id"]).version == 7
        assert s["title"] == "Launch plan"
        assert s["metadata"] == {"priority": 1, "nested": {"list": [1, "two", None]}}
        assert s["tags"] == ["alpha", "beta"]
        assert s["status"] == "active"
        assert s["created_by"] == "alice"
        assert ISO.match(s["created_at"]), s
        assert s["updated_at"] == s["created_at"]
        assert s["last_seq"] == 2

        r = await h.get(f"/sessions/{s['id']}")
        assert r.status_code == 200, r.text
        assert r.json() == s

        # Its first two events: created, and the creator joined as owner.
        r = await h.get(f"/sessions/{s['id']}/events")
        events = r.json()["items"]
        assert [(e["seq"], e["event"], e["actor"]) for e in events] == [
            (1, "session.created", "alice"),
            (2, "participant.joined", "alice"),
        ]
        assert events[0]["data"] == {"session": s}
        assert events[1]["data"]["participant"]["role"] == "owner"

        # No body at all is an empty one: every field has a default.
        r = await h.post("/sessions")
        assert r.status_code == 201, r.text
        assert (r.json()["title"], r.json()["tags"], r.json()["metadata"]) == ("", [], {})

        # Invalid bodies are refused precisely.
        err = error_of(
            await h.post("/sessions", json={"title": "x", "colour": "red"}), 422, "invalid_request"
        )
        assert detail_fields(err) == ["colour"]
        err = error_of(await h.post("/sessions", json={"title": 42}), 422, "invalid_request")
        assert detail_fields(err) == ["title"]
        err = error_of(await h.post("/sessions", json={"tags": ["ok", ""]}), 422, "invalid_request")
        assert detail_fields(err) == ["tags.1"]
        err = error_of(await h.post("/sessions", json={"title": "t" * 501}), 422, "invalid_request")
        assert detail_fields(err) == ["title"]
        error_of(
            await h.post(
                "/sessions", content=b'{"title": ', headers={"content-type": "application/json"}
            ),
            400,
            "bad_encoding",
        )
        # A tag that is only whitespace normalises to nothing.
        error_of(await h.post("/sessions", json={"tags": ["   "]}), 422, "invalid_request")

        r = await h.get("/sessions")
        assert len(r.json()["items"]) == 2, "refused creations created nothing"

        error_of(await h.get(f"/sessions/{uuid.uuid4()}"), 404, "not_found")


async def test_list_sessions_pages_newest_first_with_a_cursor(server: RunningServer) -> None:
    created = [await server.create_session(title=f"s{i}") for i in range(7)]
    newest_first = created[::-1]
    async with server.http() as h:
        pages: list[list[str]] = []
        cursor: str | None = None
        while True:
            params: Json = {"limit": 3}
            if cursor is not None:
                params["cursor"] = cursor
            r = await h.get("/sessions", params=params)
            assert r.status_code == 200, r.text
            body = r.json()
            assert set(body) == {"items", "next_cursor"}
            pages.append([s["id"] for s in body["items"]])
            cursor = body["next_cursor"]
            if cursor is None:
                break
            assert len(pages) < 10, "the cursor must make progress"
        assert [len(p) for p in pages] == [3, 3, 1]
        assert [sid for page in pages for sid in page] == newest_first

        r = await h.get("/sessions", params={"limit": 7})
        assert [s["id"] for s in r.json()["items"]] == newest_first
        assert r.json()["next_cursor"] is None
        r = await h.get("/sessions")
        assert [s["id"] for s in r.json()["items"]] == newest_first
        assert all(set(s) == SESSION_FIELDS for s in r.json()["items"])

        for bad in ("0", "201", "-1", "three"):
            error_of(await h.get("/sessions", params={"limit": bad}), 422, "invalid_request")


async def test_list_sessions_filters_by_status_and_tag(server: RunningServer) -> None:
    async with server.http() as h:
        ids: dict[str, str] = {}
        for name, tags in (
            ("both", ["Red", "Blue"]),
            ("red", ["RED"]),
            ("green", ["green"]),
            ("none", []),
        ):
            r = await h.post("/sessions", json={"title": name, "tags": tags})
            assert r.status_code == 201, r.text
            ids[name] = r.json()["id"]
        assert (await h.get(f"/sessions/{ids['both']}")).json()["tags"] == ["blue", "red"]
        r = await h.post(f"/sessions/{ids['red']}/archive")
        assert r.status_code == 200, r.text

        async def listed(**params: str) -> list[str]:
            r = await h.get("/sessions", params=params)
            assert r.status_code == 200, r.text
            names = {v: k for k, v in ids.items()}
            return [names[s["id"]] for s in r.json()["items"]]

        assert await listed(tag="red") == ["red", "both"]
        assert await listed(tag="RED") == ["red", "both"]
        assert await listed(tag=" Red ") == ["red", "both"]
        assert await listed(tag="blue") == ["both"]
        assert await listed(tag="purple") == []
        assert await listed(status="archived") == ["red"]
        assert await listed(status="active") == ["none", "green", "both"]
        assert await listed(tag="red", status="active") == ["both"]
        assert await listed(tag="red", status="archived") == ["red"]
        assert await listed() == ["none", "green", "red", "both"]
        error_of(await h.get("/sessions", params={"status": "deleted"}), 422, "invalid_request")


async def test_patch_a_session(server: RunningServer) -> None:
    async with server.http() as h:
        r = await h.post("/sessions", json={"title": "before", "tags": ["one"]})
        s = r.json()
        sid = s["id"]

        r = await h.patch(f"/sessions/{sid}", json={"title": " after "})
        assert r.status_code == 200, r.text
        after = r.json()
        assert after["title"] == "after"
        assert after["last_seq"] == 3
        assert after["updated_at"] >= s["updated_at"]
        assert {k: v for k, v in after.items() if k not in ("title", "last_seq", "updated_at")} == {
            k: v for k, v in s.items() if k not in ("title", "last_seq", "updated_at")
        }

        r = await h.patch(
            f"/sessions/{sid}",
            json={"metadata": {"k": "v"}, "tags": ["Two", "three"], "status": "archived"},
        )
        assert r.status_code == 200, r.text
        after = r.json()
        assert (after["metadata"], after["tags"], after["status"]) == (
            {"k": "v"},
            ["three", "two"],
            "archived",
        )
        assert after["last_seq"] == 4
        assert (await h.get(f"/sessions/{sid}")).json() == after

        events = (await h.get(f"/sessions/{sid}/events", params={"after_seq": 2})).json()["items"]
        assert [(e["seq"], e["event"], e["data"]["changed"]) for e in events] == [
            (3, "session.updated", ["title"]),
            (4, "session.updated", ["metadata", "status", "tags"]),
        ]
        assert events[1]["data"]["session"] == after

        # Nothing to change: no new event, the same view.
        r = await h.patch(f"/sessions/{sid}", json={})
        assert r.status_code == 200, r.text
        assert r.json() == after

        # Invalid bodies: 422 invalid_request naming the field; not JSON: 400 bad_encoding.
        for body, field in (
            ({"title": 5}, "title"),
            ({"title": "t" * 501}, "title"),
            ({"status": "deleted"}, "status"),
            ({"tags": "red"}, "tags"),
            ({"tags": [""]}, "tags.0"),
            ({"tags": [f"t{i}" for i in range(33)]}, "tags"),
            ({"metadata": [1, 2]}, "metadata"),
            ({"colour": "red"}, "colour"),
            ({"title": "ok", "id": "another-id"}, "id"),
        ):
            err = error_of(await h.patch(f"/sessions/{sid}", json=body), 422, "invalid_request")
            assert detail_fields(err) == [field], (body, err)
            assert field in err["message"], err
        err = error_of(await h.patch(f"/sessions/{sid}", json=[1, 2]), 422, "invalid_request")
        assert detail_fields(err) == ["body"]
        for raw in (b"{", b"title=x", b"\xff\xfe"):
            error_of(
                await h.patch(
                    f"/sessions/{sid}", content=raw, headers={"content-type": "application/json"}
                ),
                400,
                "bad_encoding",
            )
        big = {"metadata": {"blob": "x" * (17 * 1024)}}
        error_of(await h.patch(f"/sessions/{sid}", json=big), 422, "invalid_request")
        assert (await h.get(f"/sessions/{sid}")).json() == after, "refused patches changed nothing"

        error_of(await h.patch(f"/sessions/{uuid.uuid4()}", json={"title": "x"}), 404, "not_found")

    # Someone of the tenant who is not an owner or editor may not change it.
    async with server.http("bob") as h:
        error_of(await h.patch(f"/sessions/{sid}", json={"title": "bob's"}), 403, "forbidden")
        error_of(await h.post(f"/sessions/{sid}/archive"), 403, "forbidden")


async def test_an_archived_session_refuses_new_messages(server: RunningServer) -> None:
    async with server.http() as h:
        sid = (await h.post("/sessions", json={"title": "t"})).json()["id"]
        first = await post(h, sid, "before archiving", client_id="c-1")
        r = await h.post(f"/sessions/{sid}/archive")
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "archived"
        assert r.json()["last_seq"] == first["seq"] + 1

        error_of(
            await h.post(f"/sessions/{sid}/messages", json={"text": "after"}),
            409,
            "session_archived",
        )
        mid = first["message"]["id"]
        error_of(
            await h.patch(f"/sessions/{sid}/messages/{mid}", json={"text": "x"}),
            409,
            "session_archived",
        )
        error_of(await h.delete(f"/sessions/{sid}/messages/{mid}"), 409, "session_archived")
        async with server.client() as ws:
            for frame in (
                {"type": "send", "session": sid, "text": "after"},
                {"type": "edit", "session": sid, "message_id": mid, "text": "x"},
                {"type": "delete", "session": sid, "message_id": mid},
            ):
                reply = await ws.request(frame)
                assert (reply["type"], reply["code"]) == ("error", "session_archived"), reply
        # Reading still works, and archiving again changes nothing.
        r = await h.get(f"/sessions/{sid}/messages")
        assert [m["text"] for m in r.json()["items"]] == ["before archiving"]
        r = await h.post(f"/sessions/{sid}/archive")
        assert r.status_code == 200, r.text
        assert r.json()["last_seq"] == first["seq"] + 1

        r = await h.patch(f"/sessions/{sid}", json={"status": "active"})
        assert r.json()["status"] == "active"
        await post(h, sid, "after reactivating")


async def test_delete_a_session(server: RunningServer) -> None:
    await known(server, "bob")
    async with server.http() as h:
        sid = (await h.post("/sessions", json={"title": "doomed"})).json()["id"]
        await post(h, sid, "hello")
        r = await h.post(f"/sessions/{sid}/participants", json={"user_id": "bob"})
        assert r.status_code == 201, r.text

        async with server.client("bob") as bob, server.client("carol", binary=True) as carol:
            await bob.subscribe(sid)
            await carol.subscribe(sid)
            # Only owners delete: an editor and a bystander are refused.
            async with server.http("bob") as hb:
                error_of(await hb.delete(f"/sessions/{sid}"), 403, "forbidden")
            async with server.http("carol") as hc:
                error_of(await hc.delete(f"/sessions/{sid}"), 403, "forbidden")

            r = await h.delete(f"/sessions/{sid}")
            assert r.status_code == 204, r.text
            assert r.content == b""
            for ws in (bob, carol):
                event = await ws.wait_for(
                    lambda f: f["type"] == "event" and f["event"] == "session.deleted"
                )
                assert event["ephemeral"] is True
                assert event["session"] == sid
                assert event["data"] == {"session": sid, "by": "alice"}
                # The subscription ended with the session.
                reply = await ws.request({"type": "typing", "session": sid})
                assert reply["code"] == "not_subscribed", reply

        for method, path in (
            ("GET", f"/sessions/{sid}"),
            ("GET", f"/sessions/{sid}/messages"),
            ("GET", f"/sessions/{sid}/events"),
            ("GET", f"/sessions/{sid}/participants"),
            ("DELETE", f"/sessions/{sid}"),
        ):
            error_of(await h.request(method, path), 404, "not_found")
        error_of(await h.post(f"/sessions/{sid}/messages", json={"text": "x"}), 404, "not_found")
        assert sid not in [s["id"] for s in (await h.get("/sessions")).json()["items"]]


# -- messages ------------------------------------------------------------------------------------


async def test_post_a_message_and_retry_it_safely(server: RunningServer) -> None:
    async with server.http() as h:
        sid = (await h.post("/sessions", json={"title": "t"})).json()["id"]
        r = await h.post(
            f"/sessions/{sid}/messages",
            json={"text": "hello", "client_id": "c-1", "metadata": {"lang": "en"}},
        )
        assert r.status_code == 201, r.text
        body = r.json()
        assert set(body) == {"message", "seq", "duplicate"}
        assert body["duplicate"] is False
        assert body["seq"] == 3
        msg = body["message"]
        assert set(msg) == MESSAGE_FIELDS
        assert (msg["session"], msg["seq"], msg["author"], msg["text"]) == (
            sid,
            3,
            "alice",
            "hello",
        )
        assert (msg["client_id"], msg["metadata"], msg["parts"], msg["parent_id"]) == (
            "c-1",
            {"lang": "en"},
            None,
            None,
        )
        assert ISO.match(msg["created_at"])
        assert msg["edited_at"] is None
        assert msg["deleted_at"] is None

        # The same client_id again: the first result, not a second message.
        r = await h.post(f"/sessions/{sid}/messages", json={"text": "hello", "client_id": "c-1"})
        assert r.status_code == 200, r.text
        assert r.json() == {"message": msg, "seq": 3, "duplicate": True}
        r = await h.post(f"/sessions/{sid}/messages", json={"text": "changed", "client_id": "c-1"})
        assert r.status_code == 200, r.text
        assert r.json() == {"message": msg, "seq": 3, "duplicate": True}

        # An Idempotency-Key header works the same way.
        key = {"Idempotency-Key": "key-1"}
        r1 = await h.post(f"/sessions/{sid}/messages", json={"text": "keyed"}, headers=key)
        assert r1.status_code == 201, r1.text
        assert r1.json()["duplicate"] is False
        assert r1.json()["message"]["client_id"] == "key-1"
        r2 = await h.post(f"/sessions/{sid}/messages", json={"text": "keyed"}, headers=key)
        assert r2.status_code == 200, r2.text
        assert r2.json() == {**r1.json(), "duplicate": True}

        # Another author's client_id is theirs alone.
        async with server.http("bob") as hb:
            r = await hb.post(f"/sessions/{sid}/messages", json={"text": "bob", "client_id": "c-1"})
            assert r.status_code == 201, r.text
            assert r.json()["message"]["id"] != msg["id"]

        # Parts without text, and replies.
        r = await h.post(
            f"/sessions/{sid}/messages",
            json={"parts": [{"type": "image", "url": "https://x/y.png"}], "parent_id": msg["id"]},
        )
        assert r.status_code == 201, r.text
        assert r.json()["message"]["parts"] == [{"type": "image", "url": "https://x/y.png"}]
        assert r.json()["message"]["parent_id"] == msg["id"]
        assert r.json()["message"]["text"] == ""

        # Refused messages.
        error_of(
            await h.post(f"/sessions/{sid}/messages", json={"text": "  "}), 422, "invalid_request"
        )
        error_of(await h.post(f"/sessions/{sid}/messages", json={}), 422, "invalid_request")
        limit = server.settings.max_text_chars
        error_of(
            await h.post(f"/sessions/{sid}/messages", json={"text": "x" * (limit + 1)}),
            422,
            "text_too_long",
        )
        error_of(
            await h.post(f"/sessions/{sid}/messages", json={"text": "re", "parent_id": "nope"}),
            422,
            "invalid_request",
        )
        err = error_of(
            await h.post(f"/sessions/{sid}/messages", json={"text": "x", "author": "bob"}),
            422,
            "invalid_request",
        )
        assert detail_fields(err) == ["author"]
        err = error_of(
            await h.post(f"/sessions/{sid}/messages", json={"text": ["x"]}), 422, "invalid_request"
        )
        assert detail_fields(err) == ["text"]
        error_of(
            await h.post(
                f"/sessions/{sid}/messages",
                content=b"not json",
                headers={"content-type": "application/json"},
            ),
            400,
            "bad_encoding",
        )

        r = await h.get(f"/sessions/{sid}/messages")
        items = r.json()["items"]
        assert [(m["author"], m["text"]) for m in items] == [
            ("alice", "hello"),
            ("alice", "keyed"),
            ("bob", "bob"),
            ("alice", ""),
        ]
        created = [
            e
            for e in (await h.get(f"/sessions/{sid}/events")).json()["items"]
            if e["event"] == "message.created"
        ]
        assert [e["data"]["message"]["id"] for e in created] == [m["id"] for m in items]


async def test_an_idempotency_key_has_the_limits_of_a_client_id(server: RunningServer) -> None:
    """The header is the body's ``client_id`` by another name: 1-128 characters."""
    sid = await server.create_session()
    async with server.http() as h:
        longest = "k" * 128
        r = await h.post(
            f"/sessions/{sid}/messages", json={"text": "a"}, headers={"Idempotency-Key": longest}
        )
        assert r.status_code == 201, r.text
        assert r.json()["message"]["client_id"] == longest
        for body, headers in (
            ({"text": "b", "client_id": "k" * 129}, {}),
            ({"text": "b"}, {"Idempotency-Key": "k" * 129}),
        ):
            r = await h.post(f"/sessions/{sid}/messages", json=body, headers=headers)
            error_of(r, 422, "invalid_request")
        items = (await h.get(f"/sessions/{sid}/messages")).json()["items"]
        assert [m["client_id"] for m in items] == [longest]


async def test_a_nul_character_is_stored_or_refused_never_a_500(server: RunningServer) -> None:
    """U+0000 is valid in JSON strings. On every backend a body carrying it is either applied
    (and reads back exactly) or refused with 422 ``invalid_request``; never a 500."""
    async with server.http() as h:
        r = await h.post("/sessions", json={"title": "nul \x00 title"})
        if r.status_code == 201:
            assert (await h.get(f"/sessions/{r.json()['id']}")).json()["title"] == "nul \x00 title"
        else:
            error_of(r, 422, "invalid_request")
        sid = (await h.post("/sessions", json={"title": "t"})).json()["id"]
        sent: list[str] = []
        for body in (
            {"text": "nul \x00 text"},
            {"text": "nul in metadata", "metadata": {"k": "\x00"}},
        ):
            r = await h.post(f"/sessions/{sid}/messages", json=body)
            if r.status_code == 201:
                sent.append(body["text"])
            else:
                error_of(r, 422, "invalid_request")
        r = await h.patch(f"/sessions/{sid}", json={"tags": ["nul\x00tag"]})
        if r.status_code == 200:
            assert (await h.get(f"/sessions/{sid}")).json()["tags"] == ["nul\x00tag"]
        else:
            error_of(r, 422, "invalid_request")
        items = (await h.get(f"/sessions/{sid}/messages")).json()["items"]
        assert [m["text"] for m in items] == sent


async def test_list_messages_by_seq_range(server: RunningServer) -> None:
    async with server.http() as h:
        sid = (await h.post("/sessions", json={"title": "t"})).json()["id"]
        seqs = [(await post(h, sid, f"m{i}"))["seq"] for i in range(6)]
        assert seqs == [3, 4, 5, 6, 7, 8]

        async def listed(**params: int) -> list[int]:
            r = await h.get(f"/sessions/{sid}/messages", params=params)
            assert r.status_code == 200, r.text
            items = r.json()["items"]
            assert all(set(m) == MESSAGE_FIELDS for m in items)
            assert [m["text"] for m in items] == [f"m{m['seq'] - 3}" for m in items]
            return [m["seq"] for m in items]

        assert await listed() == [3, 4, 5, 6, 7, 8]
        assert await listed(after_seq=4) == [5, 6, 7, 8]
        assert await listed(before_seq=6) == [3, 4, 5]
        assert await listed(after_seq=3, before_seq=7) == [4, 5, 6]
        assert await listed(after_seq=5, before_seq=6) == []
        assert await listed(limit=2) == [3, 4]
        assert await listed(after_seq=4, limit=2) == [5, 6]
        assert await listed(after_seq=8) == []
        assert await listed(after_seq=0, before_seq=100, limit=500) == [3, 4, 5, 6, 7, 8]
        for params in ({"limit": 0}, {"limit": 501}, {"after_seq": -1}, {"before_seq": "x"}):
            error_of(
                await h.get(f"/sessions/{sid}/messages", params=params), 422, "invalid_request"
            )


async def test_edit_a_message_author_only(server: RunningServer) -> None:
    async with server.http() as h, server.http("bob") as hb:
        sid = (await h.post("/sessions", json={"title": "t"})).json()["id"]
        created = await post(h, sid, "first draft", metadata={"v": 1})
        mid = created["message"]["id"]
        await post(hb, sid, "bob was here")  # bob joins as an editor

        async with server.client("carol") as watcher:
            await watcher.subscribe(sid)
            # Not the author: even an editor, even the session owner, may not edit it.
            error_of(
                await hb.patch(f"/sessions/{sid}/messages/{mid}", json={"text": "bob's"}),
                403,
                "forbidden",
            )
            r = await h.patch(f"/sessions/{sid}/messages/{mid}", json={"text": "final"})
            assert r.status_code == 200, r.text
            body = r.json()
            assert set(body) == {"message", "seq"}
            edited = body["message"]
            assert (edited["id"], edited["seq"], edited["text"]) == (mid, created["seq"], "final")
            assert edited["metadata"] == {"v": 1}, "fields not in the edit are kept"
            assert ISO.match(edited["edited_at"])
            assert edited["created_at"] == created["message"]["created_at"]
            (event,) = await watcher.events(1)
            assert (event["seq"], event["event"], event["data"]["message"]) == (
                body["seq"],
                "message.edited",
                edited,
            )

        r = await h.get(f"/sessions/{sid}/messages")
        assert r.json()["items"][0] == edited
        async with server.http("bob") as hb2:
            bob_mid = (await hb2.get(f"/sessions/{sid}/messages")).json()["items"][1]["id"]
        error_of(
            await h.patch(f"/sessions/{sid}/messages/{bob_mid}", json={"text": "x"}),
            403,
            "forbidden",
        )
        error_of(await h.patch(f"/sessions/{sid}/messages/{mid}", json={}), 422, "invalid_request")
        err = error_of(
            await h.patch(f"/sessions/{sid}/messages/{mid}", json={"txt": "typo"}),
            422,
            "invalid_request",
        )
        assert detail_fields(err) == ["txt"]
        error_of(
            await h.patch(f"/sessions/{sid}/messages/{uuid.uuid4()}", json={"text": "x"}),
            404,
            "not_found",
        )


async def test_delete_a_message_leaves_a_tombstone(server: RunningServer) -> None:
    async with server.http() as h, server.http("bob") as hb:
        sid = (await h.post("/sessions", json={"title": "t"})).json()["id"]
        mine = await post(
            h, sid, "oops", metadata={"secret": True}, parts=[{"type": "file", "name": "a.txt"}]
        )
        mid = mine["message"]["id"]
        theirs = await post(hb, sid, "bob's message")
        reply = await post(h, sid, "a reply", parent_id=mid)

        error_of(await hb.delete(f"/sessions/{sid}/messages/{mid}"), 403, "forbidden")
        r = await h.delete(f"/sessions/{sid}/messages/{mid}")
        assert r.status_code == 200, r.text
        body = r.json()
        tomb = body["message"]
        assert body["seq"] == reply["seq"] + 1
        assert (tomb["id"], tomb["seq"], tomb["author"]) == (mid, mine["seq"], "alice")
        assert (tomb["text"], tomb["parts"], tomb["metadata"]) == ("", None, {})
        assert ISO.match(tomb["deleted_at"])

        items = (await h.get(f"/sessions/{sid}/messages")).json()["items"]
        assert items[0] == tomb, "the tombstone keeps its place"
        assert items[2]["parent_id"] == mid
        error_of(await h.delete(f"/sessions/{sid}/messages/{mid}"), 409, "conflict")
        error_of(
            await h.patch(f"/sessions/{sid}/messages/{mid}", json={"text": "revived"}),
            409,
            "conflict",
        )
        # The owner of the session may delete someone else's message.
        r = await h.delete(f"/sessions/{sid}/messages/{theirs['message']['id']}")
        assert r.status_code == 200, r.text
        assert r.json()["message"]["author"] == "bob"
        assert r.json()["message"]["text"] == ""
        error_of(await h.delete(f"/sessions/{sid}/messages/{uuid.uuid4()}"), 404, "not_found")

        events = (await h.get(f"/sessions/{sid}/events")).json()["items"]
        deleted = [e for e in events if e["event"] == "message.deleted"]
        assert [e["data"]["message"]["id"] for e in deleted] == [mid, theirs["message"]["id"]]


async def test_list_events_after_a_seq(server: RunningServer) -> None:
    async with server.http() as h:
        sid = (await h.post("/sessions", json={"title": "t"})).json()["id"]
        for i in range(3):
            await post(h, sid, f"m{i}")
        await h.patch(f"/sessions/{sid}", json={"title": "renamed"})

        r = await h.get(f"/sessions/{sid}/events")
        events = r.json()["items"]
        assert [(e["seq"], e["event"]) for e in events] == [
            (1, "session.created"),
            (2, "participant.joined"),
            (3, "message.created"),
            (4, "message.created"),
            (5, "message.created"),
            (6, "session.updated"),
        ]
        for e in events:
            assert set(e) == EVENT_FIELDS, e
            assert (e["type"], e["session"], e["actor"]) == ("event", sid, "alice")
            assert ISO.match(e["ts"])

        r = await h.get(f"/sessions/{sid}/events", params={"after_seq": 3})
        assert r.json()["items"] == events[3:]
        r = await h.get(f"/sessions/{sid}/events", params={"after_seq": 1, "limit": 2})
        assert r.json()["items"] == events[1:3]
        r = await h.get(f"/sessions/{sid}/events", params={"after_seq": 6})
        assert r.json()["items"] == []
        for params in ({"after_seq": -1}, {"after_seq": "x"}, {"limit": 0}):
            error_of(await h.get(f"/sessions/{sid}/events", params=params), 422, "invalid_request")

        # What the REST list returns is what a resubscribing socket replays.
        async with server.client() as ws:
            ack = await ws.subscribe(sid, since_seq=2)
            assert (ack["seq"], ack["replayed"]) == (6, 4)
            assert await ws.events(4) == events[2:]


# -- participants --------------------------------------------------------------------------------


async def test_participants_and_their_roles(server: RunningServer) -> None:
    await known(server, "bob", "carol", "dave", "erin")
    async with server.http() as h:
        sid = (await h.post("/sessions", json={"title": "t"})).json()["id"]

        async def roles() -> dict[str, str]:
            r = await h.get(f"/sessions/{sid}/participants")
            assert r.status_code == 200, r.text
            return {p["user_id"]: p["role"] for p in r.json()["items"]}

        assert await roles() == {"alice": "owner"}
        r = await h.post(f"/sessions/{sid}/participants", json={"user_id": "bob"})
        assert r.status_code == 201, r.text
        bob = r.json()
        assert set(bob) == {"user_id", "role", "name", "kind", "joined_at"}
        assert (bob["user_id"], bob["role"], bob["name"], bob["kind"]) == (
            "bob",
            "editor",
            "bob",
            "human",
        )
        for user, role in (("carol", "viewer"), ("dave", "commenter")):
            r = await h.post(f"/sessions/{sid}/participants", json={"user_id": user, "role": role})
            assert r.status_code == 201, r.text
            assert r.json()["role"] == role
        assert await roles() == {
            "alice": "owner",
            "bob": "editor",
            "carol": "viewer",
            "dave": "commenter",
        }

        err = error_of(
            await h.post(f"/sessions/{sid}/participants", json={"user_id": "ghost"}),
            404,
            "not_found",
        )
        assert "ghost" in err["message"]
        err = error_of(
            await h.post(
                f"/sessions/{sid}/participants", json={"user_id": "bob", "role": "superuser"}
            ),
            422,
            "invalid_request",
        )
        assert detail_fields(err) == ["role"]
        err = error_of(
            await h.post(f"/sessions/{sid}/participants", json={}), 422, "invalid_request"
        )
        assert detail_fields(err) == ["user_id"]

    # Viewers and commenters may read but not write; editors may write.
    for user in ("carol", "dave"):
        async with server.http(user) as hu:
            assert (await hu.get(f"/sessions/{sid}/messages")).status_code == 200
            error_of(
                await hu.post(f"/sessions/{sid}/messages", json={"text": "hi"}), 403, "forbidden"
            )
        async with server.client(user) as ws:
            reply = await ws.request({"type": "send", "session": sid, "text": "hi"})
            assert (reply["type"], reply["code"]) == ("error", "forbidden"), reply
    async with server.http("bob") as hb:
        bob_message = (await post(hb, sid, "bob writes"))["message"]
        # An editor may not touch an owner's role.
        error_of(
            await hb.post(
                f"/sessions/{sid}/participants", json={"user_id": "alice", "role": "viewer"}
            ),
            403,
            "forbidden",
        )
        # An editor may add people, but not owners, and may not remove others.
        r = await hb.post(
            f"/sessions/{sid}/participants", json={"user_id": "erin", "role": "viewer"}
        )
        assert r.status_code == 201, r.text
        error_of(
            await hb.post(
                f"/sessions/{sid}/participants", json={"user_id": "erin", "role": "owner"}
            ),
            403,
            "forbidden",
        )
        error_of(await hb.delete(f"/sessions/{sid}/participants/carol"), 403, "forbidden")
    async with server.http("carol") as hc:
        # A viewer may not add anyone, nor remove others, but may leave.
        error_of(
            await hc.post(f"/sessions/{sid}/participants", json={"user_id": "erin"}),
            403,
            "forbidden",
        )
        error_of(await hc.delete(f"/sessions/{sid}/participants/erin"), 403, "forbidden")
        r = await hc.delete(f"/sessions/{sid}/participants/carol")
        assert r.status_code == 204, r.text
        assert r.content == b""
    async with server.http() as h:
        r = await h.delete(f"/sessions/{sid}/participants/dave")
        assert r.status_code == 204, r.text
        error_of(await h.delete(f"/sessions/{sid}/participants/dave"), 404, "not_found")
        # Changing a role: bob becomes a viewer and can no longer write.
        r = await h.post(f"/sessions/{sid}/participants", json={"user_id": "bob", "role": "viewer"})
        assert r.status_code == 201, r.text
        assert r.json()["role"] == "viewer"
        assert await roles() == {"alice": "owner", "bob": "viewer", "erin": "viewer"}

        events = (await h.get(f"/sessions/{sid}/events", params={"after_seq": 2})).json()["items"]
        changes = [
            (
                e["event"],
                e["actor"],
                e["data"].get("participant", {}).get("user_id") or e["data"].get("user_id"),
            )
            for e in events
            if e["event"].startswith("participant.")
        ]
        assert changes == [
            ("participant.joined", "alice", "bob"),
            ("participant.joined", "alice", "carol"),
            ("participant.joined", "alice", "dave"),
            ("participant.joined", "bob", "erin"),
            ("participant.left", "carol", "carol"),
            ("participant.left", "alice", "dave"),
            ("participant.updated", "alice", "bob"),
        ]
    async with server.http("bob") as hb:
        # A viewer may no longer write, nor change what he wrote as an editor.
        error_of(await hb.post(f"/sessions/{sid}/messages", json={"text": "hi"}), 403, "forbidden")
        path = f"/sessions/{sid}/messages/{bob_message['id']}"
        error_of(await hb.patch(path, json={"text": "edited"}), 403, "forbidden")
        error_of(await hb.delete(path), 403, "forbidden")
    async with server.http() as h:
        assert await roles() == {"alice": "owner", "bob": "viewer", "erin": "viewer"}
        items = (await h.get(f"/sessions/{sid}/messages")).json()["items"]
        assert items == [bob_message]


# -- identity and authentication -----------------------------------------------------------------


async def test_me(server: RunningServer) -> None:
    async with server.http("alice") as h:
        r = await h.get("/me")
        assert r.status_code == 200, r.text
        assert r.json() == {"id": "alice", "tenant": "acme", "name": "alice", "kind": "human"}
    token = server.token("helper-bot", "acme", kind=UserKind.BOT, name="Helper")
    async with httpx.AsyncClient(
        base_url=server.base_url + "/api/v1",
        headers={"Authorization": f"Bearer {token}"},
        timeout=DEFAULT_TIMEOUT,
    ) as h:
        r = await h.get("/me")
        assert r.json() == {"id": "helper-bot", "tenant": "acme", "name": "Helper", "kind": "bot"}


async def test_missing_or_invalid_tokens_get_401(server: RunningServer) -> None:
    sid = await server.create_session()
    key = server.settings.signing_key
    bad_headers: list[dict[str, str]] = [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer not-a-token"},
        {"Authorization": f"Basic {server.token()}"},
        {
            "Authorization": "Bearer "
            + create_token("another-key-" + "z" * 40, user_id="alice", tenant_id="acme")
        },
        {
            "Authorization": "Bearer "
            + create_token(key, user_id="alice", tenant_id="acme", ttl_seconds=-60)
        },
        {"Authorization": "Bearer " + server.token()[:-4] + "AAAA"},
    ]
    async with httpx.AsyncClient(
        base_url=server.base_url + "/api/v1", timeout=DEFAULT_TIMEOUT
    ) as h:
        for headers in bad_headers:
            for method, path, body in (
                ("GET", "/me", None),
                ("GET", "/sessions", None),
                ("POST", "/sessions", {"title": "x"}),
                ("GET", f"/sessions/{sid}", None),
                ("POST", f"/sessions/{sid}/messages", {"text": "x"}),
            ):
                r = await h.request(method, path, json=body, headers=headers)
                error_of(r, 401, "unauthenticated")
                assert r.headers["www-authenticate"] == "Bearer", r.headers
        r = await h.get("/me", headers={"Authorization": f"Bearer {server.token()}"})
        assert r.status_code == 200
        r = await h.get(
            f"/sessions/{sid}/messages", headers={"Authorization": f"Bearer {server.token()}"}
        )
        assert r.json()["items"] == [], "no refused request wrote anything"
    async with server.http() as h:
        assert len((await h.get("/sessions")).json()["items"]) == 1


# -- operations ----------------------------------------------------------------------------------


def metric_value(text: str, sample: str) -> float:
    """The value of one sample line (name with labels) of a Prometheus text exposition."""
    for line in text.splitlines():
        if line.startswith(sample + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{sample} not in metrics")


async def test_health_readiness_metrics_and_unknown_routes(server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=DEFAULT_TIMEOUT) as h:
        r = await h.get("/healthz")
        assert r.status_code == 200, r.text
        assert r.json() == {"status": "ok"}
        r = await h.get("/readyz")
        assert r.status_code == 200, r.text
        assert r.json() == {"status": "ready", "checks": {"storage": "ok", "broker": "ok"}}

        async with server.client() as ws:
            before = (await h.get("/metrics")).text
            pong = await ws.request({"type": "ping"})
            assert pong["type"] == "pong"
            r = await h.get("/metrics")
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/plain")
            text = r.text
            assert "# TYPE parley_open_connections gauge" in text
            assert "# TYPE parley_frames_in_total counter" in text
            assert metric_value(text, "parley_open_connections") == 1.0
            sample = 'parley_frames_in_total{type="ping"}'
            previous = metric_value(before, sample) if sample + " " in before else 0.0
            assert metric_value(text, sample) == previous + 1

        for path in ("/nope", "/api/v1/nope", "/api/v1/sessions/x/nope", "/api/v2/sessions"):
            r = await h.get(path)
            error_of(r, 404, "not_found")


async def test_a_wrong_method_gets_405_naming_every_allowed_method(server: RunningServer) -> None:
    """RFC 9110: a 405 carries an Allow header listing the resource's supported methods."""
    sid = await server.create_session()
    cases = [
        ("DELETE", "/sessions", {"GET", "POST"}),
        ("PUT", f"/sessions/{sid}", {"GET", "PATCH", "DELETE"}),
        ("GET", f"/sessions/{sid}/archive", {"POST"}),
        ("PUT", f"/sessions/{sid}/messages", {"GET", "POST"}),
        ("PUT", f"/sessions/{sid}/participants", {"GET", "POST"}),
        ("POST", "/me", {"GET"}),
    ]
    async with server.http() as h:
        for method, path, allowed in cases:
            r = await h.request(method, path)
            error_of(r, 405, "method_not_allowed")
            got = {m.strip() for m in r.headers["allow"].split(",")} - {"HEAD"}
            assert got == allowed, (method, path, r.headers["allow"])


# -- REST and socket together --------------------------------------------------------------------


async def test_a_rest_post_reaches_subscribed_sockets_with_the_same_seq(
    server: RunningServer,
) -> None:
    sid = await server.create_session()
    async with (
        server.client("bob") as bob,
        server.client("carol", binary=True) as carol,
        server.http() as h,
    ):
        await bob.subscribe(sid)
        await carol.subscribe(sid)
        first = await post(h, sid, "via REST", client_id="r-1")
        for ws in (bob, carol):
            (event,) = await ws.events(1)
            assert event["event"] == "message.created"
            assert event["seq"] == first["seq"]
            assert event["session"] == sid
            assert event["actor"] == "alice"
            assert event["data"]["message"] == first["message"]

        # A retried post is no new event: the next event is the next message.
        r = await h.post(f"/sessions/{sid}/messages", json={"text": "via REST", "client_id": "r-1"})
        assert r.json()["duplicate"] is True
        second = await post(h, sid, "second")
        for ws in (bob, carol):
            (event,) = await ws.events(1)
            assert (event["seq"], event["data"]["message"]["text"]) == (second["seq"], "second")
        assert second["seq"] == first["seq"] + 1

        # Edits and deletes over REST reach the sockets too, with the seq REST returned.
        r = await h.patch(f"/sessions/{sid}/messages/{first['message']['id']}", json={"text": "v2"})
        edited = r.json()
        r = await h.delete(f"/sessions/{sid}/messages/{second['message']['id']}")
        deleted = r.json()
        for ws in (bob, carol):
            events = await ws.events(2)
            assert [(e["seq"], e["event"]) for e in events] == [
                (edited["seq"], "message.edited"),
                (deleted["seq"], "message.deleted"),
            ]
            assert events[0]["data"]["message"] == edited["message"]
            assert events[1]["data"]["message"] == deleted["message"]

"""Tenants are sealed off from each other, on SQLite and PostgreSQL.

A token of tenant A can neither read nor change anything of tenant B, and cannot even tell
B's sessions from sessions that do not exist: every answer about B's real session is exactly
the answer about a random id, on REST and on the socket. The same user id in two tenants is
two different users.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from parley.ids import new_id
from tests.support import DEFAULT_TIMEOUT, RunningServer, WsClient

ACME = "acme"
GLOBEX = "globex"
NAMES = {ACME: "Alice of Acme", GLOBEX: "Alice of Globex"}

Frame = dict[str, Any]


def display_name(user: str, tenant: str) -> str:
    """Tokens carry the display name; the last token seen sets it, so keep it stable."""
    return NAMES.get(tenant, user) if user == "alice" else user


def http_as(server: RunningServer, user: str, tenant: str) -> httpx.AsyncClient:
    """An API client for ``user`` of ``tenant``; the two alices get distinct display names."""
    token = server.token(user, tenant, name=display_name(user, tenant))
    return httpx.AsyncClient(
        base_url=server.base_url + "/api/v1",
        headers={"Authorization": f"Bearer {token}"},
        timeout=DEFAULT_TIMEOUT,
    )


@asynccontextmanager
async def socket_as(
    server: RunningServer, user: str, tenant: str, *, binary: bool = False
) -> AsyncIterator[WsClient]:
    async with server.client(
        user, tenant, name=display_name(user, tenant), binary=binary
    ) as client:
        yield client


@dataclass
class Seeded:
    """A session of one tenant with one message in it, and a snapshot of everything in it."""

    tenant: str
    sid: str
    mid: str
    snapshot: dict[str, Any]


async def snapshot(h: httpx.AsyncClient, sid: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, path in (
        ("session", f"/sessions/{sid}"),
        ("messages", f"/sessions/{sid}/messages"),
        ("events", f"/sessions/{sid}/events"),
        ("participants", f"/sessions/{sid}/participants"),
    ):
        r = await h.get(path)
        assert r.status_code == 200, (path, r.text)
        out[key] = r.json()
    return out


async def seed(server: RunningServer, tenant: str, title: str) -> Seeded:
    async with http_as(server, "alice", tenant) as h:
        r = await h.post(
            "/sessions", json={"title": title, "tags": ["secret"], "metadata": {"t": tenant}}
        )
        assert r.status_code == 201, r.text
        sid = r.json()["id"]
        r = await h.post(f"/sessions/{sid}/messages", json={"text": f"{tenant} launch code"})
        assert r.status_code == 201, r.text
        mid = r.json()["message"]["id"]
        return Seeded(tenant, sid, mid, await snapshot(h, sid))


# Every route that takes a session id, with a body that would be valid for a visible session.
# A new route is one more line here ({mid} also stands for other ids: streams, invitations...).
REST_PROBES: list[tuple[str, str, Frame | None]] = [
    ("GET", "/sessions/{sid}", None),
    ("PATCH", "/sessions/{sid}", {"title": "pwned"}),
    ("PATCH", "/sessions/{sid}", {"status": "archived", "tags": ["pwned"]}),
    ("DELETE", "/sessions/{sid}", None),
    ("POST", "/sessions/{sid}/archive", None),
    ("GET", "/sessions/{sid}/messages", None),
    ("GET", "/sessions/{sid}/messages?after_seq=0&before_seq=100&limit=5", None),
    ("POST", "/sessions/{sid}/messages", {"text": "pwned"}),
    ("POST", "/sessions/{sid}/messages", {"text": "pwned", "client_id": "c-1"}),
    ("PATCH", "/sessions/{sid}/messages/{mid}", {"text": "pwned"}),
    ("DELETE", "/sessions/{sid}/messages/{mid}", None),
    ("GET", "/sessions/{sid}/events", None),
    ("GET", "/sessions/{sid}/events?after_seq=1", None),
    ("GET", "/sessions/{sid}/participants", None),
    ("POST", "/sessions/{sid}/participants", {"user_id": "alice", "role": "owner"}),
    ("POST", "/sessions/{sid}/participants", {"user_id": "mallory", "role": "viewer"}),
    ("DELETE", "/sessions/{sid}/participants/alice", None),
    ("DELETE", "/sessions/{sid}/participants/mallory", None),
    ("GET", "/sessions/{sid}/presence", None),
    ("GET", "/sessions/{sid}/annotations", None),
    ("GET", "/sessions/{sid}/document", None),
    ("GET", "/sessions/{sid}/assistants", None),
    ("POST", "/sessions/{sid}/assistants", {"name": "helper"}),
    ("GET", "/sessions/{sid}/assistants/helper", None),
    ("PATCH", "/sessions/{sid}/assistants/helper", {"system_prompt": "pwned"}),
    ("DELETE", "/sessions/{sid}/assistants/helper", None),
    ("POST", "/sessions/{sid}/assistants/helper/ask", {"text": "pwned"}),
    ("GET", "/sessions/{sid}/streams", None),
    ("POST", "/sessions/{sid}/streams/{mid}/stop", None),
    ("GET", "/sessions/{sid}/invitations", None),
    ("POST", "/sessions/{sid}/invitations", {"user_id": "alice", "role": "owner"}),
    ("DELETE", "/sessions/{sid}/invitations/{mid}", None),
    ("GET", "/sessions/{sid}/share-links", None),
    ("POST", "/sessions/{sid}/share-links", {"role": "editor"}),
    ("DELETE", "/sessions/{sid}/share-links/{mid}", None),
    ("GET", "/sessions/{sid}/export", None),
    ("GET", "/sessions/{sid}/export?format=md", None),
    ("GET", "/sessions/{sid}/attachments", None),
    ("GET", "/attachments/{mid}", None),
    ("GET", "/attachments/{mid}/thumbnail", None),
    ("GET", "/sessions/{sid}/summary", None),
    ("POST", "/sessions/{sid}/summary", None),
    ("PUT", "/sessions/{sid}/seen", None),
    ("GET", "/sessions/{sid}/insights", None),
    ("GET", "/sessions/{sid}/related", None),
    ("POST", "/sessions/{sid}/tag-suggestions/pwned/accept", None),
    ("GET", "/sessions/{sid}/retention", None),
    ("PUT", "/sessions/{sid}/retention", {"archive_after_days": 1}),
]


def normalised(r: httpx.Response, *ids: str) -> Frame:
    """Everything about a response, with the ids the caller chose replaced by a placeholder."""
    text = r.text
    for value in ids:
        text = text.replace(value, "<id>")
    # (The length follows the length of the ids in the text.)
    headers = {k: v for k, v in r.headers.items() if k.lower() not in ("date", "content-length")}
    return {"status": r.status_code, "headers": headers, "body": text}


async def assert_rest_cannot_tell_from_missing(
    server: RunningServer, user: str, tenant: str, victim: Seeded
) -> None:
    fake_sid, fake_mid = new_id(), new_id()
    assert len(fake_sid) == len(victim.sid)
    async with http_as(server, user, tenant) as h:
        for method, template, body in REST_PROBES:
            answers = []
            for sid, mid in ((victim.sid, victim.mid), (fake_sid, fake_mid)):
                path = template.format(sid=sid, mid=mid)
                r = await h.request(method, path, json=body)
                assert r.status_code == 404, (method, path, r.status_code, r.text)
                err = r.json()["error"]
                assert err["code"] == "not_found", (method, path, err)
                assert set(r.json()) == {"error"}, r.text
                answers.append(normalised(r, sid, mid))
            real, missing = answers
            assert real == missing, (method, template, real, missing)


SOCKET_PROBES: list[Frame] = [
    {"type": "subscribe", "session": "{sid}"},
    {"type": "subscribe", "session": "{sid}", "since_seq": 0},
    {"type": "subscribe", "session": "{sid}", "since_seq": 2},
    {"type": "send", "session": "{sid}", "text": "pwned"},
    {"type": "send", "session": "{sid}", "text": "pwned", "client_id": "c-1"},
    {"type": "edit", "session": "{sid}", "message_id": "{mid}", "text": "pwned"},
    {"type": "delete", "session": "{sid}", "message_id": "{mid}"},
    {"type": "doc_join", "session": "{sid}"},
    {"type": "ask", "session": "{sid}", "assistant": "helper", "text": "pwned"},
    {"type": "ask", "session": "{sid}", "assistant": "helper"},
    {"type": "stop", "session": "{sid}", "stream_id": "{mid}"},
]
NOT_SUBSCRIBED_PROBES: list[Frame] = [
    {"type": "typing", "session": "{sid}"},
    {"type": "unsubscribe", "session": "{sid}"},
    {"type": "streams", "session": "{sid}"},
    {"type": "doc", "session": "{sid}", "data": "AAA="},
    {"type": "doc_leave", "session": "{sid}"},
]


def filled(frame: Frame, sid: str, mid: str) -> Frame:
    return {k: (v.format(sid=sid, mid=mid) if isinstance(v, str) else v) for k, v in frame.items()}


def scrubbed(frame: Frame, *ids: str) -> Frame:
    out = dict(frame)
    for value in ids:
        out["message"] = out["message"].replace(value, "<id>")
    return out


async def assert_socket_cannot_tell_from_missing(
    server: RunningServer, user: str, tenant: str, victim: Seeded, *, binary: bool = False
) -> None:
    fake_sid, fake_mid = new_id(), new_id()
    async with socket_as(server, user, tenant, binary=binary) as client:
        probes = [(p, "not_found") for p in SOCKET_PROBES]
        probes += [(p, "not_subscribed") for p in NOT_SUBSCRIBED_PROBES]
        for n, (probe, code) in enumerate(probes):
            answers = []
            for sid, mid in ((victim.sid, victim.mid), (fake_sid, fake_mid)):
                ref = f"probe-{n}"
                await client.send({**filled(probe, sid, mid), "id": ref})
                reply = await client.wait_for(lambda f, ref=ref: f.get("ref") == ref)
                assert reply["type"] == "error", (probe, reply)
                assert reply["code"] == code, (probe, reply)
                answers.append(scrubbed(reply, sid, mid))
            real, missing = answers
            assert real == missing, (probe, real, missing)
        # Nothing of the victim's session ever reached this connection.
        pong = await client.request({"type": "ping"})
        assert pong["type"] == "pong"
        assert [f for f in client.backlog if f["type"] == "event"] == []


async def test_another_tenants_session_is_indistinguishable_from_a_missing_one(
    server: RunningServer,
) -> None:
    acme = await seed(server, ACME, "acme plans")
    globex = await seed(server, GLOBEX, "globex plans")

    # A subscriber of B's session is watching while A probes it.
    async with socket_as(server, "alice", GLOBEX) as watcher:
        await watcher.subscribe(globex.sid)

        # The same user id in the other tenant, and someone who is nobody in B.
        await assert_rest_cannot_tell_from_missing(server, "alice", ACME, globex)
        await assert_rest_cannot_tell_from_missing(server, "mallory", ACME, globex)
        await assert_socket_cannot_tell_from_missing(server, "alice", ACME, globex)
        await assert_socket_cannot_tell_from_missing(server, "mallory", ACME, globex, binary=True)
        # And the other way round.
        await assert_rest_cannot_tell_from_missing(server, "alice", GLOBEX, acme)
        await assert_socket_cannot_tell_from_missing(server, "alice", GLOBEX, acme)

        # Nothing changed on either side, and B's subscriber saw no event at all: the first
        # event it gets is the next real one.
        async with http_as(server, "alice", GLOBEX) as h:
            assert await snapshot(h, globex.sid) == globex.snapshot
            r = await h.post(f"/sessions/{globex.sid}/messages", json={"text": "still ours"})
            assert r.status_code == 201, r.text
        (event,) = await watcher.events(1)
        assert event["seq"] == globex.snapshot["session"]["last_seq"] + 1
        assert event["data"]["message"]["text"] == "still ours"
        assert [f for f in watcher.backlog if f["type"] == "event"] == []
    async with http_as(server, "alice", ACME) as h:
        assert await snapshot(h, acme.sid) == acme.snapshot


async def test_another_tenants_message_id_is_indistinguishable_from_a_missing_one(
    server: RunningServer,
) -> None:
    """Inside one's own session, naming the other tenant's message gets the answer a random
    message id gets: edit, delete, and replying to it."""
    acme = await seed(server, ACME, "acme plans")
    globex = await seed(server, GLOBEX, "globex plans")
    fake_mid = new_id()
    probes: list[tuple[str, str, Frame | None, int, str]] = [
        ("PATCH", "/sessions/{sid}/messages/{mid}", {"text": "pwned"}, 404, "not_found"),
        ("DELETE", "/sessions/{sid}/messages/{mid}", None, 404, "not_found"),
        (
            "POST",
            "/sessions/{sid}/messages",
            {"text": "re", "parent_id": "{mid}"},
            422,
            "invalid_request",
        ),
    ]
    async with http_as(server, "alice", ACME) as h:
        for method, template, body, status, code in probes:
            answers = []
            for mid in (globex.mid, fake_mid):
                path = template.format(sid=acme.sid, mid=mid)
                json_body = filled(body, acme.sid, mid) if body is not None else None
                r = await h.request(method, path, json=json_body)
                assert r.status_code == status, (method, path, r.text)
                assert r.json()["error"]["code"] == code, r.text
                answers.append(normalised(r, mid))
            assert answers[0] == answers[1], (method, template, answers)
    async with socket_as(server, "alice", ACME) as client:
        frames: list[tuple[Frame, str]] = [
            (
                {"type": "edit", "session": acme.sid, "message_id": "{mid}", "text": "x"},
                "not_found",
            ),
            ({"type": "delete", "session": acme.sid, "message_id": "{mid}"}, "not_found"),
            (
                {"type": "send", "session": acme.sid, "text": "re", "parent_id": "{mid}"},
                "invalid_request",
            ),
        ]
        for frame, code in frames:
            answers = []
            for mid in (globex.mid, fake_mid):
                reply = await client.request(filled(frame, acme.sid, mid))
                assert (reply["type"], reply["code"]) == ("error", code), reply
                answers.append(scrubbed({**reply, "ref": None}, mid))
            assert answers[0] == answers[1], (frame, answers)
    async with http_as(server, "alice", GLOBEX) as h:
        assert await snapshot(h, globex.sid) == globex.snapshot
    async with http_as(server, "alice", ACME) as h:
        assert await snapshot(h, acme.sid) == acme.snapshot


async def test_users_of_the_same_tenant_see_the_session(server: RunningServer) -> None:
    globex = await seed(server, GLOBEX, "globex plans")
    async with http_as(server, "bob", GLOBEX) as h:
        r = await h.get(f"/sessions/{globex.sid}")
        assert r.status_code == 200, r.text
        assert r.json() == globex.snapshot["session"]
        r = await h.get(f"/sessions/{globex.sid}/messages")
        assert r.json() == globex.snapshot["messages"]
        r = await h.get("/sessions")
        assert [s["id"] for s in r.json()["items"]] == [globex.sid]
        # Bob is no participant, but in the same tenant he may write (and so joins as editor).
        r = await h.post(f"/sessions/{globex.sid}/messages", json={"text": "hi from bob"})
        assert r.status_code == 201, r.text
    async with socket_as(server, "bob", GLOBEX) as bob:
        ack = await bob.subscribe(globex.sid, since_seq=0)
        assert ack["replayed"] == ack["seq"] == globex.snapshot["session"]["last_seq"] + 2
        events = await bob.events(ack["replayed"])
        assert [e["seq"] for e in events] == list(range(1, ack["seq"] + 1))
        assert {e["session"] for e in events} == {globex.sid}


async def test_the_session_list_of_a_tenant_holds_only_its_own_sessions(
    server: RunningServer,
) -> None:
    acme_ids = [(await seed(server, ACME, f"acme {i}")).sid for i in range(3)]
    globex_ids = [(await seed(server, GLOBEX, f"globex {i}")).sid for i in range(2)]
    acme_ids.append(await server.create_session("mallory", ACME, title="other acme user"))

    async def listed(user: str, tenant: str, query: str) -> list[str]:
        ids: list[str] = []
        cursor = ""
        async with http_as(server, user, tenant) as h:
            while True:
                r = await h.get(f"/sessions?limit=2{query}&cursor={cursor}")
                assert r.status_code == 200, r.text
                ids += [s["id"] for s in r.json()["items"]]
                cursor = r.json()["next_cursor"]
                if cursor is None:
                    return ids

    for user in ("alice", "mallory"):
        for query in ("", "&tag=secret", "&status=active", "&tag=SECRET&status=active"):
            got = await listed(user, ACME, query)
            expected = acme_ids if "tag" not in query else acme_ids[:3]
            assert sorted(got) == sorted(expected), (user, query)
            assert not set(got) & set(globex_ids)
        assert await listed(user, ACME, "&status=archived") == []
    for user in ("alice", "bob"):
        assert sorted(await listed(user, GLOBEX, "")) == sorted(globex_ids)
        assert sorted(await listed(user, GLOBEX, "&tag=secret")) == sorted(globex_ids)
    # A cursor taken from the other tenant's ids does not open a window into it.
    async with http_as(server, "alice", ACME) as h:
        r = await h.get(f"/sessions?cursor={max(globex_ids)}")
        got = [s["id"] for s in r.json()["items"]]
    assert not set(got) & set(globex_ids)
    # A tenant that has nothing sees nothing.
    async with http_as(server, "alice", "initech") as h:
        r = await h.get("/sessions")
        assert r.json() == {"items": [], "next_cursor": None}


async def test_the_same_user_id_in_two_tenants_is_two_users(server: RunningServer) -> None:
    acme = await seed(server, ACME, "acme plans")
    globex = await seed(server, GLOBEX, "globex plans")

    for tenant in (ACME, GLOBEX):
        async with http_as(server, "alice", tenant) as h:
            r = await h.get("/me")
            assert r.json() == {
                "id": "alice",
                "tenant": tenant,
                "name": NAMES[tenant],
                "kind": "human",
            }

    # Each session's participant is the alice of its own tenant, with her own name.
    async with http_as(server, "alice", ACME) as h:
        (owner,) = (await h.get(f"/sessions/{acme.sid}/participants")).json()["items"]
        assert (owner["user_id"], owner["name"], owner["role"]) == ("alice", NAMES[ACME], "owner")
    async with http_as(server, "alice", GLOBEX) as h:
        (owner,) = (await h.get(f"/sessions/{globex.sid}/participants")).json()["items"]
        assert (owner["user_id"], owner["name"], owner["role"]) == ("alice", NAMES[GLOBEX], "owner")
    # Bob exists only in globex ...
    async with http_as(server, "bob", GLOBEX) as h:
        assert (await h.get("/me")).json()["tenant"] == GLOBEX
    async with http_as(server, "alice", ACME) as h:
        # ... so acme's alice cannot add him: there is no bob in acme. The answer is the one
        # for a user nobody has heard of.
        answers = []
        for user_id in ("bob", "nobody"):
            r = await h.post(
                f"/sessions/{acme.sid}/participants", json={"user_id": user_id, "role": "editor"}
            )
            assert r.status_code == 404, r.text
            assert r.json()["error"]["code"] == "not_found"
            answers.append(normalised(r, user_id))
        assert answers[0] == answers[1]

    # On the socket each alice is told who she is, and the messages each one writes carry
    # her own tenant's identity.
    async with socket_as(server, "alice", ACME) as a, socket_as(server, "alice", GLOBEX) as g:
        assert (a.welcome["tenant"], a.welcome["user"]["name"]) == (ACME, NAMES[ACME])
        assert (g.welcome["tenant"], g.welcome["user"]["name"]) == (GLOBEX, NAMES[GLOBEX])
        await a.subscribe(acme.sid)
        await g.subscribe(globex.sid)
        ack_a = await a.say(acme.sid, "from acme's alice", client_id="same-id")
        ack_g = await g.say(globex.sid, "from globex's alice", client_id="same-id")
        # The same client_id in two tenants are two messages, neither a duplicate.
        assert ack_a["duplicate"] is False
        assert ack_g["duplicate"] is False
        assert ack_a["message_id"] != ack_g["message_id"]
        (ev_a,) = await a.events(1)
        (ev_g,) = await g.events(1)
        assert ev_a["data"]["message"]["text"] == "from acme's alice"
        assert ev_g["data"]["message"]["text"] == "from globex's alice"
        # Each connection got only its own tenant's event.
        ping_a, ping_g = await a.request({"type": "ping"}), await g.request({"type": "ping"})
        assert ping_a["type"] == ping_g["type"] == "pong"
        assert [f for f in a.backlog + g.backlog if f["type"] == "event"] == []


async def test_tenant_and_user_ids_of_every_valid_length_work(server: RunningServer) -> None:
    """Tokens accept tenant and user ids of up to 128 characters (governance/auth.py); a
    tenant with such an id works like any other, and stays apart from the rest."""
    long_tenant, long_user = "t" * 128, "u" * 128
    globex = await seed(server, GLOBEX, "globex plans")
    async with server.http(long_user, long_tenant) as h:
        r = await h.get("/me")
        assert r.status_code == 200, r.text
        assert r.json()["tenant"] == long_tenant
        assert r.json()["id"] == long_user
        r = await h.post("/sessions", json={"title": "long ids"})
        assert r.status_code == 201, r.text
        sid = r.json()["id"]
        assert r.json()["created_by"] == long_user
        await h.post(f"/sessions/{sid}/messages", json={"text": "hello"})
        r = await h.get("/sessions")
        assert [s["id"] for s in r.json()["items"]] == [sid]
        r = await h.get(f"/sessions/{globex.sid}")
        assert r.status_code == 404, r.text
    async with server.client(long_user, long_tenant) as ws:
        assert ws.welcome["tenant"] == long_tenant
        ack = await ws.subscribe(sid, since_seq=0)
        assert ack["replayed"] == 3


async def assert_yjs_cannot_tell_from_missing(
    server: RunningServer, user: str, tenant: str, victim: Seeded
) -> None:
    """The document endpoint closes on another tenant's (or an invisible) session exactly as
    on one that does not exist."""
    fake_sid = new_id()
    answers = []
    for sid in (victim.sid, fake_sid):
        token = server.token(user, tenant, name=display_name(user, tenant))
        url = f"ws://127.0.0.1:{server.port}/yjs/{sid}?token={token}"
        async with connect(url) as ws:
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), DEFAULT_TIMEOUT)
            assert ws.close_code == 4404
            answers.append((ws.close_code, (ws.close_reason or "").replace(sid, "<id>")))
    assert answers[0] == answers[1]


async def test_every_path_answers_for_another_tenant_as_for_nothing(
    server: RunningServer,
) -> None:
    """The attack table (REST_PROBES, SOCKET_PROBES, the document endpoint) against a session
    of another tenant."""
    globex = await seed(server, GLOBEX, "globex plans")
    await assert_yjs_cannot_tell_from_missing(server, "alice", ACME, globex)
    await assert_yjs_cannot_tell_from_missing(server, "mallory", ACME, globex)


async def test_a_private_session_is_nothing_to_other_members(server: RunningServer) -> None:
    """The same table, run by a member of the same tenant against a private session she is
    not in: every path answers as for a session that does not exist."""
    acme = await seed(server, ACME, "acme private plans")
    async with http_as(server, "alice", ACME) as h:
        r = await h.patch(f"/sessions/{acme.sid}", json={"visibility": "private"})
        assert r.status_code == 200, r.text
    await assert_rest_cannot_tell_from_missing(server, "mallory", ACME, acme)
    await assert_socket_cannot_tell_from_missing(server, "mallory", ACME, acme)
    await assert_yjs_cannot_tell_from_missing(server, "mallory", ACME, acme)
    async with http_as(server, "alice", ACME) as h:
        r = await h.get(f"/sessions/{acme.sid}/messages")
        assert r.json() == acme.snapshot["messages"]

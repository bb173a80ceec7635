"""Live tenant feeds end to end: Server-Sent Events with filters and Last-Event-ID resume, the
socket's feed_subscribe, tenant isolation, and commit order under concurrent writers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest

from parley.config import Settings
from tests.support import RunningServer, start_server


@pytest.fixture
async def fast(
    database_url: str, settings_factory: Callable[..., Settings]
) -> AsyncIterator[RunningServer]:
    settings = settings_factory(database_url=database_url, feed_heartbeat=0.3)
    async with start_server(settings) as running:
        yield running


@dataclass
class SseEvent:
    id: str | None
    event: str | None
    data: Any


class SseStream:
    """Reads ``text/event-stream`` frames; comments (heartbeats) are counted, not returned.

    One task reads the lines into a queue, so a read that times out loses nothing."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.queue: asyncio.Queue[str | None] = asyncio.Queue()
        self.reader = asyncio.create_task(self._read_lines())
        self.comments = 0
        self.last_id: str | None = None

    async def _read_lines(self) -> None:
        try:
            async for line in self.response.aiter_lines():
                await self.queue.put(line)
        finally:
            await self.queue.put(None)

    async def line(self) -> str:
        line = await self.queue.get()
        if line is None:
            raise EOFError("the stream ended")
        return line

    async def close(self) -> None:
        self.reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.reader

    async def next(self, timeout: float = 10) -> SseEvent:
        async with asyncio.timeout(timeout):
            fields: dict[str, str] = {}
            while True:
                line = await self.line()
                if line == "":
                    if "id" in fields:
                        self.last_id = fields["id"]
                    if "data" in fields:
                        return SseEvent(
                            fields.get("id"), fields.get("event"), orjson.loads(fields["data"])
                        )
                    fields = {}
                    continue
                if line.startswith(":"):
                    self.comments += 1
                    continue
                key, _, value = line.partition(":")
                fields[key] = value[1:] if value.startswith(" ") else value

    async def next_open(self) -> None:
        """Read the opening block (retry, start id, comment): the stream is live after it."""
        while True:
            line = await self.line()
            if line.startswith("id:"):
                self.last_id = line[3:].strip()
            if line == "":
                return

    async def take(self, count: int) -> list[SseEvent]:
        return [await self.next() for _ in range(count)]


@asynccontextmanager
async def sse(
    server: RunningServer,
    query: str = "",
    *,
    user: str = "alice",
    tenant: str = "acme",
    last_event_id: str | None = None,
) -> AsyncIterator[SseStream]:
    headers = {"Authorization": f"Bearer {server.token(user, tenant)}"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    async with (
        httpx.AsyncClient(base_url=server.base_url, timeout=10) as h,
        h.stream("GET", "/api/v1/events/stream" + query, headers=headers) as r,
    ):
        assert r.status_code == 200, await r.aread()
        assert r.headers["content-type"].startswith("text/event-stream")
        stream = SseStream(r)
        try:
            await stream.next_open()
            yield stream
        finally:
            await stream.close()


async def post(server: RunningServer, sid: str, text: str, user: str = "alice") -> None:
    async with server.http(user) as h:
        r = await h.post(f"/sessions/{sid}/messages", json={"text": text})
        assert r.status_code == 201, r.text


async def test_sse_filters_resumes_and_keeps_tenants_apart(fast: RunningServer) -> None:
    plain = await fast.create_session(title="plain")
    vip = await fast.create_session(title="vip", tags=["VIP"])
    foreign = await fast.create_session(tenant="globex")
    async with (
        sse(fast, "?types=message.*") as all_msgs,
        sse(fast, "?tags=vip&types=message.created") as tagged,
        sse(fast, f"?sessions={plain}&types=message.created") as one_session,
    ):
        async with fast.http("zed", "globex") as g:
            assert (await g.post(f"/sessions/{foreign}/messages", json={"text": "x"})).is_success
        await post(fast, plain, "p1")
        await post(fast, vip, "v1")
        first = await all_msgs.take(2)
        assert [(e.event, e.data["data"]["message"]["text"]) for e in first] == [
            ("message.created", "p1"),
            ("message.created", "v1"),
        ]
        assert first[0].data["session"] == plain
        assert first[0].id is not None
        assert first[1].id is not None
        assert first[0].id != first[1].id
        [t] = await tagged.take(1)
        assert t.data["session"] == vip
        [o] = await one_session.take(1)
        assert o.data["session"] == plain
        assert o.data["data"]["message"]["text"] == "p1"
        resume_from = first[0].id
        # Nothing but heartbeats follows on an idle stream.
        while all_msgs.comments < 2:
            with pytest.raises(TimeoutError):
                await all_msgs.next(timeout=0.4)

    await post(fast, plain, "p2")
    async with sse(fast, "?types=message.created", last_event_id=resume_from) as resumed:
        got = await resumed.take(2)
        assert [e.data["data"]["message"]["text"] for e in got] == ["v1", "p2"]
        assert all(e.data["session"] != foreign for e in got)


async def test_sse_refuses_bad_requests(fast: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=fast.base_url + "/api/v1", timeout=10) as h:
        r = await h.get("/events/stream")
        assert r.status_code == 401
        assert r.json()["error"]["code"] == "unauthenticated"
        auth = {"Authorization": f"Bearer {fast.token()}"}
        r = await h.get("/events/stream", headers={**auth, "Last-Event-ID": "yesterday"})
        assert r.status_code == 422
        assert "Last-Event-ID" in r.json()["error"]["message"]
        r = await h.get("/events/stream?types=Not%20A%20Type", headers=auth)
        assert r.status_code == 422
        assert "not an event type" in r.json()["error"]["message"]
        r = await h.get("/events/stream?token=garbage")
        assert r.status_code == 401


async def test_sse_takes_a_token_in_the_query_for_event_source(fast: RunningServer) -> None:
    sid = await fast.create_session()
    async with (
        httpx.AsyncClient(base_url=fast.base_url, timeout=10) as h,
        h.stream("GET", f"/api/v1/events/stream?types=message.created&token={fast.token()}") as r,
    ):
        assert r.status_code == 200
        stream = SseStream(r)
        try:
            await stream.next_open()
            await post(fast, sid, "via query token")
            event = await stream.next()
            assert event.event == "message.created"
        finally:
            await stream.close()


async def test_socket_feed_subscribe_filters_and_resumes(fast: RunningServer) -> None:
    a = await fast.create_session(title="a", tags=["ops"])
    b = await fast.create_session(title="b")
    async with fast.client() as c:
        reply = await c.request({"type": "feed_subscribe", "types": ["message.created"]})
        assert reply["type"] == "ack", reply
        start = reply["cursor"]
        await post(fast, a, "one")
        await post(fast, b, "two")
        frames = [await c.wait_for(lambda f: f["type"] == "feed") for _ in range(2)]
        assert [f["event"]["data"]["message"]["text"] for f in frames] == ["one", "two"]
        assert [f["event"]["session"] for f in frames] == [a, b]
        assert frames[0]["cursor"] != frames[1]["cursor"]

        reply = await c.request({"type": "feed_unsubscribe"})
        assert reply["type"] == "ack"
        reply = await c.request({"type": "feed_unsubscribe"})
        assert reply["type"] == "error"
        assert reply["code"] == "not_subscribed"

        # Resume from the first frame's cursor, now filtered by tag: only session a remains.
        await post(fast, a, "three")
        reply = await c.request(
            {"type": "feed_subscribe", "cursor": start, "tags": ["OPS"], "types": ["message.*"]}
        )
        assert reply["type"] == "ack"
        assert reply["cursor"] == start
        got = [await c.wait_for(lambda f: f["type"] == "feed") for _ in range(2)]
        assert [f["event"]["data"]["message"]["text"] for f in got] == ["one", "three"]

        for bad, code in (
            ({"type": "feed_subscribe", "cursor": "nope"}, "invalid_request"),
            ({"type": "feed_subscribe", "types": ["NOPE NOPE"]}, "invalid_request"),
            ({"type": "feed_subscribe", "tags": "ops"}, "invalid_frame"),
            ({"type": "feed_subscribe", "colour": 1}, "invalid_frame"),
        ):
            reply = await c.request(bad)
            assert (reply["type"], reply.get("code")) == ("error", code), (bad, reply)


async def test_socket_feed_never_shows_another_tenant(fast: RunningServer) -> None:
    mine = await fast.create_session()
    theirs = await fast.create_session(tenant="globex")
    async with fast.client() as c:
        assert (await c.request({"type": "feed_subscribe"}))["type"] == "ack"
        async with fast.http("zed", "globex") as g:
            await g.post(f"/sessions/{theirs}/messages", json={"text": "secret"})
        await post(fast, mine, "mine")
        frame = await c.wait_for(lambda f: f["type"] == "feed")
        assert frame["event"]["session"] == mine
        assert all(f.get("type") != "feed" for f in c.backlog)


async def test_concurrent_writers_arrive_once_each_in_commit_order(
    fast: RunningServer,
) -> None:
    sessions = [await fast.create_session(title=f"s{i}") for i in range(4)]
    per_session = 10
    async with sse(fast, "?types=message.created") as stream:

        async def writer(sid: str) -> None:
            async with fast.http() as h:
                for i in range(per_session):
                    r = await h.post(f"/sessions/{sid}/messages", json={"text": f"{sid}:{i}"})
                    assert r.status_code == 201

        await asyncio.gather(*(writer(s) for s in sessions))
        got = await stream.take(len(sessions) * per_session)
    texts = [e.data["data"]["message"]["text"] for e in got]
    assert len(set(texts)) == len(texts) == len(sessions) * per_session
    for sid in sessions:
        seqs = [e.data["seq"] for e in got if e.data["session"] == sid]
        assert seqs == sorted(seqs)
    cursors = [tuple(int(x) for x in e.id.split(".")) for e in got if e.id]
    assert cursors == sorted(cursors)

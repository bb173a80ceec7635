"""Retention of the tenant feed on SQLite and PostgreSQL: old rows that every consumer has read
and every enabled webhook has received are deleted per tenant; rows of a pending delivery, of
a consumer that has not read them, or younger than the period stay; an SSE resume from before
what is kept gets a ``feed.resync`` event instead of a silent gap."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from parley.config import Settings
from parley.governance.auth import TenantRole
from parley.governance.scoping import all_tenants
from parley.integrations.retention import FeedRetention, watermark
from parley.storage import models as m
from parley.storage.database import Database
from parley.storage.feed_log import FeedCursor
from tests.e2e.test_event_feeds import post, sse
from tests.fakes.webhook_receiver import Receiver, running_receiver
from tests.support import RunningServer, start_server

SETTINGS = {
    "feed_heartbeat": 0.3,
    "feed_poll_interval": 0.1,
    "feed_retention_interval": 0,  # the tests run the passes themselves
    "webhook_allow_private": True,
    "webhook_retry_base": 3600.0,  # a failed delivery stays pending for the whole test
}


@pytest.fixture
async def server(
    database_url: str, settings_factory: Callable[..., Settings]
) -> AsyncIterator[RunningServer]:
    async with start_server(settings_factory(database_url=database_url, **SETTINGS)) as running:
        yield running


def retention_of(server: RunningServer) -> FeedRetention:
    job: FeedRetention = server.app.state.integrations.retention
    return job


def db_of(server: RunningServer) -> Database:
    db: Database = server.app.state.integrations.db
    return db


async def feed_rows(server: RunningServer, tenant: str) -> int:
    def count(s: Session) -> int:
        q = select(func.count()).select_from(m.FeedEntry).where(m.FeedEntry.tenant_id == tenant)
        return int(s.scalar(q) or 0)

    return await db_of(server).read(count)


async def consumed(server: RunningServer) -> None:
    """Wait until both background consumers have read the whole feed."""

    def behind(s: Session) -> int:
        head = select(func.max(m.FeedEntry.id)).scalar_subquery()
        q = select(func.count()).where(
            m.FeedConsumer.name.in_(("webhooks", "automation")), m.FeedConsumer.last_id < head
        )
        return int(s.scalar(q) or 0)

    async with asyncio.timeout(15):
        while True:
            if not await db_of(server).read(all_tenants("test: the whole feed", behind)):
                return
            await asyncio.sleep(0.1)


def admin(server: RunningServer, tenant: str = "acme") -> httpx.AsyncClient:
    token = server.token("root", tenant, tenant_role=TenantRole.ADMIN)
    return httpx.AsyncClient(
        base_url=server.base_url + "/api/v1",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )


async def test_old_delivered_rows_go_and_a_stale_resume_is_told_to_resync(
    server: RunningServer,
) -> None:
    sid = await server.create_session(title="retained")
    other = await server.create_session("zed", "globex", title="elsewhere")
    async with sse(server, "?types=message.created") as stream:
        await post(server, sid, "m1")
        await post(server, sid, "m2")
        first, second = await stream.take(2)
    async with server.http("zed", "globex") as g:
        assert (await g.post(f"/sessions/{other}/messages", json={"text": "g1"})).is_success
    await consumed(server)

    # Younger than the period: nothing goes.
    assert (await retention_of(server).prune()).rows == 0
    before = await feed_rows(server, "acme")
    globex_before = await feed_rows(server, "globex")
    assert globex_before > 0

    # A webhook whose receiver keeps failing: m3's delivery stays pending, so m3 stays.
    async with running_receiver(Receiver(fail_with=[500] * 20)) as rx, admin(server) as h:
        r = await h.post("/webhooks", json={"url": rx.url, "events": ["message.created"]})
        assert r.status_code == 201, r.text
        await post(server, sid, "m3")
        await post(server, sid, "m4")
        await rx.wait_for(1)
        await consumed(server)
        report = await retention_of(server).prune(retention=0)

    assert report.tenants == 2, "globex's old rows go too: acme's pending delivery is acme's"
    assert await feed_rows(server, "globex") == 0
    kept = await feed_rows(server, "acme")
    assert kept == 2, "m3 (pending delivery) and m4 after it stay; everything before goes"
    assert report.rows == before + globex_before
    mark = await db_of(server).read(lambda s: watermark(s, "acme"))
    assert mark is not None
    assert mark >= FeedCursor.parse(second.id or "")

    # Resuming from m1 (deleted, with m2 after it gone too): told to resync, then m3 and m4.
    async with sse(server, "?types=message.created", last_event_id=first.id) as resumed:
        notice = await resumed.next()
        assert notice.event == "feed.resync"
        assert notice.data["requested"] == first.id
        assert notice.data["resumed"] == str(mark)
        assert "reload your state" in notice.data["message"]
        assert notice.id == str(mark), "a reconnect after the notice does not see it again"
        got = await resumed.take(2)
        assert [e.data["data"]["message"]["text"] for e in got] == ["m3", "m4"]

    # Resuming from the watermark itself or later misses nothing: no notice.
    async with sse(server, "?types=message.created", last_event_id=str(mark)) as fine:
        got = await fine.take(2)
        assert [e.event for e in got] == ["message.created", "message.created"]
        assert [e.data["data"]["message"]["text"] for e in got] == ["m3", "m4"]

    # The socket's feed says the same, as its first feed frame.
    async with server.client() as ws:
        r = await ws.request(
            {"type": "feed_subscribe", "id": "f1", "types": ["message.created"],
             "cursor": first.id}
        )  # fmt: skip
        assert r["type"] == "ack", r
        assert r["cursor"] == str(mark)
        frame = await ws.wait_for(lambda f: f.get("type") == "feed", timeout=10)
        assert frame["event"]["event"] == "feed.resync"
        assert frame["event"]["data"]["requested"] == first.id
        assert frame["cursor"] == str(mark)
        nxt = await ws.wait_for(lambda f: f.get("type") == "feed", timeout=10)
        assert nxt["event"]["data"]["message"]["text"] == "m3"

    # Each tenant has its own watermark: globex's is where its own deleted rows end.
    theirs = await db_of(server).read(lambda s: watermark(s, "globex"))
    assert theirs is not None
    assert theirs != mark
    async with sse(server, "?types=message.created", user="zed", tenant="globex",
                   last_event_id=first.id) as stale:  # fmt: skip
        notice = await stale.next()
        assert notice.event == "feed.resync"
        assert notice.data["resumed"] == str(theirs)
    async with sse(server, "?types=message.created", user="zed", tenant="globex",
                   last_event_id=str(theirs)) as current:  # fmt: skip
        await post_in(server, "globex", other, "g2")
        [event] = await current.take(1)
        assert event.event == "message.created"
        assert event.data["data"]["message"]["text"] == "g2"


async def post_in(server: RunningServer, tenant: str, sid: str, text: str) -> None:
    async with server.http("zed", tenant) as h:
        r = await h.post(f"/sessions/{sid}/messages", json={"text": text})
        assert r.status_code == 201, r.text


async def test_rows_no_consumer_has_read_stay(
    database_url: str, settings_factory: Callable[..., Settings]
) -> None:
    settings = settings_factory(database_url=database_url, integrations_workers=False, **SETTINGS)
    async with start_server(settings) as server:
        sid = await server.create_session(title="unread")
        await post(server, sid, "nobody read me")
        rows = await feed_rows(server, "acme")
        assert rows > 0
        assert (await retention_of(server).prune(retention=0)).rows == 0
        assert await feed_rows(server, "acme") == rows
        assert await db_of(server).read(lambda s: watermark(s, "acme")) is None

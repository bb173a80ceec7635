"""Integrations across real processes on Redis and PostgreSQL: a live feed on one process
sees events committed on another, and webhook delivery with several dispatchers and workers
delivers every event once under normal operation."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from parley.governance.auth import TenantRole, create_token
from parley.storage.migrate import upgrade
from tests.conftest import TEST_SECRET
from tests.fakes.webhook_receiver import running_receiver
from tests.services import HubProcess, RedisServer

ADMIN = create_token(TEST_SECRET, user_id="root", tenant_id="acme", tenant_role=TenantRole.ADMIN)
AUTH = {"Authorization": f"Bearer {ADMIN}"}


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def pair(
    pg_database: str, redis_server: RedisServer, tmp_path: Path
) -> AsyncIterator[list[HubProcess]]:
    await asyncio.to_thread(upgrade, pg_database)
    procs = [HubProcess(f"hub{i}", tmp_path, pg_database, redis_server.url) for i in range(2)]
    for proc in procs:
        proc.env.update(PARLEY_WEBHOOK_ALLOW_PRIVATE="true", PARLEY_FEED_POLL_INTERVAL="120")
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda h: h.start(), procs))
    yield procs
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda h: h.stop(), procs))


@pytest.mark.timeout(180)  # two process starts, slow on a loaded machine
async def test_feed_and_webhooks_across_processes(pair: list[HubProcess]) -> None:
    reader, writer = pair
    async with (
        running_receiver() as rx,
        httpx.AsyncClient(base_url=writer.base_url + "/api/v1", headers=AUTH, timeout=10) as w,
        httpx.AsyncClient(base_url=reader.base_url, headers=AUTH, timeout=10) as r,
        r.stream("GET", "/api/v1/events/stream?types=message.created") as stream,
    ):
        assert stream.status_code == 200
        lines = stream.aiter_lines()
        while await anext(lines) != "":  # the opening block: the stream is live after it
            pass
        hook = (await w.post("/webhooks", json={"url": rx.url, "events": ["message.*"]})).json()
        rx.secret = hook["secret"]
        sid = (await w.post("/sessions", json={"title": "x"})).json()["id"]
        texts = [f"m{i}" for i in range(20)]
        for text in texts:
            assert (await w.post(f"/sessions/{sid}/messages", json={"text": text})).is_success
        seen: list[str] = []
        # Nobody polls (every 120 s): only the nudge through Redis can bring these in time.
        async with asyncio.timeout(20):
            while len(seen) < len(texts):
                line = await anext(lines)
                if line.startswith("data: "):
                    seen.append(orjson.loads(line[6:])["data"]["message"]["text"])
        assert seen == texts
        got = await rx.wait_for(len(texts))
    assert all(g.signature_ok for g in got)
    assert sorted(g.json["data"]["message"]["text"] for g in got) == sorted(texts)
    assert len({g.delivery_id for g in got}) == len(got), "each delivery sent once"

"""A bot streaming through real hub processes on Redis and PostgreSQL: watchers on another
process see its deltas, and when the bot's process dies mid-stream, another process's reaper
stores the text so far as the bot's message (the bot stays a bot)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from parley.client import ParleyClient
from parley.governance.auth import UserKind, create_token
from parley.relay.assembler import StreamAssembler
from parley.storage.migrate import upgrade
from tests.conftest import TEST_SECRET
from tests.services import HubProcess, RedisServer, hub_client, token


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def hubs(
    pg_database: str, redis_server: RedisServer, tmp_path: Path
) -> AsyncIterator[list[HubProcess]]:
    await asyncio.to_thread(upgrade, pg_database)
    procs = [HubProcess(f"hub{i}", tmp_path, pg_database, redis_server.url) for i in range(2)]
    for proc in procs:
        proc.env["PARLEY_RELAY_LEASE_TTL"] = "1.5"
    await asyncio.gather(*(asyncio.to_thread(p.start) for p in procs))
    yield procs
    await asyncio.gather(*(asyncio.to_thread(p.stop) for p in procs))


async def test_bot_stream_across_processes_and_reaped_when_its_process_dies(
    hubs: list[HubProcess],
) -> None:
    bot_hub, other = hubs
    headers = {"Authorization": f"Bearer {token('alice')}"}
    async with httpx.AsyncClient(base_url=other.base_url + "/api/v1", headers=headers) as h:
        r = await h.post("/sessions", json={"title": "bot stream"})
        assert r.status_code == 201, r.text
        sid = r.json()["id"]
        bot_token = create_token(TEST_SECRET, user_id="teller", tenant_id="acme", kind=UserKind.BOT)
        async with hub_client(other, "alice") as alice:
            await alice.subscribe(sid)
            bot = ParleyClient(bot_hub.base_url, bot_token)
            await bot.connect()
            try:
                await bot.join(sid)
                stream = bot.stream(sid)
                await stream.start()
                await stream.write("streamed on one process, ")
                await stream.flush()
                await stream.write("watched on another")
                await stream.flush()
                assembler = StreamAssembler()
                while "watched on another" not in "".join(
                    s.text for s in assembler.streams.values()
                ):
                    frame = await alice.wait_for(lambda f: f["type"] == "event")
                    if assembler.feed(frame):
                        await alice.send({"type": "streams", "session": sid})
                await asyncio.to_thread(bot_hub.kill)
                finished = await alice.wait_for(
                    lambda f: f.get("event") == "stream.finished", timeout=30
                )
            finally:
                await bot.close(grace=0)
        assert finished["data"]["finish_reason"] == "interrupted"
        messages = (await h.get(f"/sessions/{sid}/messages")).json()["items"]
        (reaped,) = [m for m in messages if m["author"] == "teller"]
        assert reaped["text"] == "streamed on one process, watched on another"
        assert reaped["metadata"]["finish_reason"] == "interrupted"
        participants = (await h.get(f"/sessions/{sid}/participants")).json()["items"]
        assert {p["user_id"]: p["kind"] for p in participants}["teller"] == "bot"

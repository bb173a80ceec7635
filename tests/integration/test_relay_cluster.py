"""The relay across real hub processes on Redis and PostgreSQL: a generation runs on one
process, watchers on every process see the same text, late joiners and reconnecting clients on
any process get the text so far, a stop works from anywhere, and a process that dies
mid-stream has its stream stored as interrupted by another."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from parley.storage.migrate import upgrade
from tests.fakes.llm_server import FakeLLM, Reply
from tests.fakes.relay_client import Watcher, add_assistant, answer_of, ask
from tests.services import HubProcess, RedisServer, hub_client, token

KEY = "sk-cluster-test-0123456789abcdef"
WORDS = [f"wörd{i} " for i in range(30)]


def http(hub: HubProcess, user: str = "owner") -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=hub.base_url + "/api/v1", headers={"Authorization": f"Bearer {token(user)}"}
    )


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def llm() -> AsyncIterator[FakeLLM]:
    async with FakeLLM() as fake:
        yield fake


@pytest.fixture
async def hubs(
    pg_database: str, redis_server: RedisServer, tmp_path: Path, llm: FakeLLM
) -> AsyncIterator[list[HubProcess]]:
    await asyncio.to_thread(upgrade, pg_database)
    procs = [HubProcess(f"hub{i}", tmp_path, pg_database, redis_server.url) for i in range(3)]
    for proc in procs:
        proc.env.update(
            {
                # Provider base URLs come from the environment, like an operator sets them.
                "PARLEY_RELAY_OPENAI_BASE_URL": llm.openai_url,
                "PARLEY_RELAY_OPENAI_API_KEY": KEY,
                "PARLEY_RELAY_ANTHROPIC_BASE_URL": llm.anthropic_url,
                "PARLEY_RELAY_ANTHROPIC_API_KEY": KEY,
                "PARLEY_RELAY_LEASE_TTL": "1.5",
                "PARLEY_RELAY_RETRY_BASE_DELAY": "0.01",
                "PARLEY_RELAY_COALESCE_MS": "5",
                "PARLEY_LOG_LEVEL": "debug",  # keys must stay out of even the debug logs
            }
        )
    # Hubs start in threads: this event loop serves the fake provider meanwhile.
    await asyncio.gather(*(asyncio.to_thread(p.start) for p in procs))
    yield procs
    await asyncio.gather(*(asyncio.to_thread(p.stop) for p in procs))


async def new_session(hub: HubProcess, **assistant: Any) -> str:
    async with http(hub) as h:
        r = await h.post("/sessions", json={"title": "relay cluster"})
        assert r.status_code == 201, r.text
        sid: str = r.json()["id"]
        await add_assistant(
            h, sid, **{"name": "helper", "provider": "openai", "model": "m", **assistant}
        )
        return sid


async def test_one_stream_seen_alike_on_every_process_with_resume_stop_and_failures(
    hubs: list[HubProcess], llm: FakeLLM
) -> None:
    sid = await new_session(hubs[0])
    gate = asyncio.Event()
    reply = Reply(chunks=WORDS, gate=gate, gate_after=8, split_utf8=True)
    llm.script(reply)
    async with hub_client(hubs[0], "ann") as c0, hub_client(hubs[1], "ben") as c1:
        w0, w1 = Watcher(c0, sid), Watcher(c1, sid)
        await w0.subscribe()
        await w1.subscribe()
        async with hub_client(hubs[2], "cat") as c2:
            leaver = Watcher(c2, sid)
            ack = await leaver.subscribe()
            answer = await ask(c1, sid, "helper", text="tell us")  # runs on hub1
            stream_id = answer["stream_id"]
            so_far = "".join(WORDS[:8])
            for w in (w0, w1, leaver):
                await w.wait(lambda w=w: w.asm.text(stream_id) == so_far)
            seqs = [
                f["seq"] for f in leaver.seen if f["type"] == "event" and not f.get("ephemeral")
            ]
            last_seq = max([ack["seq"], *seqs])
        # cat comes back on hub0; dan joins late on hub2
        async with hub_client(hubs[0], "cat") as back_c, hub_client(hubs[2], "dan") as late_c:
            back, late = Watcher(back_c, sid), Watcher(late_c, sid)
            await back.subscribe(since_seq=last_seq)
            await late.subscribe()
            for w in (back, late):
                (snap,) = (await w.event("stream.snapshot"))["streams"]
                assert (snap["stream_id"], snap["text"]) == (stream_id, so_far)
            gate.set()
            streams = [await w.finished(stream_id, 20) for w in (w0, w1, back, late)]
        assert {s.text for s in streams} == {reply.text()}, "the same text on every process"
        assert {s.final for s in streams} == {reply.text()}
        assert w0.events("stream.delta") == w1.events("stream.delta")

        # A stop from another process than the one generating.
        gate2 = asyncio.Event()
        llm.script(Reply(chunks=WORDS, gate=gate2, gate_after=3))
        second = await ask(c0, sid, "helper", text="again")  # runs on hub0
        await w1.wait(lambda: w1.asm.text(second["stream_id"]) == "".join(WORDS[:3]))
        stopped = await c1.request(
            {"type": "stop", "session": sid, "stream_id": second["stream_id"]}
        )
        assert stopped["status"] == "stopping"
        cut = await w1.finished(second["stream_id"], 20)
        assert (cut.finish_reason, cut.final) == ("cancelled", "".join(WORDS[:3]))
        gate2.set()

        # 429 then success, then an error in the middle of a stream, on another process.
        llm.script(Reply(status=429, headers={"retry-after": "0"}), Reply(chunks=["ok ", "fine"]))
        third = await ask(c1, sid, "helper", text="retry me")
        assert (await w0.finished(third["stream_id"], 20)).final == "ok fine"
        llm.script(Reply(chunks=WORDS, error_after=5))
        fourth = await ask(c0, sid, "helper", text="fail midway")
        broken = await w1.finished(fourth["stream_id"], 20)
        assert (broken.finish_reason, broken.final) == ("interrupted", "".join(WORDS[:5]))
        assert w1.events("stream.error")[-1]["partial"] is True

        # A provider error that echoes the key: it reaches nobody, and no log line.
        llm.script(Reply(status=401, error="auth", message=f"Incorrect API key: {KEY}"))
        fifth = await ask(c1, sid, "helper", text="bad key")
        assert (await w0.finished(fifth["stream_id"], 20)).finish_reason == "error"
        assert answer_of(w0, fifth["stream_id"])["metadata"]["error"]["kind"] == "auth"
        for w in (w0, w1):
            assert KEY not in json.dumps(w.seen)
    for hub in hubs:
        assert KEY not in hub.log_path.read_text(), f"the key is in {hub.name}'s log"


async def test_a_process_that_dies_mid_stream_is_reaped_by_another(
    hubs: list[HubProcess], llm: FakeLLM
) -> None:
    sid = await new_session(hubs[0], provider="anthropic")
    gate = asyncio.Event()
    llm.script(Reply(chunks=WORDS, gate=gate, gate_after=4))
    async with hub_client(hubs[0], "ann") as c0, hub_client(hubs[1], "ben") as c1:
        w0 = Watcher(c0, sid)
        await w0.subscribe()
        answer = await ask(c1, sid, "helper", text="long story")  # runs on hub1
        await w0.wait(lambda: w0.asm.text(answer["stream_id"]) == "".join(WORDS[:4]))
        await asyncio.to_thread(hubs[1].kill)  # SIGKILL: no goodbye, no flush
        stream = await w0.finished(answer["stream_id"], 20)
    assert (stream.finish_reason, stream.final) == ("interrupted", "".join(WORDS[:4]))
    meta = answer_of(w0, answer["stream_id"])["metadata"]
    assert meta["error"]["kind"] == "owner_lost"
    async with http(hubs[2]) as h:
        assert (await h.get(f"/sessions/{sid}/streams")).json()["items"] == []
    gate.set()

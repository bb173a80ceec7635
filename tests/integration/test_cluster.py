"""Several real hub processes on real Redis and PostgreSQL, with clients spread across them."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from parley.storage.migrate import upgrade
from tests.conftest import TEST_SECRET
from tests.services import HubProcess, RedisServer, free_port, hub_client, token, wait_for_port
from tests.support import WsClient


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
    procs = [HubProcess(f"hub{i}", tmp_path, pg_database, redis_server.url) for i in range(3)]
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        list(pool.map(lambda h: h.start(), procs))
    yield procs
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        list(pool.map(lambda h: h.stop(), procs))


async def new_session(hub: HubProcess) -> str:
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token('owner')}"}) as h:
        r = await h.post(hub.base_url + "/api/v1/sessions", json={"title": "cluster"})
        assert r.status_code == 201, r.text
        sid: str = r.json()["id"]
        return sid


async def stored_messages(hub: HubProcess, sid: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token('owner')}"}) as h:
        items: list[dict[str, Any]] = []
        after = 0
        while True:
            r = await h.get(
                f"{hub.base_url}/api/v1/sessions/{sid}/messages",
                params={"after_seq": after, "limit": 500},
            )
            page = r.json()["items"]
            items += page
            if len(page) < 500:
                return items
            after = page[-1]["seq"]


def texts(events: list[dict[str, Any]]) -> list[tuple[int, str]]:
    return [
        (e["seq"], e["data"]["message"]["text"]) for e in events if e["event"] == "message.created"
    ]


async def test_identical_order_everywhere_and_moving_to_another_process(
    hubs: list[HubProcess],
) -> None:
    sid = await new_session(hubs[0])
    async with (
        hub_client(hubs[0], "ann") as ann,
        hub_client(hubs[1], "ben") as ben,
        hub_client(hubs[2], "cat") as cat,
    ):
        for c in (ann, ben, cat):
            await c.subscribe(sid)

        async def talk(c: WsClient, who: str) -> None:
            for i in range(15):
                await c.say(sid, f"{who}-{i}", client_id=f"{who}-{i}")

        await asyncio.gather(talk(ann, "ann"), talk(ben, "ben"), talk(cat, "cat"))
        total = 45 + 3  # messages + each speaker joining
        seen = [await c.events(total) for c in (ann, ben, cat)]
        assert seen[0] == seen[1] == seen[2], "every process delivers the same order"
        assert [e["seq"] for e in seen[0]] == list(range(3, 3 + total))
        last_seen_by_cat = seen[2][-1]["seq"]

    # cat goes away; ann keeps talking on hub0; cat comes back on hub1
    async with hub_client(hubs[0], "ann") as ann:
        for i in range(5):
            await ann.say(sid, f"while away {i}")
    async with hub_client(hubs[1], "cat") as cat:
        ack = await cat.subscribe(sid, since_seq=last_seen_by_cat)
        missed = await cat.events(5)
        assert [t for _, t in texts(missed)] == [f"while away {i}" for i in range(5)]
        assert ack["replayed"] == 5
        assert cat.backlog == []


async def test_killing_a_hub_mid_traffic_loses_no_acknowledged_message(
    hubs: list[HubProcess],
) -> None:
    sid = await new_session(hubs[0])
    acked: list[int] = []
    async with hub_client(hubs[0], "watch0") as w0, hub_client(hubs[2], "watch2") as w2:
        await w0.subscribe(sid)
        await w2.subscribe(sid)

        async def send_until_killed() -> None:
            async with hub_client(hubs[1], "talker") as talker:
                try:
                    for i in range(10_000):
                        reply = await talker.say(sid, f"m{i}", client_id=f"m{i}")
                        acked.append(reply["seq"])
                        if len(acked) == 40:
                            hubs[1].kill()  # SIGKILL: no goodbye, no flush
                except (ConnectionClosed, TimeoutError, OSError):
                    return

        await send_until_killed()
        assert len(acked) >= 40
        stored = {m["seq"] for m in await stored_messages(hubs[0], sid)}
        assert set(acked) <= stored, "every acknowledged message is in storage"
        # the watchers on surviving processes have every stored message, in order
        for w in (w0, w2):
            got = texts(await w.events(len(stored) + 1))  # + the talker's join
            assert [s for s, _ in got] == sorted(stored)


async def test_redis_restart_loses_nothing_and_live_delivery_resumes(
    hubs: list[HubProcess], redis_server: RedisServer
) -> None:
    sid = await new_session(hubs[0])
    async with hub_client(hubs[0], "talker") as talker, hub_client(hubs[1], "watcher") as watcher:
        await talker.subscribe(sid)
        await watcher.subscribe(sid)
        await talker.say(sid, "before")
        redis_server.stop()
        # the talker's process keeps serving its own clients while Redis is away
        during = [(await talker.say(sid, f"during {i}"))["seq"] for i in range(5)]
        async with httpx.AsyncClient() as h:
            health = (await h.get(hubs[0].base_url + "/readyz")).json()
        assert health["status"] == "degraded"
        redis_server.start()
        # the watcher's process reconnects by itself and reads what it missed from storage
        got = texts(await watcher.events(1 + 1 + 5, timeout=30))  # join, before, during
        assert [t for _, t in got] == ["before"] + [f"during {i}" for i in range(5)]
        assert [s for s, _ in got][1:] == during
        # and live delivery works again
        after = await talker.say(sid, "after")
        (live,) = await watcher.events(1, timeout=30)
        assert live["seq"] == after["seq"]


async def test_presence_across_processes_and_expiry_of_a_killed_process(
    hubs: list[HubProcess],
) -> None:
    sid = await new_session(hubs[0])
    async with hub_client(hubs[2], "watcher") as watcher:
        ack = await watcher.subscribe(sid)
        assert [u["user_id"] for u in ack["presence"]] == ["watcher"]
        async with hub_client(hubs[0], "ann") as ann:
            ack = await ann.subscribe(sid)
            assert sorted(u["user_id"] for u in ack["presence"]) == ["ann", "watcher"]
            joined = await watcher.wait_for(lambda f: f.get("event") == "presence.joined")
            assert joined["data"]["user_id"] == "ann"

            async with hub_client(hubs[1], "ben") as ben:
                await ben.subscribe(sid)
                joined = await watcher.wait_for(lambda f: f.get("event") == "presence.joined")
                assert joined["data"]["user_id"] == "ben"
                assert await present(hubs[0], sid) == ["ann", "ben", "watcher"]
                # ben's process dies without a word; his presence expires (ttl 3 s here)
                hubs[1].kill()
                left = await watcher.wait_for(
                    lambda f: f.get("event") == "presence.left", timeout=15
                )
                assert left["data"]["user_id"] == "ben"
                assert await present(hubs[0], sid) == ["ann", "watcher"]
        # ann leaves cleanly: at once, no expiry needed
        left = await watcher.wait_for(lambda f: f.get("event") == "presence.left", timeout=5)
        assert left["data"]["user_id"] == "ann"


async def present(hub: HubProcess, sid: str) -> list[str]:
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token('owner')}"}) as h:
        r = await h.get(f"{hub.base_url}/api/v1/sessions/{sid}/presence")
        assert r.status_code == 200, r.text
        return [u["user_id"] for u in r.json()["items"]]


def test_workers_need_a_shared_broker(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "parley.cli",
            "serve",
            "--workers",
            "2",
            "--data-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "shared broker" in result.stderr


async def test_serve_with_workers_shares_one_port(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    port = free_port()
    env = {**os.environ, "PARLEY_SECRET": TEST_SECRET, "PARLEY_LOG_LEVEL": "warning"}
    proc = subprocess.Popen(  # noqa: ASYNC220 - a long-lived server, not awaited
        [
            sys.executable,
            "-m",
            "parley.cli",
            "serve",
            "--workers",
            "2",
            "--port",
            str(port),
            "--data-dir",
            str(tmp_path / "data"),
            "--broker-url",
            redis_server.url,
        ],
        env=env,
    )
    try:
        await asyncio.to_thread(wait_for_port, port, 60)
        hub = HubProcess("workers", tmp_path, "", redis_server.url)
        hub.port = port
        workers = await asyncio.to_thread(_children, proc.pid, 2)
        assert len(workers) == 2
        sid = await new_session(hub)
        async with contextlib.AsyncExitStack() as stack:
            clients = [await stack.enter_async_context(hub_client(hub, f"u{i}")) for i in range(6)]
            for c in clients:
                await c.subscribe(sid)
            await clients[0].say(sid, "to every worker")
            for c in clients:
                (event,) = texts(await c.events(2))  # u0's join, then the message
                assert event[1] == "to every worker"
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def _children(pid: int, count: int) -> list[int]:
    """The worker processes of ``pid``, once ``count`` of them are running."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
        # multiprocessing also starts a resource tracker beside the workers
        kids = [
            int(x)
            for x in out.split()
            if b"resource_tracker" not in Path(f"/proc/{x}/cmdline").read_bytes()
        ]
        if len(kids) >= count:
            return kids
        time.sleep(0.1)  # processes are starting; nothing to wait on
    return []


async def test_documents_converge_across_processes_on_redis(hubs: list[HubProcess]) -> None:
    """Issue 4 on the real scale-out path: two Yjs clients on two hub processes, one Redis."""
    from tests.ysupport import yjs_client

    class Target:  # what yjs_client needs of a server: a port and tokens
        def __init__(self, hub: HubProcess) -> None:
            self.port = hub.port

        def token(self, user: str) -> str:
            return token(user)

    sid = await new_session(hubs[0])
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token('owner')}"}) as h:
        for user in ("alice", "bob"):
            async with hub_client(hubs[0], user):
                pass  # a user exists once their token was used
            r = await h.post(
                f"{hubs[0].base_url}/api/v1/sessions/{sid}/participants",
                json={"user_id": user, "role": "editor"},
            )
            assert r.status_code == 201, r.text
    one, two = Target(hubs[0]), Target(hubs[1])
    async with (
        yjs_client(one, sid, "alice", presence={"viewing": "m1"}) as a,  # type: ignore[arg-type]
        yjs_client(two, sid, "bob", presence={"viewing": "m2"}) as b,  # type: ignore[arg-type]
    ):
        await a.wait(lambda: "bob" in a.others_by_user())
        await b.wait(lambda: "alice" in b.others_by_user())
        a.notes.insert(0, "Hello")
        b.notes.insert(0, "World")
        await a.wait(lambda: len(str(a.notes)) == 10)
        await b.wait(lambda: str(b.notes) == str(a.notes))
        final = str(a.notes)
    # a third process, started cold, serves the stored document
    async with yjs_client(Target(hubs[2]), sid, "alice") as c:  # type: ignore[arg-type]
        assert str(c.notes) == final

"""Stock Yjs clients against the server: ``yjs`` and ``y-websocket`` from npm, unmodified, in
Node processes (``tests/e2e/js/yclient.mjs``), with BroadcastChannel disabled.

Needs ``node`` and ``client_js/node_modules`` (``make js-deps``). Without them these tests skip
loudly, or fail when ``PARLEY_REQUIRE_SERVICES=1`` (CI).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest

from parley.broker.memory import MemoryBroker, MemoryBus
from parley.config import Settings
from tests.services import free_port
from tests.support import DEFAULT_TIMEOUT, RunningServer, start_server
from tests.ysupport import yjs_client

ROOT = Path(__file__).resolve().parents[2]
CLIENT_JS = ROOT / "client_js"
SCRIPT = Path(__file__).parent / "js" / "yclient.mjs"


@pytest.fixture(scope="module")
def node() -> str:
    path = shutil.which("node")
    problem = None
    if path is None:
        problem = "node is not installed"
    elif not (CLIENT_JS / "node_modules" / "y-websocket").is_dir():
        problem = "client_js/node_modules is missing (run `make js-deps`)"
    if problem is not None:
        if os.environ.get("PARLEY_REQUIRE_SERVICES") == "1":
            pytest.fail(problem + " and PARLEY_REQUIRE_SERVICES=1", pytrace=False)
        pytest.skip("SKIPPED LOUDLY: " + problem)
    assert path is not None
    return path


class NodeClient:
    """One Node process running a stock WebsocketProvider."""

    def __init__(self, name: str, proc: asyncio.subprocess.Process) -> None:
        self.name = name
        self.proc = proc
        self.events: list[dict[str, Any]] = []
        self.notes = ""
        self.annotations: dict[str, Any] = {}
        self.others: dict[str, Any] = {}
        self.synced_with_others: dict[str, Any] | None = None
        self._changed = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for line in self.proc.stdout:
            event = orjson.loads(line)
            self.events.append(event)
            if event["ev"] == "doc":
                self.notes, self.annotations = event["notes"], event["annotations"]
            elif event["ev"] == "presence":
                self.others = event["others"]
            elif event["ev"] == "synced" and self.synced_with_others is None:
                self.synced_with_others = event["others"]
            self._changed.set()
        self._changed.set()

    async def do(self, op: str, **args: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(orjson.dumps({"op": op, **args}) + b"\n")
        await self.proc.stdin.drain()
        if op == "exit":  # the process ends without a word: its socket just goes away
            await asyncio.wait_for(self.proc.wait(), DEFAULT_TIMEOUT)
            return
        await self.wait(lambda: any(e.get("op") == op for e in self.events), drop=True)

    async def wait(
        self, predicate: Callable[[], bool], timeout: float = DEFAULT_TIMEOUT, drop: bool = False
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            self._changed.clear()
            if self.proc.returncode is not None or loop.time() > deadline:
                raise TimeoutError(f"{self.name}: condition not met; events: {self.events[-10:]}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), deadline - loop.time())
        if drop:  # forget the 'done' marker so the same op can be awaited again
            self.events = [e for e in self.events if e["ev"] != "done"]

    async def kill(self) -> None:
        """SIGKILL: no goodbye message, the socket just dies (as with a crash or lost network)."""
        self.proc.kill()
        await self.proc.wait()

    def users(self) -> set[str]:
        return {str(s.get("user", {}).get("id")) for s in self.others.values() if s}

    def denied(self) -> list[str]:
        return [e["reason"] for e in self.events if e["ev"] == "denied"]

    def synced(self) -> bool:
        return self.synced_with_others is not None

    async def close(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ConnectionError):
                await self.do("exit")
            await asyncio.wait_for(self.proc.wait(), DEFAULT_TIMEOUT)
        await self._reader


@asynccontextmanager
async def stock_client(
    node: str,
    server: RunningServer,
    session_id: str,
    user: str,
    *,
    presence: dict[str, Any] | None = None,
    port: int | None = None,
) -> AsyncIterator[NodeClient]:
    proc = await asyncio.create_subprocess_exec(
        node,
        str(SCRIPT),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PARLEY_CLIENT_JS": str(CLIENT_JS)},
    )
    client = NodeClient(user, proc)
    try:
        await client.do(
            "connect",
            url=f"ws://127.0.0.1:{port or server.port}/yjs",
            room=session_id,
            token=server.token(user),
            presence=presence,
        )
        await client.wait(client.synced)
        yield client
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
        await client._reader


async def grant(server: RunningServer, sid: str, user: str, role: str) -> None:
    async with server.http(user) as h:
        await h.get("/me")
    async with server.http("alice") as h:
        r = await h.post(f"/sessions/{sid}/participants", json={"user_id": user, "role": role})
        assert r.status_code in (200, 201), r.text


async def stored_notes(server: RunningServer, sid: str) -> str:
    async with server.http("alice") as h:
        notes: str = (await h.get(f"/sessions/{sid}/document")).json()["notes"]
        return notes


@pytest.fixture
async def doc_server(
    sqlite_url: str, settings_factory: Callable[..., Settings]
) -> AsyncIterator[RunningServer]:
    async with start_server(settings_factory(database_url=sqlite_url, doc_idle_seconds=0)) as s:
        yield s


async def test_stock_clients_converge_with_each_other_and_with_pycrdt(
    node: str, doc_server: RunningServer
) -> None:
    server = doc_server
    sid = await server.create_session("alice")
    await grant(server, sid, "bob", "editor")
    async with (
        stock_client(node, server, sid, "alice") as a,
        stock_client(node, server, sid, "bob") as b,
        yjs_client(server, sid, "alice") as py,
    ):
        await a.do("insert", text="from node A. ")
        await b.do("insert", index=0, text="from node B. ")
        py.notes.insert(0, "from python. ")
        expected_length = len("from node A. from node B. from python. ")
        await a.wait(lambda: len(a.notes) == expected_length)
        await b.wait(lambda: b.notes == a.notes)
        await py.wait(lambda: str(py.notes) == a.notes)
        await a.do(
            "annotate",
            id="n1",
            fields={"id": "n1", "message_id": "m1", "kind": "comment", "author": "alice"},
        )
        await py.wait(lambda: "n1" in py.annotations)
        await b.wait(lambda: b.annotations.get("n1", {}).get("message_id") == "m1")
        final = a.notes
    assert await stored_notes(server, sid) == final
    async with server.http("alice") as h:
        events = (await h.get(f"/sessions/{sid}/events")).json()["items"]
        assert events[-1]["event"] == "annotation.created"
        assert events[-1]["data"]["annotation"]["id"] == "n1"


async def test_a_stock_viewers_write_is_refused_and_changes_nothing(
    node: str, doc_server: RunningServer
) -> None:
    server = doc_server
    sid = await server.create_session("alice")
    await grant(server, sid, "vic", "viewer")
    async with stock_client(node, server, sid, "alice") as a:
        await a.do("insert", text="safe")
        async with stock_client(node, server, sid, "vic") as v:
            await v.wait(lambda: v.notes == "safe")
            await v.do("insert", index=0, text="vandalism ")
            await v.wait(lambda: bool(v.denied()))
            assert v.denied()[0].startswith("forbidden: viewers may read the document")
            await a.do("insert", text="!")  # a later change still flows to the viewer
            await v.wait(lambda: v.notes.endswith("safe!"))
        assert a.notes == "safe!"
    assert await stored_notes(server, sid) == "safe!"


async def test_stock_presence_appears_at_once_and_disappears_at_once(
    node: str, doc_server: RunningServer
) -> None:
    server = doc_server
    sid = await server.create_session("alice")
    await grant(server, sid, "bob", "commenter")
    here = {"user": {"name": "A", "color": "#0a0"}, "viewing": "m1", "typing": False}
    async with stock_client(node, server, sid, "alice", presence=here) as a:
        async with stock_client(node, server, sid, "bob", presence={"viewing": "m2"}) as b:
            # the late joiner already knew about alice when its provider reported "synced"
            assert b.synced_with_others is not None
            assert {s["user"]["id"] for s in b.synced_with_others.values()} == {"alice"}
            await a.wait(lambda: a.users() == {"bob"})
            await b.do("presence", state={"viewing": "m2", "typing": True})
            await a.wait(lambda: any(s.get("typing") for s in a.others.values()))
            await b.kill()
        # bob's process is gone: alice sees him leave well before the 30 s timeout
        await asyncio.wait_for(a.wait(lambda: a.users() == set()), 2)


async def test_stock_clients_on_two_processes_converge(
    node: str, sqlite_url: str, settings_factory: Callable[..., Settings]
) -> None:
    bus = MemoryBus()
    settings = settings_factory(database_url=sqlite_url, doc_idle_seconds=0)
    async with (
        start_server(settings, broker=MemoryBroker(bus)) as one,
        start_server(settings, broker=MemoryBroker(bus)) as two,
    ):
        sid = await one.create_session("alice")
        await grant(one, sid, "bob", "editor")
        async with (
            stock_client(node, one, sid, "alice", presence={"viewing": "m1"}) as a,
            stock_client(node, two, sid, "bob", presence={"viewing": "m2"}) as b,
        ):
            await a.do("insert", text="one ")
            await b.do("insert", text="two ")
            await a.wait(lambda: len(a.notes) == 8)
            await b.wait(lambda: b.notes == a.notes)
            await a.wait(lambda: a.users() == {"bob"})
            await b.wait(lambda: b.users() == {"alice"})
            await b.kill()
            await asyncio.wait_for(a.wait(lambda: a.users() == set()), 2)
            final = a.notes
        assert await stored_notes(two, sid) == final


async def test_a_stock_client_rides_out_a_server_restart(
    node: str, sqlite_url: str, settings_factory: Callable[..., Settings]
) -> None:
    settings = settings_factory(database_url=sqlite_url, port=free_port())
    first: Any = start_server(settings)
    server = await first.__aenter__()
    try:
        sid = await server.create_session("alice")
        async with stock_client(node, server, sid, "alice", presence={"n": 1}) as a:
            await a.do("insert", text="before ")
            async with yjs_client(server, sid, "alice") as py:
                await py.wait(lambda: str(py.notes) == "before ")
            await first.__aexit__(None, None, None)  # graceful: documents flushed, close 1012
            first = None
            await a.wait(lambda: {"ev": "connection-close", "code": 1012} in a.events)
            syncs = sum(1 for e in a.events if e["ev"] == "synced")
            async with start_server(settings) as again:  # same port: the provider reconnects
                await a.wait(lambda: sum(1 for e in a.events if e["ev"] == "synced") > syncs)
                await a.do("insert", text="after")
                async with yjs_client(again, sid, "bob") as py:
                    await py.wait(lambda: str(py.notes) == "before after")
                    assert "alice" in py.others_by_user()
    finally:
        if first is not None:
            await first.__aexit__(None, None, None)

"""Collaborative documents under load: merged updates per second for one document, and what
storage holds after many edits.

Starts ``parley serve`` in a subprocess on a free port (SQLite, in-memory broker; pinned to CPU 0
when ``taskset`` exists, the load generator to CPU 1).

* **merge**: ``--writers`` pycrdt clients on ``/yjs`` each send ``--updates`` single-character
  inserts into the shared notes as fast as the socket takes them (prepared beforehand, so the
  generator measures the server, not pycrdt); an observer client counts until it holds every
  character. Prints merged updates/s: every update was checked, applied to the server's copy,
  relayed to every other client and stored. With ``--floor`` the same merge then runs against
  ``load_tests.crdt_floor_server`` (apply and relay only, per update and merged): what a Python
  server reaches without checks, storage and the rest.
* **storage**: one client makes ``--edits`` edits (inserts at random places, every third edit a
  deletion), then reads ``GET /sessions/{id}/document``: the document's encoded size against
  the bytes stored (snapshot + update log), while the document is open and after it closed
  (compacted).

    .venv/bin/python -m load_tests.crdt_merge --writers 4 --updates 5000 --edits 10000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from pycrdt import Doc, Text, create_sync_message, create_update_message, handle_sync_message
from websockets.asyncio.client import ClientConnection, connect

from load_tests.quick_fanout import wait_ready
from load_tests.servers import BENCH_ENV, cpu_seconds, free_port, python_child, wait_port

SECRET = "bench-secret-" + "x" * 40


def token(user: str) -> str:
    from parley.governance.auth import create_token

    return create_token(SECRET, user_id=user, tenant_id="bench")


def start_server(
    port: int, data_dir: Path, profile_to: Path | None = None
) -> tuple[subprocess.Popen[bytes], int]:
    """Start ``parley serve``; returns the process and the pid of its interpreter (under
    ``profile_to`` the process is py-spy, which writes the profile when the server exits)."""
    env = {
        **os.environ,
        "PARLEY_SECRET": SECRET,
        "PARLEY_FRAME_RATE": "10000000",
        "PARLEY_FRAME_BURST": "10000000",
        "PARLEY_SEND_QUEUE_FRAMES": "1000000",
        **BENCH_ENV,
        "PARLEY_DOC_IDLE_SECONDS": "0",
    }
    cmd = [sys.executable, "-m", "parley.cli", "serve", "--port", str(port)]
    cmd += ["--data-dir", str(data_dir)]
    if shutil.which("taskset"):
        cmd = ["taskset", "-c", "0", *cmd]
        os.sched_setaffinity(0, {1 % (os.cpu_count() or 1)})
    if profile_to is None:
        proc = subprocess.Popen(cmd, env=env)
        return proc, proc.pid
    beside = Path(sys.executable).parent / "py-spy"
    spy = [str(beside) if beside.exists() else shutil.which("py-spy") or "py-spy"]
    spy += ["record", "--format", "raw", "--rate", "250", "--nonblocking"]
    spy += ["--output", str(profile_to), "--"]
    proc = subprocess.Popen(spy + cmd, env=env)
    return proc, python_child(proc.pid)


def start_floor(port: int, *, merged: bool) -> subprocess.Popen[bytes]:
    """Start ``load_tests.crdt_floor_server`` on the server's core."""
    cmd = [sys.executable, "-m", "load_tests.crdt_floor_server", "--port", str(port)]
    if merged:
        cmd.append("--merge")
    if shutil.which("taskset"):
        cmd = ["taskset", "-c", "0", *cmd]
    return subprocess.Popen(cmd)


class Client:
    """A minimal y-websocket client: sync on connect, then updates both ways."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.doc: Doc[Any] = Doc()
        self.notes = self.doc.get("notes", type=Text)
        self.synced = asyncio.Event()
        self.received = 0
        self.changed = asyncio.Event()

    async def start(self) -> None:
        await self.ws.send(create_sync_message(self.doc))
        asyncio.create_task(self._read())  # noqa: RUF006 - ends with the socket
        await self.synced.wait()

    async def _read(self) -> None:
        async for data in self.ws:
            if not isinstance(data, bytes) or data[0] != 0:
                continue
            reply = handle_sync_message(data[1:], self.doc)
            if reply is not None:
                await self.ws.send(reply)
            if data[1] == 1:
                self.synced.set()
            self.received += 1
            self.changed.set()

    async def until(self, predicate: Any, timeout: float = 300) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()


def prepared_inserts(count: int, tag: str) -> list[bytes]:
    """``count`` single-character inserts as y-protocol messages, made before the clock runs."""
    doc: Doc[Any] = Doc()
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(create_update_message(event.update)))
    notes = doc.get("notes", type=Text)
    for i in range(count):
        notes.insert(i, tag)
    return updates


def raw_apply_rate(writers: int, updates: int) -> float:
    """pycrdt's own rate for the same work, in this process: the writers' single-character
    inserts applied to one document with ``apply_update``, interleaved as the server gets
    them (the floor the server's merge is compared with)."""
    batches: list[list[bytes]] = []
    for w in range(writers):
        doc: Doc[Any] = Doc()
        batch: list[bytes] = []
        doc.observe(lambda event, batch=batch: batch.append(event.update))
        notes = doc.get("notes", type=Text)
        for i in range(updates):
            notes.insert(i, chr(ord("a") + w % 26))
        batches.append(batch)
    target: Doc[Any] = Doc()
    target.get("notes", type=Text)
    start = time.perf_counter()
    for i in range(updates):
        for batch in batches:
            target.apply_update(batch[i])
    return writers * updates / (time.perf_counter() - start)


async def merge(
    ws_base: str, sid: str, writers: int, updates: int, server_pid: int, label: str = "merge"
) -> None:
    url = f"{ws_base}/yjs/{sid}?token="
    batches = [prepared_inserts(updates, chr(ord("a") + w % 26)) for w in range(writers)]
    total = writers * updates
    async with connect(url + token("observer"), max_size=None, compression=None) as ows:
        observer = Client(ows)
        await observer.start()
        sockets = [
            await connect(url + token(f"w{w}"), max_size=None, compression=None)
            for w in range(writers)
        ]
        clients = [Client(ws) for ws in sockets]
        await asyncio.gather(*(c.start() for c in clients))

        async def write(client: Client, batch: list[bytes]) -> None:
            for message in batch:
                await client.ws.send(message)

        server_cpu, own_cpu = cpu_seconds(server_pid), time.process_time()
        start = time.perf_counter()
        await asyncio.gather(*(write(c, b) for c, b in zip(clients, batches, strict=True)))
        sent = time.perf_counter() - start
        await observer.until(lambda: len(observer.notes) >= total)
        elapsed = time.perf_counter() - start
        server_cpu = cpu_seconds(server_pid) - server_cpu
        own_cpu = time.process_time() - own_cpu
        for ws in sockets:
            await ws.close()
    print(
        f"{label}: {writers} writers x {updates} updates = {total} in {elapsed:.2f}s "
        f"(sent in {sent:.2f}s): {total / elapsed:,.0f} merged updates/s; "
        f"observer received {observer.received} messages"
    )
    # Both near 100% would mean the generator, not the server, sets the pace.
    print(
        f"  CPU during the merge: server {server_cpu:.2f}s ({server_cpu / elapsed:.0%}), "
        f"load generator {own_cpu:.2f}s ({own_cpu / elapsed:.0%})"
    )


async def storage(base: str, ws_base: str, sid: str, edits: int) -> None:
    url = f"{ws_base}/yjs/{sid}?token="
    rng = random.Random(7)
    sent_bytes = 0
    async with (
        connect(url + token("editor"), max_size=None, compression=None) as ews,
        connect(url + token("observer"), max_size=None, compression=None) as ows,
    ):
        editor, observer = Client(ews), Client(ows)
        await editor.start()
        await observer.start()
        outbox: list[bytes] = []
        editor.doc.observe(lambda event: outbox.append(event.update))
        for i in range(edits):
            n = len(editor.notes)
            if i % 3 == 2 and n:
                del editor.notes[rng.randrange(n)]
            else:
                editor.notes.insert(rng.randrange(n + 1), chr(ord("a") + i % 26))
            update = outbox.pop()
            sent_bytes += len(update)
            await ews.send(create_update_message(update))
        expected = str(editor.notes)
        await observer.until(lambda: str(observer.notes) == expected)
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token('editor')}"}) as h:
            open_doc = (await h.get(f"{base}/api/v1/sessions/{sid}/document")).json()
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token('editor')}"}) as h:
        closed: dict[str, Any] = {}
        for _ in range(200):  # the room closes and compacts right after the last client left
            closed = (await h.get(f"{base}/api/v1/sessions/{sid}/document")).json()
            if closed["size"]["stored_updates"] == 0:
                break
            await asyncio.sleep(0.05)
    assert closed["notes"] == expected
    size = open_doc["size"]
    print(
        f"storage: {edits} edits ({len(expected)} characters left), "
        f"{sent_bytes:,} bytes of updates sent"
    )
    print(
        f"  while open: document {size['document_bytes']:,} bytes, stored "
        f"{size['stored_bytes']:,} bytes ({size['stored_updates']} log rows), "
        f"ratio {size['stored_bytes'] / size['document_bytes']:.2f}"
    )
    size = closed["size"]
    print(
        f"  after close (compacted): document {size['document_bytes']:,} bytes, stored "
        f"{size['stored_bytes']:,} bytes ({size['stored_updates']} log rows), "
        f"ratio {size['stored_bytes'] / size['document_bytes']:.2f}"
    )


async def run(args: argparse.Namespace) -> None:
    port = free_port()
    base, ws_base = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as tmp:
        proc, pid = start_server(port, Path(tmp), args.profile)
        try:
            await wait_ready(base)
            async with httpx.AsyncClient(
                headers={"Authorization": f"Bearer {token('owner')}"}
            ) as h:
                sids = []
                for title in ("merge", "storage"):
                    r = await h.post(base + "/api/v1/sessions", json={"title": title})
                    sid = r.json()["id"]
                    sids.append(sid)
                    for user in ["observer", "editor", *(f"w{w}" for w in range(args.writers))]:
                        # the user must exist (have used a token) before it can be granted a role
                        await h.get(
                            base + "/api/v1/me", headers={"Authorization": f"Bearer {token(user)}"}
                        )
                        await h.post(
                            f"{base}/api/v1/sessions/{sid}/participants",
                            json={"user_id": user, "role": "editor"},
                        )
            if args.updates:
                await merge(ws_base, sids[0], args.writers, args.updates, pid)
            if args.edits:
                await storage(base, ws_base, sids[1], args.edits)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            proc.wait(30)
    if args.floor and args.updates:
        for merged in (False, True):
            await floor(args.writers, args.updates, merged=merged)


async def floor(writers: int, updates: int, *, merged: bool) -> None:
    """The same merge against ``load_tests.crdt_floor_server``: apply and relay, nothing else."""
    port = free_port()
    proc = start_floor(port, merged=merged)
    try:
        wait_port(port, 60, proc)
        label = "floor, merged relays" if merged else "floor, one relay per update"
        await merge(f"ws://127.0.0.1:{port}", "floor", writers, updates, proc.pid, label)
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--updates", type=int, default=5000, help="per writer; 0 skips")
    parser.add_argument("--edits", type=int, default=10_000, help="0 skips")
    parser.add_argument(
        "--raw", action="store_true", help="also print pycrdt's raw apply_update rate"
    )
    parser.add_argument(
        "--floor",
        action="store_true",
        help="also run the merge against a minimal apply-and-relay server (the floor)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="FILE",
        help="record the server with py-spy (raw format) into FILE; see load_tests.profile_report",
    )
    args = parser.parse_args()
    if args.raw and args.updates:
        if shutil.which("taskset"):
            os.sched_setaffinity(0, {0})  # the server's core, where the server would apply them
        rate = raw_apply_rate(args.writers, args.updates)
        print(f"raw: {args.writers * args.updates} updates: {rate:,.0f} apply_update/s")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()

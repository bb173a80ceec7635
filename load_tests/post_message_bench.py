"""How much the intelligence triggers (search index + analysis queue) cost ``post_message``.

Runs the same sequence of messages against a database migrated to revision 0003 (before
issue 9) and to head (search index and job triggers), on SQLite and PostgreSQL, optionally
with the analysis worker running beside the writes:

    .venv/bin/python -m load_tests.post_message_bench [--messages 2000] [--pg URL]

Each configuration runs ``--rounds`` times, interleaved, and the best round is kept: on a shared
machine the best round is the one least disturbed by other work. It prints the median and p99
latency of one ``post_message``, the messages per second of one sequential writer, and the CPU
time of this process per message (on SQLite all database work runs in this process). Numbers
are in docs/intelligence.md. The worker variant uses ``--debounce`` (0: the worst case, the
session is analysed again after every message).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

from parley.governance.auth import Principal, UserKind
from parley.intelligence.worker import AnalysisWorker
from parley.sessions.service import SessionService
from parley.storage.database import Database
from parley.storage.migrate import upgrade

TEXTS = [
    "Can you check why the invoice total is wrong after the refund?",
    "I'll look at the payment logs this afternoon.",
    "We decided to disable retries until the billing fix ships.",
    "Thanks, that was quick!",
]


class NoPublisher:
    async def publish(self, tenant_id: str, session_id: str, frames: Sequence[Any]) -> None:
        return None

    async def publish_ephemeral(self, *args: Any) -> None:
        return None


async def run(
    url: str, revision: str, messages: int, worker: str, debounce: float
) -> dict[str, float]:
    """``worker``: "" (none), "thread" (in this process) or "process" (``parley analysis
    worker`` beside it)."""
    await asyncio.to_thread(upgrade, url, revision)
    db = Database(url)
    service = SessionService(db, NoPublisher())
    p = Principal("bench", "alice", "Alice", UserKind.HUMAN)
    sid = (await service.create_session(p, title="bench"))["id"]
    runner = None
    child = None
    if worker == "thread":
        runner = AnalysisWorker(db, NoPublisher(), poll_interval=0.05, debounce=debounce)
        await runner.start()
    elif worker == "process":
        env = {
            **os.environ,
            "PARLEY_DATABASE_URL": url,
            "PARLEY_ANALYSIS_DEBOUNCE": str(debounce),
            "PARLEY_ANALYSIS_POLL_INTERVAL": "0.05",
            "PARLEY_LOG_LEVEL": "warning",
        }
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "parley.cli", "analysis", "worker", env=env
        )
    for i in range(50):  # warm up connections and caches
        await service.post_message(p, sid, text=TEXTS[i % len(TEXTS)])
    times = []
    cpu = time.process_time()
    start = time.perf_counter()
    for i in range(messages):
        t0 = time.perf_counter()
        await service.post_message(p, sid, text=TEXTS[i % len(TEXTS)])
        times.append(time.perf_counter() - t0)
    total = time.perf_counter() - start
    cpu = time.process_time() - cpu
    if runner is not None:
        await runner.stop()
    if child is not None:
        child.send_signal(signal.SIGTERM)
        await child.wait()
    await db.close()
    times.sort()
    return {
        "median_us": statistics.median(times) * 1e6,
        "p99_us": times[int(len(times) * 0.99) - 1] * 1e6,
        "per_second": messages / total,
        "cpu_us": cpu / messages * 1e6,
    }


async def concurrent_run(url: str, writers: int, messages: int) -> dict[str, float]:
    """``writers`` tasks post into ``writers`` sessions at once (as many sockets would):
    messages per second and CPU time per message of the whole process, where SQLite's group
    commit can share transactions between the queued writes."""
    await asyncio.to_thread(upgrade, url)
    db = Database(url)
    service = SessionService(db, NoPublisher())
    people = [Principal("bench", f"u{w}", f"U{w}", UserKind.HUMAN) for w in range(writers)]
    sids = [(await service.create_session(p, title="bench"))["id"] for p in people]

    async def writer(p: Principal, sid: str, count: int) -> None:
        for i in range(count):
            await service.post_message(p, sid, text=TEXTS[i % len(TEXTS)])

    await asyncio.gather(*(writer(p, s, 10) for p, s in zip(people, sids, strict=True)))
    per = max(1, messages // writers)
    cpu = time.process_time()
    start = time.perf_counter()
    await asyncio.gather(*(writer(p, s, per) for p, s in zip(people, sids, strict=True)))
    total = time.perf_counter() - start
    cpu = time.process_time() - cpu
    await db.close()
    return {"per_second": per * writers / total, "cpu_us": cpu / (per * writers) * 1e6}


def trigger_cost(tmp: Path, messages: int) -> dict[str, float]:
    """CPU time per message of the bare INSERT (one transaction each, as ``post_message``
    commits) on SQLite at 0003 and at head: the triggers' own cost, with no Python service
    code around it, so it moves little with the load of the machine."""
    import sqlite3

    out = {}
    for revision in ("0003", "head"):
        path = tmp / f"t-{revision}-{secrets.token_hex(3)}.db"
        upgrade(f"sqlite+aiosqlite:///{path}", revision)
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        now = "2026-11-25 10:00:00.000000"
        conn.execute("INSERT INTO tenants VALUES ('t', 't', ?)", (now,))
        conn.execute(
            "INSERT INTO sessions VALUES ('s', 't', 'x', '{}', 'active', 'u', ?, ?, 0)", (now, now)
        )
        best = float("inf")
        for _ in range(3):
            cpu = time.process_time()
            for i in range(messages):
                conn.execute("BEGIN IMMEDIATE")
                conn.execute(
                    "INSERT INTO messages (id, tenant_id, session_id, seq, author_id, text,"
                    " metadata, created_at) VALUES (?, 't', 's', ?, 'u', ?, '{}', ?)",
                    (secrets.token_hex(8), i, TEXTS[i % len(TEXTS)], now),
                )
                conn.execute("COMMIT")
            best = min(best, (time.process_time() - cpu) / messages * 1e6)
        conn.close()
        out[revision] = best
    return out


async def fresh_pg(base: str) -> str:
    name = "parley_bench_" + secrets.token_hex(4)
    admin = await asyncpg.connect(
        make_url(base).set(drivername="postgresql").render_as_string(False)
    )
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    return make_url(base).set(database=name).render_as_string(hide_password=False)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--debounce", type=float, default=0.0)
    parser.add_argument("--pg", default="postgresql+asyncpg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--workers", default=",thread,process", help="worker variants to run")
    parser.add_argument("--triggers-only", action="store_true", help="only the bare SQLite cost")
    parser.add_argument(
        "--concurrent",
        type=int,
        default=0,
        metavar="N",
        help="only N concurrent writers on SQLite at head (msg/s and CPU per message)",
    )
    args = parser.parse_args()
    if args.concurrent:
        with tempfile.TemporaryDirectory() as tmp:
            for _ in range(args.rounds):
                url = f"sqlite+aiosqlite:///{Path(tmp) / secrets.token_hex(4)}.db"
                r = await concurrent_run(url, args.concurrent, args.messages)
                print(
                    f"sqlite {args.concurrent} concurrent writers: {r['per_second']:5.0f} msg/s"
                    f"  cpu {r['cpu_us']:6.0f} us/msg",
                    flush=True,
                )
        return
    if args.triggers_only:
        with tempfile.TemporaryDirectory() as tmp:
            cost = await asyncio.to_thread(trigger_cost, Path(tmp), args.messages)
        for revision, us in cost.items():
            print(f"sqlite bare INSERT + COMMIT at {revision:5} {us:6.1f} us CPU/message")
        return
    configs = [("0003", "")] + [("head", w) for w in args.workers.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        for backend in args.backends.split(","):
            best: dict[tuple[str, str], dict[str, float]] = {}
            for _ in range(args.rounds):
                for revision, worker in configs:
                    if backend == "sqlite":
                        url = f"sqlite+aiosqlite:///{Path(tmp) / secrets.token_hex(4)}.db"
                    else:
                        url = await fresh_pg(args.pg)
                    r = await run(url, revision, args.messages, worker, args.debounce)
                    key = (revision, worker)
                    if key not in best or r["median_us"] < best[key]["median_us"]:
                        best[key] = r
            for (revision, worker), r in best.items():
                label = f"{revision}{' + worker ' + worker if worker else ''}"
                print(
                    f"{backend:10} {label:22} median {r['median_us']:6.0f} us"
                    f"  p99 {r['p99_us']:7.0f} us  {r['per_second']:5.0f} msg/s"
                    f"  cpu {r['cpu_us']:6.0f} us/msg",
                    flush=True,
                )


if __name__ == "__main__":
    asyncio.run(main())

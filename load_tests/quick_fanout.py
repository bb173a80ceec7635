"""A first reading of Parley's durable path: send -> commit -> ack -> fan-out to N subscribers.

Starts ``parley serve`` in a subprocess on a free port (SQLite, in-memory broker), pinned to CPU 0
when ``taskset`` exists; this process (the load generator) pins itself to CPU 1.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import msgpack
from websockets.asyncio.client import connect

from load_tests.servers import BENCH_ENV, cpu_seconds, free_port


def start_server(
    port: int,
    data_dir: Path,
    database_url: str | None,
    *,
    broker_url: str | None = None,
    core: int = 0,
    migrate: bool = True,
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PARLEY_SECRET": "bench-secret-" + "x" * 40,
        "PARLEY_FRAME_RATE": "1000000",
        "PARLEY_FRAME_BURST": "1000000",
        **BENCH_ENV,
        "PARLEY_SEND_QUEUE_FRAMES": "100000",
    }
    if database_url:
        env["PARLEY_DATABASE_URL"] = database_url
    if broker_url:
        env["PARLEY_BROKER_URL"] = broker_url
    cmd = [
        sys.executable,
        "-m",
        "parley.cli",
        "serve",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
    ]
    if not migrate:
        cmd.append("--no-migrate")
    if shutil.which("taskset"):
        cmd = ["taskset", "-c", str(core), *cmd]
    return subprocess.Popen(cmd, env=env)


def token(user: str) -> str:
    from parley.governance.auth import create_token

    return create_token("bench-secret-" + "x" * 40, user_id=user, tenant_id="bench")


async def wait_ready(base: str) -> None:
    async with httpx.AsyncClient() as h:
        for _ in range(400):
            try:
                if (await h.get(base + "/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.05)
    raise RuntimeError("server did not become ready")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(args: argparse.Namespace) -> None:
    ports = [free_port() for _ in range(args.hubs)]
    base = f"http://127.0.0.1:{ports[0]}"
    with tempfile.TemporaryDirectory() as tmp:
        database_url = args.database_url or f"sqlite+aiosqlite:///{tmp}/bench.db"
        procs = [start_server(ports[0], Path(tmp), database_url, broker_url=args.broker_url)]
        try:
            await wait_ready(base)
            for i, port in enumerate(ports[1:], start=1):
                procs.append(
                    start_server(
                        port,
                        Path(tmp),
                        database_url,
                        broker_url=args.broker_url,
                        core=i % 2,
                        migrate=False,
                    )
                )
                await wait_ready(f"http://127.0.0.1:{port}")
            async with httpx.AsyncClient(
                headers={"Authorization": f"Bearer {token('owner')}"}
            ) as h:
                sid = (await h.post(base + "/api/v1/sessions", json={"title": "bench"})).json()[
                    "id"
                ]
            await bench(ports, sid, args, [proc.pid for proc in procs])
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(30)


async def bench(ports: list[int], sid: str, args: argparse.Namespace, pids: list[int]) -> None:
    urls = [f"ws://127.0.0.1:{port}/ws?format=msgpack&token=" for port in ports]
    total = args.messages
    latencies: list[float] = []
    done = asyncio.Event()
    counts = [0] * args.subscribers

    async def subscriber(i: int, ready: asyncio.Event) -> None:
        url = urls[i % len(urls)]
        compression = "deflate" if args.compression else None
        async with connect(url + token(f"sub{i}"), max_size=None, compression=compression) as ws:
            await ws.recv()
            await ws.send(msgpack.packb({"type": "subscribe", "id": 1, "session": sid}))
            while True:
                frame = msgpack.unpackb(await ws.recv())
                if frame.get("type") == "ack":
                    break
            ready.set()
            while counts[i] < total:
                frame = msgpack.unpackb(await ws.recv())
                if frame.get("event") == "message.created":
                    counts[i] += 1
                    sent_at = frame["data"]["message"]["metadata"]["t"]
                    latencies.append(time.perf_counter() - sent_at)
            if all(c >= total for c in counts):
                done.set()

    async def publisher(p: int, n: int) -> None:
        url = urls[p % len(urls)]
        async with connect(url + token(f"pub{p}"), max_size=None, compression=None) as ws:
            await ws.recv()
            window = asyncio.Semaphore(args.window)
            acked = 0
            finished = asyncio.Event()

            async def reader() -> None:
                nonlocal acked
                while acked < n:
                    frame = msgpack.unpackb(await ws.recv())
                    if frame.get("type") in ("ack", "error"):
                        if frame["type"] == "error":
                            print("error:", frame, file=sys.stderr)
                        acked += 1
                        window.release()
                finished.set()

            task = asyncio.create_task(reader())
            body = "x" * 60
            interval = args.publishers / args.rate if args.rate else 0.0
            next_at = time.perf_counter()
            for k in range(n):
                if interval:
                    next_at += interval
                    delay = next_at - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                await window.acquire()
                await ws.send(
                    msgpack.packb(
                        {
                            "type": "send",
                            "id": k,
                            "session": sid,
                            "text": body,
                            "client_id": f"{p}-{k}",
                            "metadata": {"t": time.perf_counter()},
                        }
                    )
                )
            await finished.wait()
            await task

    readies = [asyncio.Event() for _ in range(args.subscribers)]
    subs = [asyncio.create_task(subscriber(i, readies[i])) for i in range(args.subscribers)]
    for r in readies:
        await r.wait()
    per = total // args.publishers
    cpu_before = sum(cpu_seconds(pid) for pid in pids)
    start = time.perf_counter()
    await asyncio.gather(*(publisher(p, per) for p in range(args.publishers)))
    await asyncio.wait_for(done.wait(), 120)
    elapsed = time.perf_counter() - start
    cpu = sum(cpu_seconds(pid) for pid in pids) - cpu_before
    await asyncio.gather(*subs)
    delivered = sum(counts)
    print(
        f"subscribers={args.subscribers} publishers={args.publishers} window={args.window} "
        f"rate={args.rate or 'max'} messages={total} "
        f"store={'postgres' if args.database_url else 'sqlite'} hubs={len(ports)} "
        f"broker={'redis' if args.broker_url else 'memory'}"
    )
    print(f"  committed messages/s : {total / elapsed:10.0f}")
    print(f"  delivered frames/s   : {delivered / elapsed:10.0f}")
    print(f"  server CPU per frame : {cpu / delivered * 1e6:8.2f} us ({cpu / elapsed:.0%} busy)")
    print(f"  latency p50          : {statistics.median(latencies) * 1000:8.2f} ms")
    print(f"  latency p99          : {percentile(latencies, 0.99) * 1000:8.2f} ms")
    print(f"  latency p99.9        : {percentile(latencies, 0.999) * 1000:8.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subscribers", type=int, default=10)
    parser.add_argument("--publishers", type=int, default=4)
    parser.add_argument("--window", type=int, default=16, help="sends in flight per publisher")
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument(
        "--rate", type=float, default=0.0, help="total sends per second (0: as fast as acks allow)"
    )
    parser.add_argument("--database-url", help="e.g. postgresql+asyncpg://postgres@127.0.0.1/test")
    parser.add_argument("--hubs", type=int, default=1, help="hub processes (more than 1: Redis)")
    parser.add_argument("--broker-url", help="e.g. redis://127.0.0.1:6379/0 (needed for --hubs)")
    parser.add_argument(
        "--compression",
        action="store_true",
        help="subscribers offer permessage-deflate, as browsers do",
    )
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(run(args))


if __name__ == "__main__":
    main()

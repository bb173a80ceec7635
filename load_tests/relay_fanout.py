"""The relay's cost: overhead per token, and fan-out of one long stream to many watchers.

``parley serve`` runs in a subprocess (SQLite, in-memory broker), pinned to CPU 0 when
``taskset`` exists; this process (the watchers, and the fake provider for ``openai``) pins itself
to CPU 1. Each run streams one answer of ``--tokens`` tokens, as fast as the provider can send
them, to ``W`` watchers, and reports:

* server CPU time during the generation (from /proc), per token: the relay's whole overhead per
  token (provider parsing, the stream store, coalescing, encoding, fan-out to every watcher);
* delta events published and frames delivered;
* wall time from the ask to the last watcher's ``stream.finished``, and to the first delta;
* that every watcher assembled exactly the stored answer (the client rule, ``relay/assembler``).

Providers: ``scripted`` (no HTTP: the relay alone) and ``openai`` (the official SDK reading the
fake provider's Chat Completions stream over loopback: 2,000 SSE chunks). Coalescing: the
default (40 ms / 256 bytes) and ``per-token`` (one event per token, coalescing off).

    .venv/bin/python -m load_tests.relay_fanout --tokens 2000 --watchers 1,100
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import msgpack
from tests.fakes.llm_server import FakeLLM, Reply
from websockets.asyncio.client import connect

from load_tests.quick_fanout import free_port, start_server, token, wait_ready
from parley.relay.assembler import StreamAssembler

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


async def watch(url: str, sid: str, user: str, ready: asyncio.Event, out: dict[str, Any]) -> None:
    async with connect(url + token(user), max_size=None, compression=None) as ws:
        await ws.recv()  # welcome
        await ws.send(msgpack.packb({"type": "subscribe", "id": 1, "session": sid}))
        while msgpack.unpackb(await ws.recv()).get("type") != "ack":
            pass
        ready.set()
        asm = StreamAssembler()
        frames = deltas = 0
        first: float | None = None
        while True:
            frame = msgpack.unpackb(await ws.recv())
            frames += 1
            if asm.feed(frame):
                await ws.send(msgpack.packb({"type": "streams", "session": sid}))
            name = frame.get("event")
            if name == "stream.delta":
                deltas += 1
                first = first or time.perf_counter()
            if name == "stream.finished":
                out.update(
                    finished=time.perf_counter(),
                    first=first,
                    frames=frames,
                    deltas=deltas,
                    text=asm.text(frame["data"]["stream_id"]),
                    stream=frame["data"]["stream_id"],
                    gaps=asm.gaps,
                )
                return


async def one_run(
    port: int,
    server_pid: int,
    provider: str,
    watchers: int,
    tokens: int,
    rate: float,
    llm: FakeLLM | None,
) -> dict[str, Any]:
    base = f"http://127.0.0.1:{port}/api/v1"
    url = f"ws://127.0.0.1:{port}/ws?format=msgpack&token="
    async with httpx.AsyncClient(
        base_url=base, headers={"Authorization": f"Bearer {token('owner')}"}, timeout=60
    ) as h:
        sid = (await h.post("/sessions", json={"title": "relay bench"})).json()["id"]
        body: dict[str, Any] = {"name": "bench", "provider": provider, "model": "bench-model"}
        delay = 1 / rate if rate else 0.0
        if provider == "scripted":
            body["params"] = {"tokens": tokens - 1, "token_delay": delay}  # + the label token
        else:
            assert llm is not None
            words = [f"tok{i} " for i in range(tokens)]
            llm.script(Reply(chunks=words, delay=delay))
        body["max_output_tokens"] = tokens + 10
        r = await h.post(f"/sessions/{sid}/assistants", json=body)
        assert r.status_code == 201, r.text
        await h.post(f"/sessions/{sid}/messages", json={"text": "go"})
        readies = [asyncio.Event() for _ in range(watchers)]
        results: list[dict[str, Any]] = [{} for _ in range(watchers)]
        tasks = [
            asyncio.create_task(watch(url, sid, f"w{i}", readies[i], results[i]))
            for i in range(watchers)
        ]
        for ready in readies:
            await ready.wait()
        cpu0 = cpu_seconds(server_pid)
        t0 = time.perf_counter()
        r = await h.post(f"/sessions/{sid}/assistants/bench/ask", json={})
        assert r.status_code == 202, r.text
        await asyncio.wait_for(asyncio.gather(*tasks), 300)
        cpu = cpu_seconds(server_pid) - cpu0
        items = (await h.get(f"/sessions/{sid}/messages", params={"limit": 500})).json()["items"]
        stored = next(m for m in items if m["metadata"].get("stream_id") == results[0]["stream"])
    texts = {res["text"] for res in results}
    return {
        "rate": rate,
        "provider": provider,
        "watchers": watchers,
        "tokens": tokens,
        "identical": texts == {stored["text"]},
        "gaps": sum(res["gaps"] for res in results),
        "deltas": results[0]["deltas"],
        "frames": sum(res["deltas"] for res in results),
        "wall_s": max(res["finished"] for res in results) - t0,
        "spread_ms": (
            max(res["finished"] for res in results) - min(res["finished"] for res in results)
        )
        * 1000,
        "first_ms": statistics.median((res["first"] - t0) * 1000 for res in results),
        "cpu_s": cpu,
        "cpu_us_per_token": cpu / tokens * 1e6,
    }


async def run(args: argparse.Namespace) -> None:
    if shutil.which("taskset"):
        os.sched_setaffinity(0, {1})
    counts = [int(x) for x in args.watchers.split(",")]
    rates = [float(x) for x in args.rates.split(",")]
    async with FakeLLM() as llm:
        os.environ["PARLEY_RELAY_OPENAI_BASE_URL"] = llm.openai_url
        os.environ["PARLEY_RELAY_OPENAI_API_KEY"] = "bench-key"
        for mode in args.modes.split(","):
            per_token = mode == "per-token"
            os.environ["PARLEY_RELAY_COALESCE_BYTES"] = "1" if per_token else "256"
            os.environ["PARLEY_RELAY_COALESCE_MS"] = "0" if per_token else "40"
            port = free_port()
            with tempfile.TemporaryDirectory() as tmp:
                proc = start_server(port, Path(tmp), f"sqlite+aiosqlite:///{tmp}/bench.db")
                try:
                    await wait_ready(f"http://127.0.0.1:{port}")
                    for provider in args.providers.split(","):
                        # a warm-up answer: SDK client, pooled connection, code paths
                        await one_run(port, proc.pid, provider, 1, 50, 0, llm)
                        for rate in rates:
                            for watchers in counts:
                                res = await one_run(
                                    port, proc.pid, provider, watchers, args.tokens, rate, llm
                                )
                                report(mode, res)
                finally:
                    proc.terminate()
                    proc.wait(30)


def report(mode: str, r: dict[str, Any]) -> None:
    rate = f"{r['rate']:.0f}/s" if r["rate"] else "max"
    print(
        f"{mode:9} {r['provider']:8} rate={rate:6} watchers={r['watchers']:<4} "
        f"deltas={r['deltas']:<5} delta_frames={r['frames']:<7} wall={r['wall_s']:.3f}s "
        f"first={r['first_ms']:.1f}ms spread={r['spread_ms']:.1f}ms "
        f"server_cpu={r['cpu_s']:.3f}s cpu/token={r['cpu_us_per_token']:.1f}us "
        f"identical={r['identical']} gaps={r['gaps']}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=2000)
    parser.add_argument("--watchers", default="1,100", help="comma-separated watcher counts")
    parser.add_argument("--providers", default="scripted,openai")
    parser.add_argument(
        "--rates", default="0,500", help="tokens per second the provider sends (0: at once)"
    )
    parser.add_argument("--modes", default="coalesced,per-token")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()

"""Parley load harness: scenarios run against Parley and, in the same run, against a minimal
``websockets`` broadcast server (the floor Python can reach), driven by the same clients.

Each server gets CPU 0 and the load generator (picows clients on uvloop, several worker
processes) CPU 1. Every figure is printed with the server's CPU% over the same window (from
/proc/<pid>/stat), and Parley's figure as a ratio of the baseline's, so that noise on a shared
machine mostly cancels.

Scenarios (no scenario named: the standard set, as `make bench` runs it):

  idle          connections held open and subscribed; resident memory per connection
  fanout        1 session x 1,000 subscribers, durable `send`s at saturation: delivered frames/s
  fanout-typing the same with ephemeral `typing` events: pure fan-out, no database
  sessions      1,000 sessions x 10 subscribers: publishes/s at saturation, then p50/p99/p99.9
                latency at half of that rate
  sessions-typing  the same with ephemeral `typing` events over 200 sessions: the hub's own
                path, no database
  slow-reader   one subscriber stops reading: everyone else's p99 before and during, and when
                the server cuts it off (close 4008)
  reconnect     a storm of 5,000 clients reconnecting at once with since_seq: time to resume,
                events lost or duplicated
  redis         two Parley hubs on one database and a Redis broker (Parley only)
  llm           LLM stream fan-out: a 2,000-token answer (scripted provider) to 1 and 100
                watchers, server CPU per token and per watcher (runs load_tests/relay_fanout.py)
  crdt          CRDT document merge: updates/s through the server against pycrdt's own
                apply_update rate (runs load_tests/crdt_merge.py)

Examples:

  python -m load_tests.bench                       # the standard set, one table
  python -m load_tests.bench fanout --subscribers 500
  python -m load_tests.bench sessions --servers parley --profile prof/
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import re
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from load_tests.client import ClientSpec, worker_main
from load_tests.servers import (
    BaselineServer,
    ParleyServer,
    RedisServer,
    Server,
    cpu_seconds,
    describe_machine,
)

SERVER_CPU = "0"
CLIENT_CPU = 1
STANDARD = ["idle", "fanout", "fanout-typing", "sessions", "sessions-typing", "slow-reader"]
STANDARD += ["reconnect", "redis", "llm", "crdt"]


# -- results -------------------------------------------------------------------------------


@dataclass
class Figure:
    """One measured value and the server CPU% over the window it was measured in."""

    value: float | None
    cpu: float | None = None


@dataclass
class Row:
    scenario: str
    metric: str
    unit: str
    parley: Figure
    baseline: Figure | None = None
    target: str = ""
    passed: bool | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or self.baseline.value in (None, 0) or self.parley.value is None:
            return None
        return self.parley.value / self.baseline.value


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def add(self, row: Row) -> None:
        self.rows.append(row)


def fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if unit == "%":
        return f"{value:.0f}%"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def render(report: Report) -> str:
    head = ["scenario", "metric", "parley", "baseline", "ratio", "cpu P", "cpu B", "target", ""]
    lines: list[list[str]] = []
    for r in report.rows:
        b = r.baseline
        lines.append(
            [
                r.scenario,
                f"{r.metric} ({r.unit})" if r.unit else r.metric,
                fmt(r.parley.value) if r.parley.value is not None else "n/a",
                fmt(b.value) if b is not None else "-",
                f"{r.ratio:.2f}x" if r.ratio is not None else "-",
                fmt(r.parley.cpu, "%"),
                fmt(b.cpu, "%") if b is not None else "-",
                r.target,
                {True: "PASS", False: "FAIL", None: ""}[r.passed],
            ]
        )
    widths = [max(len(x[i]) for x in [head, *lines]) for i in range(len(head))]
    right = {2, 3, 4, 5, 6}

    def row(cells: list[str]) -> str:
        return "  ".join(
            c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(cells)
        ).rstrip()

    out = [row(head), "  ".join("-" * w for w in widths)]
    out += [row(x) for x in lines]
    notes = [f"  {r.scenario} / {r.metric}: {r.note}" for r in report.rows if r.note]
    if notes:
        out += ["", "notes:", *notes]
    return "\n".join(out)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def ms(values: list[float], q: float) -> float | None:
    p = percentile(values, q)
    return None if p is None else p * 1000


# -- the load generator ----------------------------------------------------------------------


class Generator:
    """Worker processes of the load generator, each running many clients."""

    def __init__(self, workers: int, cpus: list[int] | None) -> None:
        ctx = mp.get_context("spawn")
        self.pipes = []
        self.procs = []
        for i in range(workers):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=worker_main, args=(child, i, cpus), daemon=True)
            proc.start()
            self.pipes.append(parent)
            self.procs.append(proc)

    def call(
        self,
        op: str,
        args: dict[str, Any] | list[dict[str, Any]] | None = None,
        timeout: float = 180.0,
    ) -> list[dict[str, Any]]:
        per = args if isinstance(args, list) else [args or {}] * len(self.pipes)
        for pipe, a in zip(self.pipes, per, strict=True):
            pipe.send({"op": op, "args": a})
        out = []
        for i, pipe in enumerate(self.pipes):
            if not pipe.poll(timeout):
                raise TimeoutError(f"worker {i} did not answer {op!r} in {timeout} s")
            answer = pipe.recv()
            if "error" in answer:
                raise RuntimeError(f"worker {i} failed {op!r}: {answer['error']}")
            out.append(answer)
        return out

    def setup(self, url: str, specs: list[ClientSpec], concurrency: int = 200) -> dict[str, Any]:
        n = len(self.pipes)
        answers = self.call(
            "setup",
            [{"url": url, "clients": specs[i::n], "concurrency": concurrency} for i in range(n)],
            timeout=300,
        )
        result = {
            "connected": sum(a["connected"] for a in answers),
            "failed": sum(a["failed"] for a in answers),
            "elapsed": max(a["elapsed"] for a in answers),
            "failures": [f for a in answers for f in a["failures"]][:3],
        }
        if result["failed"]:
            print(f"    ! {result['failed']} clients failed: {result['failures']}", file=sys.stderr)
        return result

    def cpu(self) -> float:
        return sum(cpu_seconds(p.pid) for p in self.procs if p.pid is not None)

    def close_clients(self) -> None:
        self.call("close")
        self.call("reset")

    def shutdown(self) -> None:
        for pipe in self.pipes:
            with suppress(OSError):
                pipe.send({"op": "quit"})
        for proc in self.procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()


@dataclass
class Window:
    frames_per_s: float
    publishes_per_s: float
    cpu: float
    gen_cpu: float  # the load generator's CPU% (all workers): near 100% means it is the limit
    latencies: list[float]
    errors: dict[str, int]
    seconds: float


def measure(server: Server, gen: Generator, seconds: float) -> Window:
    """Count delivered events and publishes over ``seconds``, with the server's CPU%."""
    c0, g0, w0 = server.cpu(), gen.cpu(), time.perf_counter()
    m0 = gen.call("mark", {"record": True})
    time.sleep(seconds)
    m1 = gen.call("mark", {"record": False})
    c1, g1, w1 = server.cpu(), gen.cpu(), time.perf_counter()
    lat = [x for a in gen.call("latencies") for x in a["latencies"]]
    errors: dict[str, int] = {}
    for a, b in zip(m0, m1, strict=True):
        for k, v in b["errors"].items():
            if v - a["errors"].get(k, 0):
                errors[k] = errors.get(k, 0) + v - a["errors"].get(k, 0)
    return Window(
        frames_per_s=sum(
            (b["frames"] - a["frames"]) / (b["t"] - a["t"]) for a, b in zip(m0, m1, strict=False)
        ),
        publishes_per_s=sum(
            (b["own"] - a["own"]) / (b["t"] - a["t"]) for a, b in zip(m0, m1, strict=False)
        ),
        cpu=(c1 - c0) / (w1 - w0) * 100,
        gen_cpu=(g1 - g0) / (w1 - w0) * 100,
        latencies=lat,
        errors=errors,
        seconds=w1 - w0,
    )


# -- scenarios -------------------------------------------------------------------------------


def src_ip(i: int) -> str:
    """Spread client sockets over 200 loopback addresses: 28k ephemeral ports each."""
    return f"127.0.1.{1 + i % 200}"


def subscriber_specs(
    server: Server,
    sessions: list[str],
    per_session: int,
    *,
    users: int = 100,
    probe_every: int = 0,
    track: bool = False,
    start: int = 0,
) -> list[ClientSpec]:
    """``per_session`` subscribers for each session, one session per connection, sharing a
    pool of ``users`` identities (a new identity costs Parley one write; a connection
    nothing more)."""
    tokens = [server.token(f"sub{u}") for u in range(users)]
    specs: list[ClientSpec] = []
    i = start
    for k in range(per_session):
        for sid in sessions:
            specs.append(
                {
                    "token": tokens[i % users],
                    "user": f"sub{i % users}",
                    "sessions": [sid],
                    "role": "sub",
                    "probe": bool(probe_every) and k % probe_every == 0,
                    "track": track,
                    "src": src_ip(i),
                }
            )
            i += 1
    return specs


def publisher_specs(
    server: Server, sessions: list[str], publishers: int, *, track: bool = False
) -> list[ClientSpec]:
    """``publishers`` connections, each its own user, sharing the sessions between them (each
    is subscribed to the sessions it publishes into, so it sees its own events come back)."""
    specs: list[ClientSpec] = []
    for p in range(publishers):
        mine = sessions[p::publishers] if len(sessions) >= publishers else sessions
        user = f"pub{p}"
        specs.append(
            {
                "token": server.token(user),
                "user": user,
                "sessions": mine,
                "role": "pub",
                "probe": True,
                "track": track,
                "src": src_ip(100_000 + p),
            }
        )
    return specs


@dataclass
class Ctx:
    args: argparse.Namespace
    gen: Generator
    report: Report

    def server(self, kind: str, scenario: str, **kw: Any) -> Server:
        if kind == "baseline":
            return BaselineServer(cpus=SERVER_CPU)  # no queue cap, one process: kw do not apply
        profile = None
        if self.args.profile:
            Path(self.args.profile).mkdir(parents=True, exist_ok=True)
            profile = Path(self.args.profile) / f"{scenario}.txt"
        return ParleyServer(
            cpus=SERVER_CPU,
            pythonpath=self.args.parley_src,
            profile_to=profile,
            profile_flags=tuple(self.args.profile_flags.split()),
            send_queue_frames=kw.pop("send_queue_frames", self.args.send_queue),
            **kw,
        )

    @property
    def kinds(self) -> list[str]:
        kinds: list[str] = self.args.servers
        return kinds


@contextmanager
def running(ctx: Ctx, kind: str, scenario: str, **kw: Any) -> Iterator[Server]:
    server = ctx.server(kind, scenario, **kw)
    try:
        yield server
    finally:
        try:
            ctx.gen.close_clients()
        finally:
            server.stop()


def log(msg: str) -> None:
    print(f"  {time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)


def scenario_idle(ctx: Ctx) -> None:
    a = ctx.args
    n, per = a.idle_connections, 100
    results: dict[str, dict[str, Figure]] = {}
    for kind in ctx.kinds:
        with running(ctx, kind, "idle") as server:
            sessions = server.create_sessions(max(1, n // per))
            # Warm up: one connection, so first-use allocations are not counted per connection.
            warm = subscriber_specs(server, sessions[:1], 1, users=1)
            ctx.gen.setup(server.ws_url(), warm)
            time.sleep(0.5)
            rss0 = server.rss()
            specs = subscriber_specs(server, sessions, per, start=1)[:n]
            c0, w0 = server.cpu(), time.perf_counter()
            setup = ctx.gen.setup(server.ws_url(), specs, concurrency=a.connect_concurrency)
            connect_cpu = (server.cpu() - c0) / (time.perf_counter() - w0) * 100
            time.sleep(1.0)
            held = sum(x["open"] for x in ctx.gen.call("status"))
            c1, w1 = server.cpu(), time.perf_counter()
            time.sleep(3.0)
            idle_cpu = (server.cpu() - c1) / (time.perf_counter() - w1) * 100
            rss1 = server.rss()
            per_conn = (rss1 - rss0) / max(1, setup["connected"]) / 1024
            log(
                f"idle {kind}: {held} held, {per_conn:.1f} KB/conn, "
                f"{setup['connected'] / setup['elapsed']:.0f} conn/s, rss {rss1 / 2**20:.0f} MiB"
            )
            results[kind] = {
                "held": Figure(held - 1, idle_cpu),
                "rss": Figure(per_conn, idle_cpu),
                "rate": Figure(setup["connected"] / setup["elapsed"], connect_cpu),
                "total": Figure(rss1 / 2**20, idle_cpu),
            }
    p, b = results.get("parley"), results.get("baseline")
    if p is None:
        return
    ctx.report.add(
        Row(
            "idle",
            "connections held, subscribed",
            "",
            p["held"],
            b["held"] if b else None,
            f">= {n:,}",
            p["held"].value is not None and p["held"].value >= n,
        )
    )
    ctx.report.add(
        Row(
            "idle",
            "resident memory per connection",
            "KB",
            p["rss"],
            b["rss"] if b else None,
            "<= 32 KB",
            p["rss"].value is not None and p["rss"].value <= 32,
        )
    )
    ctx.report.add(
        Row("idle", "connect + subscribe rate", "conn/s", p["rate"], b["rate"] if b else None)
    )


def _fanout_once(ctx: Ctx, server: Server, kind: str, subscribers: int) -> Window:
    a = ctx.args
    sid = server.create_sessions(1)
    pubs = publisher_specs(server, sid, a.publishers)
    subs = subscriber_specs(server, sid, subscribers - len(pubs), probe_every=10**9)
    for spec in subs:
        if not spec["probe"] and a.lowat:
            spec["lowat"] = a.lowat
    ctx.gen.setup(server.ws_url(), subs)
    ctx.gen.setup(server.ws_url(), pubs)  # publishers last: their own events come back last
    ctx.gen.call("publish", {"kind": kind, "mode": "closed", "window": a.window})
    time.sleep(a.warmup)
    w = measure(server, ctx.gen, a.duration)
    ctx.gen.call("stop")
    status = ctx.gen.call("status")
    closed = {k: v for s in status for k, v in s["closed"].items()}
    if closed or w.errors:
        log(f"    closed connections {closed}, errors {w.errors}")
    return w


def scenario_fanout(ctx: Ctx, kind: str = "message") -> None:
    a = ctx.args
    name = "fanout" if kind == "message" else "fanout-typing"
    n = a.subscribers
    results: dict[str, Window] = {}
    for server_kind in ctx.kinds:
        with running(ctx, server_kind, name) as server:
            w = _fanout_once(ctx, server, kind, n)
            results[server_kind] = w
            log(
                f"{name} {server_kind}: {w.frames_per_s:,.0f} frames/s, "
                f"{w.publishes_per_s:,.0f} publishes/s, cpu {w.cpu:.0f}% "
                f"(generator {w.gen_cpu:.0f}%), "
                f"p50 {ms(w.latencies, 0.5) or 0:.1f} ms p99 {ms(w.latencies, 0.99) or 0:.1f} ms"
            )
    p, b = results.get("parley"), results.get("baseline")
    if p is None:
        return
    what = "durable send" if kind == "message" else "typing (ephemeral)"
    row = Row(
        name,
        f"1 x {n:,} {what}: delivered",
        "frames/s",
        Figure(p.frames_per_s, p.cpu),
        Figure(b.frames_per_s, b.cpu) if b else None,
        ">= 0.6x base",
    )
    row.passed = row.ratio >= 0.6 if row.ratio is not None else None
    ctx.report.add(row)
    ctx.report.add(
        Row(
            name,
            "publishes/s at saturation",
            "pub/s",
            Figure(p.publishes_per_s, p.cpu),
            Figure(b.publishes_per_s, b.cpu) if b else None,
        )
    )


def scenario_sessions(ctx: Ctx, kind: str | None = None) -> None:
    """M sessions x N subscribers: saturation, then latency at half of it. ``kind`` typing
    ("sessions-typing") publishes ephemeral events: the hub's own path, without storage."""
    a = ctx.args
    name = "sessions" if kind is None else f"sessions-{kind}"
    kind = kind or a.kind
    m = a.sessions if name == "sessions" else a.typing_sessions
    n = a.session_subscribers
    sat: dict[str, Window] = {}
    half: dict[str, Window] = {}
    rate = a.rate
    for server_kind in ctx.kinds:
        with running(ctx, server_kind, name) as server:
            sessions = server.create_sessions(m)
            pubs = publisher_specs(server, sessions, a.session_publishers)
            subs = subscriber_specs(server, sessions, n - 1, probe_every=n)
            for spec in subs:
                if not spec["probe"] and a.lowat:
                    spec["lowat"] = a.lowat
            setup = ctx.gen.setup(server.ws_url(), subs, concurrency=a.connect_concurrency)
            ctx.gen.setup(server.ws_url(), pubs)
            ctx.gen.call("prime", timeout=120)
            log(
                f"{name} {server_kind}: {setup['connected']} subscribers in "
                f"{setup['elapsed']:.1f}s, primed"
            )
            if kind == "message":
                # Acked sends: a window of them in flight per publisher finds the saturation.
                load = {"kind": kind, "mode": "closed", "window": a.window}
            else:
                # Typing has no ack, and a window waiting for each event to come back left
                # both servers half idle: offer the target rate instead and count what is done.
                load = {"kind": kind, "mode": "rate", "rate": 8000 / len(ctx.gen.pipes)}
            ctx.gen.call("publish", load)
            time.sleep(a.warmup)
            w = measure(server, ctx.gen, a.duration)
            ctx.gen.call("stop", {"drain": 5.0})
            sat[server_kind] = w
            if not rate:
                rate = w.publishes_per_s / 2
            time.sleep(0.5)
            per = rate / len(ctx.gen.pipes)
            ctx.gen.call("publish", {"kind": kind, "mode": "rate", "rate": per})
            time.sleep(a.warmup)
            h = measure(server, ctx.gen, a.duration)
            ctx.gen.call("stop", {"drain": 5.0})
            half[server_kind] = h
            closed = {k: v for st in ctx.gen.call("status") for k, v in st["closed"].items()}
            if closed:
                log(f"    ! connections closed during the run: {closed}")
            log(
                f"{name} {server_kind}: saturation {w.publishes_per_s:,.0f} publishes/s "
                f"({w.frames_per_s:,.0f} frames/s counted, cpu {w.cpu:.0f}%, generator "
                f"{w.gen_cpu:.0f}%); at {rate:,.0f}/s: {h.publishes_per_s:,.0f}/s p50 "
                f"{ms(h.latencies, 0.5) or 0:.2f} ms p99 {ms(h.latencies, 0.99) or 0:.2f} ms "
                f"cpu {h.cpu:.0f}% (generator {h.gen_cpu:.0f}%)"
            )
            if w.errors or h.errors:
                log(f"    errors: {w.errors} {h.errors}")
    p, b = sat.get("parley"), sat.get("baseline")
    ph, bh = half.get("parley"), half.get("baseline")
    if p is None or ph is None:
        return
    label = f"{m:,} x {n}" + ("" if kind == "message" else f" {kind} (no storage)")
    ctx.report.add(
        Row(
            name,
            f"{label}: publishes/s at saturation",
            "pub/s",
            Figure(p.publishes_per_s, p.cpu),
            Figure(b.publishes_per_s, b.cpu) if b else None,
            ">= 8,000",
            p.publishes_per_s >= 8000,
        )
    )
    # Every publish reaches all N subscribers of its session (none is cut off: checked in the
    # log); counting them at the clients is exact only up to SO_RCVLOWAT batches per window.
    ctx.report.add(
        Row(
            name,
            f"{label}: delivered at saturation",
            "frames/s",
            Figure(p.publishes_per_s * n, p.cpu),
            Figure(b.publishes_per_s * n, b.cpu) if b else None,
            ">= 80,000",
            p.publishes_per_s * n >= 80000,
        )
    )
    for q, target, limit in ((0.5, "<= 2 ms", 2.0), (0.99, "<= 10 ms", 10.0), (0.999, "", None)):
        pv = ms(ph.latencies, q)
        ctx.report.add(
            Row(
                name,
                f"p{q * 100:g} at {rate:,.0f} pub/s (half sat.)",
                "ms",
                Figure(pv, ph.cpu),
                Figure(ms(bh.latencies, q), bh.cpu) if bh else None,
                target,
                None if limit is None or pv is None else pv <= limit,
            )
        )


SLOW_SRC = "127.0.2.1"  # the stalled reader's own source address, to find its socket with ss


def kernel_send_queue(peer: str) -> int | None:
    """Bytes the kernel holds unsent on the server's side of connections to ``peer``."""
    import shutil
    import subprocess

    if shutil.which("ss") is None:
        return None
    out = subprocess.run(
        ["ss", "-tnH", "dst", peer], capture_output=True, text=True, check=False
    ).stdout
    total = 0
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[2].isdigit():
            total += int(parts[2])
    return total


def scenario_slow_reader(ctx: Ctx) -> None:
    a = ctx.args
    out: dict[str, dict[str, Any]] = {}
    for server_kind in ctx.kinds:
        with running(ctx, server_kind, "slow-reader", send_queue_frames=a.slow_queue) as server:
            sid = server.create_sessions(1)
            pubs = publisher_specs(server, sid, 2)
            subs = subscriber_specs(server, sid, a.slow_subscribers, probe_every=10)
            slow: ClientSpec = {
                "token": server.token("slowpoke"),
                "user": "slowpoke",
                "sessions": sid,
                "role": "slow",
                "rcvbuf": 4096,
                "src": SLOW_SRC,
            }
            ctx.gen.setup(server.ws_url(), [*subs, slow])
            ctx.gen.setup(server.ws_url(), pubs)
            per = a.slow_rate / len(ctx.gen.pipes)
            ctx.gen.call("publish", {"kind": "message", "mode": "rate", "rate": per})
            time.sleep(a.warmup)
            before = measure(server, ctx.gen, a.duration)
            # Stall the reader and measure everyone else until the server cuts it off.
            cut0 = server.metric("parley_disconnects_total", 'code="4008"') or 0.0
            ctx.gen.call("stall", {"stalled": True})
            stalled_at = time.perf_counter()
            c0 = server.cpu()
            ctx.gen.call("mark", {"record": True})
            cut_after = None
            limit = a.slow_timeout if server_kind == "parley" else a.duration
            while time.perf_counter() - stalled_at < limit:
                time.sleep(0.2)
                now = server.metric("parley_disconnects_total", 'code="4008"')
                if now is not None and now > cut0 and cut_after is None:
                    cut_after = time.perf_counter() - stalled_at
                if cut_after is not None and time.perf_counter() - stalled_at >= max(
                    a.duration, cut_after + 1.0
                ):
                    break
            ctx.gen.call("mark", {"record": False})
            during_cpu = (server.cpu() - c0) / (time.perf_counter() - stalled_at) * 100
            buffered = kernel_send_queue(SLOW_SRC)
            during = [x for r in ctx.gen.call("latencies") for x in r["latencies"]]
            ctx.gen.call("stall", {"stalled": False})
            time.sleep(2.0)
            codes = [c for s in ctx.gen.call("status") for c in s["slow_close_codes"]]
            ctx.gen.call("stop")
            p99a, p99b = ms(before.latencies, 0.99), ms(during, 0.99)
            out[server_kind] = {
                "before": Figure(p99a, before.cpu),
                "during": Figure(p99b, during_cpu),
                "increase": Figure(
                    (p99b / p99a - 1) * 100 if p99a and p99b is not None else None, during_cpu
                ),
                "cut": Figure(cut_after, during_cpu),
                "codes": codes,
                "buffered": buffered,
                "stalled_for": limit if cut_after is None else cut_after,
            }
            log(
                f"slow-reader {server_kind}: p99 {p99a or 0:.2f} -> {p99b or 0:.2f} ms, "
                f"cut off after {cut_after} s, slow client close code {codes}, "
                f"{(buffered or 0) / 1024:.0f} KiB unsent in the server's kernel buffer"
            )
    p, b = out.get("parley"), out.get("baseline")
    if p is None:
        return
    label = f"1 x {a.slow_subscribers} at {a.slow_rate:,.0f} pub/s"
    ctx.report.add(
        Row("slow-reader", f"{label}: p99 before", "ms", p["before"], b["before"] if b else None)
    )
    ctx.report.add(
        Row(
            "slow-reader",
            "p99 while one reader is stalled",
            "ms",
            p["during"],
            b["during"] if b else None,
        )
    )
    inc = p["increase"].value
    ctx.report.add(
        Row(
            "slow-reader",
            "p99 increase for the others",
            "%",
            p["increase"],
            b["increase"] if b else None,
            "<= 20%",
            None if inc is None else inc <= 20,
        )
    )
    code_ok = 4008 in p["codes"]
    why = ""
    if not code_ok:
        why = (
            f"not cut off within {p['stalled_for']:.0f} s (close code {p['codes']}); "
            f"{(p['buffered'] or 0) / 1024:.0f} KiB sat in the server's kernel send buffer, "
            "which the frame cap does not count"
        )
    ctx.report.add(
        Row(
            "slow-reader",
            "stalled reader cut off (4008) after",
            "s",
            p["cut"],
            Figure(None, b["cut"].cpu) if b else None,
            "4008 at queue cap",
            p["cut"].value is not None and code_ok,
            note=why,
        )
    )


def scenario_reconnect(ctx: Ctx) -> None:
    a = ctx.args
    n = a.storm_clients
    per = 100
    out: dict[str, dict[str, Any]] = {}
    for server_kind in ctx.kinds:
        with running(ctx, server_kind, "reconnect") as server:
            sessions = server.create_sessions(max(1, n // per))
            subs = subscriber_specs(server, sessions, per, track=True)[:n]
            pubs = publisher_specs(server, sessions, 5, track=True)
            ctx.gen.setup(server.ws_url(), subs, concurrency=a.connect_concurrency)
            ctx.gen.setup(server.ws_url(), pubs)
            ctx.gen.call("publish", {"kind": "message", "mode": "rate", "rate": a.storm_rate / 2})
            time.sleep(2.0)
            ctx.gen.call("drop")
            time.sleep(1.0)  # events published meanwhile must come back by replay
            c0, w0 = server.cpu(), time.perf_counter()
            deadline = a.storm_deadline
            answers = ctx.gen.call(
                "reconnect", {"timeout": deadline, "deadline": deadline}, timeout=deadline + 90
            )
            cpu = (server.cpu() - c0) / (time.perf_counter() - w0) * 100
            times = [t for r in answers for t in r["times"]]
            failed = sum(r["failed"] for r in answers)
            time.sleep(2.0)
            ctx.gen.call("stop", {"drain": 5.0})
            time.sleep(1.0)
            # Nothing is published any more: wait until every client has caught up (or not).
            settle_deadline = time.perf_counter() + 5.0
            stored = server.last_seqs(sessions)  # the truth, where the server keeps it
            while True:
                pos = ctx.gen.call("positions")
                last: dict[str, int] = dict(stored or {})
                for r in pos:
                    for p_ in r["positions"]:
                        for s, q in p_.items():
                            last[s] = max(last.get(s, 0), q)
                behind = sum(
                    1 for r in pos for p_ in r["positions"] for s, q in p_.items() if q < last[s]
                )
                if not behind or time.perf_counter() > settle_deadline:
                    break
                time.sleep(0.5)
            gaps = sum(r["gaps"] for r in pos)
            dups = sum(r["dups"] for r in pos)
            if failed:
                examples = [f for r in answers for f in r["failures"]][:2]
                log(f"    ! reconnect failures, e.g. {examples}")
            if behind:
                lag = sorted(
                    last[s] - q
                    for r in pos
                    for p_ in r["positions"]
                    for s, q in p_.items()
                    if q < last[s]
                )
                log(f"    ! {behind} subscriptions behind the session's last seq by {lag[:10]}")
            resumed = max(times) if times and not failed else None
            out[server_kind] = {
                "time": Figure(resumed, cpu),
                "p50": Figure(percentile(times, 0.5), cpu),
                "bad": Figure(float(behind + gaps + dups + failed), cpu),
                "detail": f"{len(times)} resumed, {failed} failed, {behind} behind, "
                f"{gaps} gaps, {dups} duplicates",
            }
            log(
                f"reconnect {server_kind}: all resumed in {resumed} s; {out[server_kind]['detail']}"
            )
    p, b = out.get("parley"), out.get("baseline")
    if p is None:
        return
    t = p["time"].value
    ctx.report.add(
        Row(
            "reconnect",
            f"{n:,} clients resume (since_seq): all done",
            "s",
            p["time"],
            b["time"] if b else None,
            "<= 10 s",
            t is not None and t <= 10,
        )
    )
    ctx.report.add(
        Row("reconnect", "median client resumed after", "s", p["p50"], b["p50"] if b else None)
    )
    ctx.report.add(
        Row(
            "reconnect",
            "events lost or duplicated, failures",
            "",
            p["bad"],
            b["bad"] if b else None,
            "0",
            p["bad"].value == 0,
            note=p["detail"] if p["bad"].value else "",
        )
    )


def redis_available() -> str | None:
    """Why the two-hub scenario cannot run here, or None when it can."""
    import importlib.util
    import shutil

    if importlib.util.find_spec("parley.broker.redis") is None:
        return "not available yet (no Redis broker in parley)"
    if importlib.util.find_spec("redis") is None:
        return "not available yet (redis package not installed)"
    if shutil.which("redis-server") is None:
        return "not available here (no redis-server)"
    return None


def scenario_redis(ctx: Ctx) -> None:
    a = ctx.args
    why = redis_available()
    if why is not None:
        ctx.report.add(Row("redis", "2 hubs on Redis", "", Figure(None), note=why))
        return
    if "parley" not in ctx.kinds:
        return
    redis = RedisServer(cpus=str(CLIENT_CPU))
    try:
        with running(ctx, "parley", "redis", hubs=2, broker_url=redis.url) as server:
            sessions = server.create_sessions(a.redis_sessions)
            subs = subscriber_specs(server, sessions, a.redis_subscribers - 1, probe_every=2)
            pubs = publisher_specs(server, sessions, a.session_publishers)
            for i, spec in enumerate(subs):
                spec["url"] = server.ws_url(i)  # alternate hubs: events cross Redis
            for i, spec in enumerate(pubs):
                spec["url"] = server.ws_url(i + 1)
            ctx.gen.setup(server.ws_url(), subs, concurrency=a.connect_concurrency)
            ctx.gen.setup(server.ws_url(), pubs)
            ctx.gen.call("prime", timeout=120)
            per = a.redis_rate / len(ctx.gen.pipes)
            windows: dict[str, Window] = {}
            # Typing first (the same hubs and clients, without the database), then durable
            # sends: what the database cannot take queues up and would delay anything after.
            for kind in ("typing", "message"):
                ctx.gen.call("publish", {"kind": kind, "mode": "rate", "rate": per})
                time.sleep(a.warmup)
                w = windows[kind] = measure(server, ctx.gen, a.duration)
                ctx.gen.call("stop", {"drain": 5.0})
                log(
                    f"redis {kind}: {w.publishes_per_s:,.0f} publishes/s, p99 "
                    f"{ms(w.latencies, 0.99) or 0:.1f} ms, hubs cpu {w.cpu:.0f}% (of one core)"
                )
    finally:
        redis.stop()
    label = f"2 hubs, {a.redis_sessions} x {a.redis_subscribers} at {a.redis_rate:,.0f}/s"
    for kind in ("message", "typing"):
        w = windows[kind]
        what = "" if kind == "message" else " typing (no storage)"
        ctx.report.add(
            Row(
                "redis",
                f"{label}{what}: publishes/s",
                "pub/s",
                Figure(w.publishes_per_s, w.cpu),
                None,
                f">= {a.redis_rate:,.0f}",
                w.publishes_per_s >= 0.98 * a.redis_rate,
            )
        )
        p99 = ms(w.latencies, 0.99)
        ctx.report.add(
            Row(
                "redis",
                f"p99 publish to delivery{what}",
                "ms",
                Figure(p99, w.cpu),
                None,
                "<= 20 ms",
                None if p99 is None else p99 <= 20,
            )
        )


def run_script(ctx: Ctx, module: str, *args: str, timeout: float = 240) -> str:
    """Run one of the stand-alone load scripts (it starts its own server, pinned as the
    harness pins it) against the same Parley source, and return what it printed."""
    env = dict(os.environ)
    if ctx.args.parley_src:
        env["PYTHONPATH"] = ctx.args.parley_src + os.pathsep + env.get("PYTHONPATH", "")
    done = subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{module} failed ({done.returncode}): {done.stderr[-800:]}")
    return done.stdout


def scenario_llm(ctx: Ctx) -> None:
    """One answer of ``--llm-tokens`` tokens from the scripted provider (no HTTP), coalesced as
    configured by default, to 1 and to ``--llm-watchers`` watchers: server CPU per token, and
    per token and watcher from the difference of the two runs."""
    a = ctx.args
    out = run_script(
        ctx,
        "load_tests.relay_fanout",
        f"--tokens={a.llm_tokens}",
        f"--watchers=1,{a.llm_watchers}",
        "--providers=scripted",
        "--rates=0",
        "--modes=coalesced",
    )
    runs = {
        int(m["w"]): m
        for m in re.finditer(
            r"watchers=(?P<w>\d+).*?cpu/token=(?P<per>[\d.]+)us "
            r"identical=(?P<same>\w+) gaps=(?P<gaps>\d+)",
            out,
        )
    }
    one, many = runs.get(1), runs.get(a.llm_watchers)
    if one is None or many is None:
        raise RuntimeError(f"unexpected relay_fanout output: {out[-400:]}")
    log(f"llm: {out.strip()}")
    base = float(one["per"])
    per_watcher = (float(many["per"]) - base) / max(1, a.llm_watchers - 1)
    ctx.report.add(
        Row(
            "llm",
            f"{a.llm_tokens:,} tokens to 1 watcher: CPU per token",
            "us",
            Figure(base),
            target="<= 50 us",
            passed=base <= 50,
        )
    )
    ctx.report.add(
        Row(
            "llm",
            f"to {a.llm_watchers} watchers: CPU per token per watcher",
            "us",
            Figure(per_watcher),
            target="<= 8 us",
            passed=per_watcher <= 8,
        )
    )
    intact = many["same"] == "True" and many["gaps"] == "0"
    ctx.report.add(
        Row(
            "llm",
            "every watcher assembled the stored answer",
            "",
            Figure(1.0 if intact else 0.0),
            target="yes",
            passed=intact,
            note="" if intact else f"identical={many['same']} gaps={many['gaps']}",
        )
    )


def scenario_crdt(ctx: Ctx) -> None:
    """``--crdt-writers`` y-websocket clients insert into one document as fast as the socket
    takes it; merged updates/s through the server (checked, applied, relayed, stored) against
    pycrdt's own ``apply_update`` rate for the same updates, pinned to the server's core."""
    a = ctx.args
    out = run_script(
        ctx,
        "load_tests.crdt_merge",
        f"--writers={a.crdt_writers}",
        f"--updates={a.crdt_updates}",
        "--edits=0",
        "--raw",
        "--floor",
    )
    raw = re.search(r"raw: \d+ updates: ([\d,]+) apply_update/s", out)
    merged = re.search(r"^merge: .*?([\d,]+) merged updates/s", out, re.MULTILINE)
    floor = re.search(r"^floor, merged relays: .*?([\d,]+) merged updates/s", out, re.MULTILINE)
    if raw is None or merged is None:
        raise RuntimeError(f"unexpected crdt_merge output: {out[-400:]}")
    log(f"crdt: {out.strip()}")
    raw_rate = float(raw[1].replace(",", ""))
    rate = float(merged[1].replace(",", ""))
    ctx.report.add(
        Row(
            "crdt",
            f"{a.crdt_writers} writers, one document: merged updates/s (baseline: raw pycrdt)",
            "upd/s",
            Figure(rate),
            Figure(raw_rate),
            ">= 0.35x raw",
            rate >= 0.35 * raw_rate,
        )
    )
    if floor is not None:
        # What a Python server reaches for this workload: apply and relay (merged per loop
        # iteration, as Parley relays), no checks, no storage (load_tests/crdt_floor_server.py).
        ctx.report.add(
            Row(
                "crdt",
                "the same against a bare apply-and-relay server (the floor), vs raw pycrdt",
                "upd/s",
                Figure(float(floor[1].replace(",", ""))),
                Figure(raw_rate),
            )
        )


SCENARIOS: dict[str, Callable[[Ctx], None]] = {
    "idle": scenario_idle,
    "fanout": scenario_fanout,
    "fanout-typing": lambda ctx: scenario_fanout(ctx, "typing"),
    "sessions": scenario_sessions,
    "sessions-typing": lambda ctx: scenario_sessions(ctx, "typing"),
    "slow-reader": scenario_slow_reader,
    "reconnect": scenario_reconnect,
    "redis": scenario_redis,
    "llm": scenario_llm,
    "crdt": scenario_crdt,
}


# -- command line ----------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m load_tests.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "scenarios",
        nargs="*",
        metavar="SCENARIO",
        help=f"scenarios to run, in order (default: {' '.join(STANDARD)})",
    )
    g = p.add_argument_group("run")
    g.add_argument(
        "--servers",
        default="parley,baseline",
        help="servers to measure, comma-separated (default: parley,baseline)",
    )
    g.add_argument("--workers", type=int, default=2, help="load generator processes (default 2)")
    g.add_argument("--duration", type=float, default=3.0, help="seconds per measurement window")
    g.add_argument("--warmup", type=float, default=0.5, help="seconds before each window")
    g.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    g.add_argument(
        "--parley-src",
        metavar="DIR",
        help="run Parley from this source folder (its server/ folder) instead of the installed one",
    )
    g.add_argument(
        "--profile",
        metavar="DIR",
        help="record each Parley server with py-spy into DIR/<scenario>-hub<N>.txt (raw stacks)",
    )
    g.add_argument(
        "--profile-flags",
        default="",
        metavar="FLAGS",
        help='extra py-spy flags, e.g. "--gil" (only the thread holding the GIL) or "--native"',
    )
    g.add_argument(
        "--send-queue",
        type=int,
        default=2048,
        help="PARLEY_SEND_QUEUE_FRAMES for Parley (default 2048, its default)",
    )
    g.add_argument(
        "--lowat",
        type=int,
        default=4096,
        help="SO_RCVLOWAT of count-only subscribers at saturation (0: off); lets the generator "
        "read several frames per wake-up so it stays cheaper per frame than the server",
    )
    g.add_argument(
        "--connect-concurrency", type=int, default=200, help="handshakes in flight per worker"
    )
    s = p.add_argument_group("scenario sizes")
    s.add_argument("--idle-connections", type=int, default=10_000)
    s.add_argument(
        "--subscribers", type=int, default=1000, help="fanout: subscribers of the session"
    )
    s.add_argument("--publishers", type=int, default=4, help="fanout: publisher connections")
    s.add_argument(
        "--window", type=int, default=8, help="events in flight per publisher at saturation"
    )
    s.add_argument("--sessions", type=int, default=1000, help="sessions: number of sessions (M)")
    s.add_argument(
        "--session-subscribers", type=int, default=10, help="sessions: subscribers each (N)"
    )
    s.add_argument(
        "--session-publishers", type=int, default=50, help="sessions: publisher connections"
    )
    s.add_argument(
        "--typing-sessions",
        type=int,
        default=200,
        help="sessions-typing: number of sessions (fewer than M: the run is about the hub's "
        "path, and a closed window over 1,000 sessions does not saturate it)",
    )
    s.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="sessions: fixed publish rate (default: half of saturation)",
    )
    s.add_argument(
        "--kind",
        choices=["message", "typing"],
        default="message",
        help="sessions: what is published",
    )
    s.add_argument("--slow-subscribers", type=int, default=100)
    s.add_argument("--slow-rate", type=float, default=100.0, help="slow-reader: publishes/s")
    s.add_argument(
        "--slow-queue",
        type=int,
        default=256,
        help="slow-reader: PARLEY_SEND_QUEUE_FRAMES, so the cap is reached within seconds",
    )
    s.add_argument(
        "--slow-timeout", type=float, default=10.0, help="slow-reader: longest wait for the cut-off"
    )
    s.add_argument("--storm-clients", type=int, default=5000)
    s.add_argument(
        "--storm-rate", type=float, default=200.0, help="reconnect: publishes/s meanwhile"
    )
    s.add_argument(
        "--storm-deadline",
        type=float,
        default=20.0,
        help="reconnect: seconds after which a client not resumed counts as failed (twice the "
        "target, so the table says how far off it is)",
    )
    s.add_argument("--redis-sessions", type=int, default=100)
    s.add_argument("--redis-subscribers", type=int, default=10)
    s.add_argument("--redis-rate", type=float, default=5000.0)
    s.add_argument("--llm-tokens", type=int, default=2000)
    s.add_argument("--llm-watchers", type=int, default=100)
    s.add_argument("--crdt-writers", type=int, default=4)
    s.add_argument("--crdt-updates", type=int, default=1500, help="crdt: per writer")
    args = p.parse_args(argv)
    args.servers = [x.strip() for x in args.servers.split(",") if x.strip()]
    unknown = [x for x in args.servers if x not in ("parley", "baseline")]
    if unknown:
        p.error(f"unknown server {unknown[0]!r}; use parley and/or baseline")
    args.scenarios = args.scenarios or STANDARD
    for name in args.scenarios:
        if name not in SCENARIOS:
            p.error(f"unknown scenario {name!r}; choose from {', '.join(SCENARIOS)}")
    if args.parley_src:
        args.parley_src = str(Path(args.parley_src).resolve())
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    multi = (os.cpu_count() or 1) > 1
    global SERVER_CPU
    if not multi:
        SERVER_CPU = None  # type: ignore[assignment]
    elif hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {CLIENT_CPU})
    machine = describe_machine()
    print(
        f"machine: {machine['cores']} cores ({machine['cpu']}), {machine['memory_mib']:,} MiB, "
        f"Linux {machine['kernel']}, Python {machine['python']}; server on CPU {SERVER_CPU}, "
        f"load generator ({args.workers} processes) on CPU {CLIENT_CPU if multi else 'any'}",
        file=sys.stderr,
    )
    started = time.perf_counter()
    gen = Generator(args.workers, [CLIENT_CPU] if multi else None)
    report = Report(details={"machine": machine, "argv": sys.argv[1:]})
    ctx = Ctx(args, gen, report)
    failed = False
    try:
        for name in args.scenarios:
            log(f"scenario {name}")
            try:
                SCENARIOS[name](ctx)
            except Exception as exc:
                failed = True
                traceback.print_exc()
                report.add(Row(name, "scenario failed", "", Figure(None), note=repr(exc)[:160]))
    finally:
        gen.shutdown()
    elapsed = time.perf_counter() - started
    print()
    print(render(report))
    print(
        f"\n({elapsed:.0f} s; ratio = Parley / baseline; cpu P / cpu B = server CPU% "
        "of one core over the same window)"
    )
    if args.json:
        data = {
            "machine": machine,
            "argv": sys.argv[1:],
            "elapsed": elapsed,
            "rows": [{**asdict(r), "ratio": r.ratio} for r in report.rows],
        }
        Path(args.json).write_text(json.dumps(data, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

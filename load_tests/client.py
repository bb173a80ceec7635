"""The load generator's worker: many picows WebSocket clients on one uvloop event loop.

A worker is a process driven by the coordinator (``load_tests.bench``) over a pipe: it is told
which clients to open (token, sessions, role), then to publish, mark measurement windows,
stall a reader, drop and reconnect everyone, and report. Replies are plain dicts.

Why picows: a Python server that fans out 200k frames/s needs a client that receives them on
one core without becoming the bottleneck. picows parses frames in Cython and hands each one to
``on_ws_frame`` without an await; a pure subscriber only counts its frames, and only probes
(publishers, one subscriber per session, clients checking ``seq``) decode them with msgpack.

Clocks: publish-to-delivery latency compares ``time.perf_counter()`` values taken in different
worker processes. On Linux that is CLOCK_MONOTONIC, which is the same clock machine-wide.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from multiprocessing.connection import Connection as Pipe
from typing import Any, TypedDict

import msgpack
from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

BINARY = WSMsgType.BINARY
CLOSE = WSMsgType.CLOSE
PAYLOAD = "x" * 100  # message text: the 100-byte payload
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)

_pack = msgpack.packb
_unpack = msgpack.unpackb
_now = time.perf_counter


class ClientSpec(TypedDict, total=False):
    """One client as the coordinator describes it."""

    token: str  # bearer token (the baseline ignores it)
    user: str  # the user id inside the token: recognises the client's own events
    sessions: list[str]  # sessions to subscribe to (publishers also publish into them)
    role: str  # "sub" | "pub" | "slow"
    probe: bool  # decode frames and record latency
    track: bool  # decode frames and check that durable seqs arrive gap-free, once each
    src: str  # source address in 127.0.0.0/8 (spreads ephemeral ports over addresses)
    rcvbuf: int  # SO_RCVBUF for the socket (small for a slow reader: fills up fast)
    lowat: int  # SO_RCVLOWAT: wake the reader only once this many bytes wait (count-only)
    url: str  # the hub to connect to, ending where the token goes (default: the worker's)


class Stats:
    """Counters shared by every client of the worker."""

    __slots__ = ("acks", "dups", "errors", "frames", "gaps", "latencies", "own", "recording")

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.frames = 0  # events delivered to clients of this worker
        self.own = 0  # publishers' own events seen back (= publishes that completed the trip)
        self.acks = 0  # acks for sends
        self.errors: dict[str, int] = {}
        self.gaps = 0
        self.dups = 0
        self.latencies: list[float] = []
        self.recording = False


class BenchClient(WSListener):
    """One WebSocket client. Frames are handled inside ``on_ws_frame``, without awaits."""

    def __init__(self, worker: Worker, spec: ClientSpec) -> None:
        super().__init__()
        self.worker = worker
        self.stats = worker.stats
        self.spec = spec
        self.user = spec.get("user", "")
        self.sessions = spec.get("sessions", [])
        self.is_pub = spec.get("role") == "pub"
        self.probe = bool(spec.get("probe")) or self.is_pub
        self.track = bool(spec.get("track"))
        self.decode = True  # during setup every client decodes (welcome, acks)
        self.transport: WSTransport | None = None
        loop = asyncio.get_running_loop()
        self.welcome: asyncio.Future[dict[str, Any]] = loop.create_future()
        self.waiting: dict[Any, asyncio.Future[dict[str, Any]]] = {}
        self.closed: asyncio.Future[int | None] = loop.create_future()
        self.close_code: int | None = None
        # seq tracking: the next durable seq expected per session (None: not known yet)
        self.next_seq: dict[str, int | None] = {}
        # publishing
        self.kind = "message"
        self.sent = 0
        self.inflight = 0
        self.rr = 0
        self.typing_sent: dict[str, deque[float]] = {s: deque() for s in self.sessions}

    # -- picows callbacks -------------------------------------------------------------------

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        mtype = frame.msg_type
        if mtype == BINARY:
            if self.decode:
                self.handle(_unpack(frame.get_payload_as_bytes()))
            else:
                self.stats.frames += 1
        elif mtype == CLOSE:
            payload = frame.get_payload_as_bytes()
            self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            transport.send_close(WSCloseCode.OK)
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if not self.closed.done():
            self.closed.set_result(self.close_code)
        for fut in [self.welcome, *self.waiting.values()]:
            if not fut.done():
                fut.set_exception(ConnectionError(f"disconnected (close {self.close_code})"))
        self.waiting.clear()

    # -- frames -----------------------------------------------------------------------------

    def handle(self, f: dict[str, Any]) -> None:
        ftype = f.get("type")
        st = self.stats
        if ftype == "event":
            st.frames += 1
            name = f.get("event")
            if self.track and not f.get("ephemeral"):
                self._check_seq(f["session"], f["seq"])
            if name == "message.created":
                msg = f["data"]["message"]
                if st.recording and self.probe:
                    t0 = (msg.get("metadata") or {}).get("t")
                    if t0 is not None:
                        st.latencies.append(_now() - t0)
                if self.is_pub and msg.get("author") == self.user:
                    self._own_event()
            elif name == "typing" and self.is_pub and f["data"].get("user_id") == self.user:
                sent = self.typing_sent.get(f["session"])
                t0 = sent.popleft() if sent else None
                if t0 is not None and st.recording:
                    st.latencies.append(_now() - t0)
                self._own_event()
            return
        ref = f.get("ref")
        fut = self.waiting.pop(ref, None) if ref is not None else None
        if fut is not None and fut.done():
            fut = None  # the request timed out meanwhile; a late answer only counts
        if ftype == "ack":
            if fut is not None:
                if self.track and "replayed" in f and self.next_seq.get(f["session"]) is None:
                    self.next_seq[f["session"]] = f["seq"] + 1
                fut.set_result(f)
            else:
                st.acks += 1
        elif ftype == "error":
            code = str(f.get("code"))
            st.errors[code] = st.errors.get(code, 0) + 1
            if fut is not None:
                fut.set_exception(RuntimeError(f"{code}: {f.get('message')}"))
        elif ftype == "welcome" and not self.welcome.done():
            self.welcome.set_result(f)

    def _check_seq(self, sid: str, seq: int) -> None:
        expected = self.next_seq.get(sid)
        if expected is None:
            return  # a live event before the subscribe ack cannot happen without since_seq
        if seq == expected:
            self.next_seq[sid] = seq + 1
        elif seq < expected:
            self.stats.dups += 1
        else:
            self.stats.gaps += 1
            self.next_seq[sid] = seq + 1

    def _own_event(self) -> None:
        self.stats.own += 1
        self.inflight -= 1
        if self.worker.closed_loop and self.inflight < self.worker.window:
            self.send_next()

    # -- actions ----------------------------------------------------------------------------

    def send(self, frame: dict[str, Any]) -> None:
        assert self.transport is not None
        self.transport.send(BINARY, _pack(frame))

    def send_next(self) -> None:
        transport = self.transport
        if transport is None or self.closed.done():
            return
        sid = self.sessions[self.rr % len(self.sessions)]
        self.rr += 1
        k = self.sent
        if self.kind == "typing":
            self.typing_sent[sid].append(_now())
            data = _pack({"type": "typing", "session": sid})
        else:
            data = _pack(
                {
                    "type": "send",
                    "id": k,
                    "session": sid,
                    "client_id": f"{self.user}-{k}",
                    "text": PAYLOAD,
                    "metadata": {"t": _now()},
                }
            )
        transport.send(BINARY, data)
        self.sent = k + 1
        self.inflight += 1

    def expect(self, ref: Any) -> asyncio.Future[dict[str, Any]]:
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.waiting[ref] = fut
        return fut

    async def subscribe_all(self, since: dict[str, int] | None, timeout: float) -> None:
        futures = []
        for sid in self.sessions:
            frame: dict[str, Any] = {"type": "subscribe", "id": f"s:{sid}", "session": sid}
            if since is not None and sid in since:
                frame["since_seq"] = since[sid]
                self.next_seq[sid] = since[sid] + 1
            else:
                self.next_seq[sid] = None
            futures.append(self.expect(frame["id"]))
            self.send(frame)
        async with asyncio.timeout(timeout):
            await asyncio.gather(*futures)

    def resume_position(self) -> dict[str, int]:
        """``since_seq`` per session: the last durable seq processed."""
        return {s: n - 1 for s, n in self.next_seq.items() if n is not None}


class Worker:
    """One process of the load generator: owns its clients and answers the coordinator."""

    def __init__(self, pipe: Pipe, wid: int) -> None:
        self.pipe = pipe
        self.wid = wid
        self.stats = Stats()
        self.clients: list[BenchClient] = []
        self.specs: list[ClientSpec] = []
        self.url = ""
        self.closed_loop = False
        self.window = 1
        self._pacer: asyncio.Task[None] | None = None

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

        def receive() -> None:
            # A blocking reader thread: the loop's add_reader would make the pipe non-blocking,
            # and a large command then arrives in pieces.
            while True:
                try:
                    cmd = self.pipe.recv()
                except (EOFError, OSError):
                    cmd = {"op": "quit"}
                loop.call_soon_threadsafe(inbox.put_nowait, cmd)
                if cmd["op"] == "quit":
                    return

        threading.Thread(target=receive, name="pipe", daemon=True).start()
        ops: dict[str, Callable[..., Awaitable[dict[str, Any]]]] = {
            "setup": self.op_setup,
            "publish": self.op_publish,
            "stop": self.op_stop,
            "prime": self.op_prime,
            "mark": self.op_mark,
            "latencies": self.op_latencies,
            "stall": self.op_stall,
            "status": self.op_status,
            "drop": self.op_drop,
            "reconnect": self.op_reconnect,
            "positions": self.op_positions,
            "close": self.op_close,
            "reset": self.op_reset,
        }
        while True:
            cmd = await inbox.get()
            op = cmd["op"]
            if op == "quit":
                await self.op_close()
                self.pipe.send({"ok": True})
                return
            try:
                result = await ops[op](**cmd.get("args", {}))
            except Exception as exc:
                result = {"error": f"{type(exc).__name__}: {exc}"}
            self.pipe.send(result)

    # -- connecting -------------------------------------------------------------------------

    async def _open(
        self, spec: ClientSpec, since: dict[str, int] | None, timeout: float, attempts: int = 5
    ) -> BenchClient:
        """Connect, wait for ``welcome``, subscribe; retry like a real client would."""
        loop = asyncio.get_running_loop()
        url = spec.get("url") or self.url
        host, port = url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
        src, rcvbuf, lowat = spec.get("src"), spec.get("rcvbuf"), spec.get("lowat")

        async def socket_factory(_url: Any) -> socket.socket:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if rcvbuf:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
                if src:
                    sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
                    sock.bind((src, 0))
                await loop.sock_connect(sock, (host, int(port)))
            except BaseException:
                sock.close()
                raise
            made.append(sock)
            return sock

        made: list[socket.socket] = []
        last: BaseException | None = None
        for attempt in range(attempts):
            client: BenchClient | None = None
            try:
                _, listener = await ws_connect(
                    lambda: BenchClient(self, spec),
                    url + spec.get("token", ""),
                    socket_factory=socket_factory,
                    websocket_handshake_timeout=timeout,
                    enable_auto_pong=True,
                )
                if not isinstance(listener, BenchClient):  # the peer left mid-handshake
                    raise ConnectionError("connection lost during the handshake")
                client = listener
                async with asyncio.timeout(timeout):
                    await client.welcome
                await client.subscribe_all(since, timeout)
                client.decode = client.probe or client.track
                if lowat and made:
                    made[-1].setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, lowat)
                return client
            except Exception as exc:  # any failure to connect: back off and retry
                last = exc
                if client is not None and client.transport is not None:
                    client.transport.disconnect()
                await asyncio.sleep(min(2.0, 0.1 * 2**attempt) * random.uniform(0.5, 1.5))
        raise ConnectionError(f"gave up after {attempts} attempts: {last!r}")

    async def op_setup(
        self, url: str, clients: list[ClientSpec], concurrency: int = 200, timeout: float = 30.0
    ) -> dict[str, Any]:
        self.url = url
        gate = asyncio.Semaphore(concurrency)
        failures: list[str] = []

        async def one(spec: ClientSpec) -> None:
            async with gate:
                try:
                    self.clients.append(await self._open(spec, None, timeout))
                    self.specs.append(spec)
                except Exception as exc:
                    failures.append(repr(exc))

        started = _now()
        await asyncio.gather(*(one(s) for s in clients))
        return {
            "connected": len(clients) - len(failures),
            "failed": len(failures),
            "failures": failures[:3],
            "elapsed": _now() - started,
        }

    # -- publishing -------------------------------------------------------------------------

    def _publishers(self) -> list[BenchClient]:
        return [c for c in self.clients if c.is_pub and not c.closed.done()]

    async def op_publish(
        self, kind: str, mode: str, rate: float = 0.0, window: int = 8
    ) -> dict[str, Any]:
        """Start publishing: ``closed`` keeps ``window`` events per publisher in flight (each
        completed round trip sends the next), ``rate`` sends ``rate`` per second in total."""
        pubs = self._publishers()
        for p in pubs:
            p.kind = kind
        if mode == "closed":
            self.closed_loop, self.window = True, window
            for p in pubs:
                for _ in range(window):
                    p.send_next()
        elif pubs and rate > 0:
            self._pacer = asyncio.get_running_loop().create_task(self._pace(pubs, rate))
        return {"publishers": len(pubs)}

    async def _pace(self, pubs: list[BenchClient], rate: float) -> None:
        start = _now()
        sent = 0
        i = 0
        n = len(pubs)
        while True:
            due = int((_now() - start) * rate) - sent
            for _ in range(due):
                pubs[i % n].send_next()
                i += 1
            sent += max(due, 0)
            await asyncio.sleep(0.001)

    async def op_prime(self, timeout: float = 60.0) -> dict[str, Any]:
        """Each publisher posts one message into each of its sessions and waits for them to
        come back: the first message of an author also writes ``participant.joined``, which
        must not be part of a measurement."""
        pubs = self._publishers()
        for p in pubs:
            p.kind = "message"
            for _ in p.sessions:
                p.send_next()
        deadline = _now() + timeout
        while _now() < deadline and any(p.inflight > 0 for p in pubs):  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        return {"primed": sum(len(p.sessions) for p in pubs)}

    async def op_stop(self, drain: float = 2.0) -> dict[str, Any]:
        self.closed_loop = False
        if self._pacer is not None:
            self._pacer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pacer
            self._pacer = None
        pubs = self._publishers()
        deadline = _now() + drain
        while _now() < deadline and any(p.inflight > 0 for p in pubs):  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        return {
            "sent": sum(p.sent for p in pubs),
            "inflight": sum(max(p.inflight, 0) for p in pubs),
        }

    # -- measuring --------------------------------------------------------------------------

    async def op_mark(self, record: bool) -> dict[str, Any]:
        st = self.stats
        st.recording = record
        return {
            "t": _now(),
            "frames": st.frames,
            "own": st.own,
            "acks": st.acks,
            "errors": dict(st.errors),
            "gaps": st.gaps,
            "dups": st.dups,
        }

    async def op_latencies(self) -> dict[str, Any]:
        lat, self.stats.latencies = self.stats.latencies, []
        return {"latencies": lat}

    async def op_stall(self, stalled: bool) -> dict[str, Any]:
        """Stop (or resume) reading on the ``slow`` clients."""
        n = 0
        for c in self.clients:
            if c.spec.get("role") == "slow" and c.transport is not None:
                under = c.transport.underlying_transport
                if stalled:
                    under.pause_reading()
                else:
                    under.resume_reading()
                n += 1
        return {"clients": n}

    async def op_status(self) -> dict[str, Any]:
        codes: dict[str, int] = {}
        for c in self.clients:
            if c.closed.done():
                key = str(c.close_code)
                codes[key] = codes.get(key, 0) + 1
        slow = [c.close_code for c in self.clients if c.spec.get("role") == "slow"]
        return {
            "open": sum(not c.closed.done() for c in self.clients),
            "closed": codes,
            "slow_close_codes": slow,
        }

    async def op_positions(self) -> dict[str, Any]:
        """Every tracking client's resume position per session, and the seq check counters."""
        return {
            "positions": [c.resume_position() for c in self.clients if c.track],
            "gaps": self.stats.gaps,
            "dups": self.stats.dups,
        }

    # -- disconnect and resume --------------------------------------------------------------

    async def op_drop(self, roles: tuple[str, ...] = ("sub",)) -> dict[str, Any]:
        """Cut the connections of clients in ``roles`` abruptly (no close handshake), as a
        network failure would."""
        dropped = [c for c in self.clients if c.spec.get("role", "sub") in roles]
        for c in dropped:
            if c.transport is not None:
                c.transport.disconnect(graceful=False)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10):
                await asyncio.gather(*(c.closed for c in dropped))
        return {"dropped": len(dropped)}

    async def op_reconnect(self, timeout: float = 30.0, deadline: float = 30.0) -> dict[str, Any]:
        """Reconnect every disconnected client at once, each resuming with ``since_seq``;
        clients not resumed within ``deadline`` seconds count as failed."""
        gone = [c for c in self.clients if c.closed.done()]
        self.clients = [c for c in self.clients if not c.closed.done()]
        times: list[float] = []
        failures: list[str] = []
        started = _now()

        async def one(c: BenchClient) -> None:
            since = c.resume_position()
            try:
                new = await self._open(c.spec, since, timeout, attempts=8)
            except Exception as exc:
                failures.append(repr(exc))
                return
            times.append(_now() - started)
            self.clients.append(new)

        tasks = [asyncio.ensure_future(one(c)) for c in gone]
        _, late = await asyncio.wait(tasks, timeout=deadline)
        for task in late:
            task.cancel()
        if late:
            await asyncio.wait(late)
            failures.append(f"{len(late)} not resumed within {deadline:.0f} s")
        return {
            "times": times,
            "failed": len(gone) - len(times),
            "failures": failures[-3:],
        }

    async def op_reset(self) -> dict[str, Any]:
        self.stats.reset()
        return {"ok": True}

    async def op_close(self) -> dict[str, Any]:
        for c in self.clients:
            if c.transport is not None and not c.closed.done():
                c.transport.send_close(WSCloseCode.OK)
                c.transport.disconnect()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                await asyncio.gather(*(c.closed for c in self.clients))
        n = len(self.clients)
        self.clients = []
        return {"closed": n}


def worker_main(pipe: Pipe, wid: int, cpus: list[int] | None) -> None:
    """Entry point of a worker process (started by the coordinator with ``spawn``)."""
    if cpus and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, set(cpus))
    import uvloop

    uvloop.run(Worker(pipe, wid).run())

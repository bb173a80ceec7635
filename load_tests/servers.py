"""Servers under test: start, pin, measure (CPU from /proc/<pid>/stat, RSS from
/proc/<pid>/status), create sessions, stop.

* ``ParleyServer``: ``python -m parley.cli serve`` on SQLite in a temporary folder, with the
  rate limits raised out of the way; optionally several hubs sharing one database on a Redis
  broker.
* ``BaselineServer``: ``load_tests.baseline_server`` (plain ``websockets``), the floor.
* ``RedisServer``: a throwaway ``redis-server`` with persistence off.

Every process is pinned with ``taskset`` when it exists (Linux), so the server owns one core
and the load generator the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

CLK_TCK = os.sysconf("SC_CLK_TCK")
TENANT = "bench"
# What every benchmarked Parley server runs with, beside its own limits. Semantic search is an
# optional extra (`parley[semantic]`, not in a plain install): with it, every server would load
# a sentence model at start-up and embed every benchmark message on the server's core.
BENCH_ENV = {"PARLEY_LOG_LEVEL": "warning", "PARLEY_SEMANTIC": "false"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()  # fields after "(comm)", starting at state (#3)
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime (#14) + stime (#15)


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def pinned(cmd: list[str], cpus: str | None) -> list[str]:
    if cpus is not None and shutil.which("taskset"):
        return ["taskset", "-c", cpus, *cmd]
    return cmd


def wait_port(
    port: int, timeout: float = 30.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on port {port} after {timeout} s")


class Server:
    """A server under test: one or more processes the load generator talks to."""

    name = "server"

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.ports: list[int] = []
        self.pids: list[int] = []  # the measured processes (the Python interpreters)

    def ws_url(self, i: int = 0) -> str:
        """The WebSocket URL of hub ``i``, ending where the token goes."""
        return f"ws://127.0.0.1:{self.ports[i % len(self.ports)]}/ws?format=msgpack&token="

    def cpu(self) -> float:
        return sum(cpu_seconds(p) for p in self.pids)

    def rss(self) -> int:
        return sum(rss_bytes(p) for p in self.pids)

    def alive(self) -> bool:
        return all(p.poll() is None for p in self.procs)

    def token(self, user: str) -> str:
        raise NotImplementedError

    def create_sessions(self, n: int) -> list[str]:
        raise NotImplementedError

    def metric(self, name: str, labels: str = "") -> float | None:
        """A Prometheus counter summed over hubs (None when the server has no /metrics)."""
        return None

    def last_seqs(self, sessions: list[str]) -> dict[str, int] | None:
        """Each session's last seq as stored (None when the server keeps no such record)."""
        return None

    def stop(self) -> None:
        # Signal the interpreters themselves: under a profiler the launched process is py-spy,
        # which writes its profile when the server it watches exits.
        for p, pid in zip(self.procs, self.pids, strict=False):
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        self.procs.clear()


def python_child(pid: int, timeout: float = 10.0) -> int:
    """The pid of the interpreter a launcher (py-spy) started."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children = Path(f"/proc/{pid}/task/{pid}/children")
        if children.exists():
            kids = children.read_text().split()
            if kids:
                return int(kids[0])
        time.sleep(0.05)
    raise RuntimeError("profiler did not start the server")


class ParleyServer(Server):
    """``parley serve`` (one hub, or ``hubs`` hubs on one database and a Redis broker)."""

    name = "parley"

    def __init__(
        self,
        *,
        cpus: str | None = "0",
        hubs: int = 1,
        broker_url: str | None = None,
        send_queue_frames: int = 2048,
        pythonpath: str | None = None,
        profile_to: Path | None = None,
        profile_rate: int = 250,
        profile_flags: tuple[str, ...] = (),
        profiler_cpus: str | None = "1",
    ) -> None:
        super().__init__()
        self.secret = secrets.token_urlsafe(32)  # per run, never written anywhere
        self._tmp = tempfile.TemporaryDirectory(prefix="parley-bench-")
        self.data_dir = Path(self._tmp.name)
        self.logs: list[Path] = []
        env = {
            **os.environ,
            "PARLEY_SECRET": self.secret,
            "PARLEY_FRAME_RATE": "1000000000",
            "PARLEY_FRAME_BURST": "1000000000",
            **BENCH_ENV,
            "PARLEY_SEND_QUEUE_FRAMES": str(send_queue_frames),
        }
        if broker_url:
            env["PARLEY_BROKER_URL"] = broker_url
        if pythonpath:
            env["PYTHONPATH"] = pythonpath + os.pathsep + env.get("PYTHONPATH", "")
        for i in range(hubs):
            port = free_port()
            cmd = [sys.executable, "-m", "parley.cli", "serve", "--port", str(port)]
            cmd += ["--data-dir", str(self.data_dir)]
            if i > 0:
                cmd.append("--no-migrate")  # the first hub migrated the shared database
            cmd = pinned(cmd, cpus)
            if profile_to is not None:
                out = profile_to.with_name(f"{profile_to.stem}-hub{i}{profile_to.suffix}")
                beside = Path(sys.executable).parent / "py-spy"
                spy = [str(beside) if beside.exists() else shutil.which("py-spy") or "py-spy"]
                spy += ["record", "--format", "raw", "--rate", str(profile_rate)]
                spy += ["--nonblocking", *profile_flags, "--output", str(out), "--"]
                cmd = pinned(spy + cmd, profiler_cpus)
            log = (self.data_dir / f"hub{i}.log").open("wb")
            proc = subprocess.Popen(
                cmd, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
            self.logs.append(Path(log.name))
            self.procs.append(proc)
            self.ports.append(port)
            wait_port(port, 120, proc)  # a loaded machine imports slowly
            self.pids.append(python_child(proc.pid) if profile_to is not None else proc.pid)
            self._wait_ready(port)

    def _wait_ready(self, port: int) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError("parley did not become ready")

    def token(self, user: str) -> str:
        from parley.governance.auth import create_token

        return create_token(self.secret, user_id=user, tenant_id=TENANT)

    def create_sessions(self, n: int) -> list[str]:
        async def create_all() -> list[str]:
            headers = {"Authorization": f"Bearer {self.token('bench-owner')}"}
            base = f"http://127.0.0.1:{self.ports[0]}"
            gate = asyncio.Semaphore(8)
            async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as h:

                async def one(i: int) -> str:
                    async with gate:
                        r = await h.post("/api/v1/sessions", json={"title": f"bench {i}"})
                        r.raise_for_status()
                        sid: str = r.json()["id"]
                        return sid

                return list(await asyncio.gather(*(one(i) for i in range(n))))

        return asyncio.run(create_all())

    def last_seqs(self, sessions: list[str]) -> dict[str, int] | None:
        headers = {"Authorization": f"Bearer {self.token('bench-owner')}"}
        base = f"http://127.0.0.1:{self.ports[0]}"
        # Right after a storm the server may still be busy with thousands of sockets.
        with httpx.Client(base_url=base, headers=headers, timeout=60) as h:
            return {s: int(h.get(f"/api/v1/sessions/{s}").json()["last_seq"]) for s in sessions}

    def metric(self, name: str, labels: str = "") -> float | None:
        total = 0.0
        for port in self.ports:
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            for line in text.splitlines():
                if line.startswith(name) and labels in line and not line.startswith("#"):
                    total += float(line.rsplit(" ", 1)[1])
        return total

    def stop(self) -> None:
        super().stop()
        for path in self.logs:
            lines = [x for x in path.read_text(errors="replace").splitlines() if x.strip()]
            lines = [x for x in lines if not x.startswith("py-spy>")]
            if lines:
                print(f"    server {path.stem} logged {len(lines)} lines, first:", file=sys.stderr)
                for line in lines[:3]:
                    print(f"      {line[:200]}", file=sys.stderr)
        self._tmp.cleanup()


class BaselineServer(Server):
    """The minimal ``websockets`` broadcast server (``load_tests.baseline_server``)."""

    name = "baseline"

    def __init__(self, *, cpus: str | None = "0") -> None:
        super().__init__()
        port = free_port()
        cmd = pinned(
            [sys.executable, "-m", "load_tests.baseline_server", "--port", str(port)], cpus
        )
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the server
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT
        )
        self.procs.append(proc)
        self.ports.append(port)
        self.pids.append(proc.pid)
        wait_port(port, 30, proc)

    def token(self, user: str) -> str:
        return user  # the baseline takes the user id as the token, unchecked

    def stop(self) -> None:
        super().stop()
        self._log.seek(0)
        lines = [x for x in self._log.read().decode(errors="replace").splitlines() if x.strip()]
        if lines:
            print(f"    baseline logged {len(lines)} lines, first:", file=sys.stderr)
            for line in lines[:3]:
                print(f"      {line[:200]}", file=sys.stderr)
        self._log.close()

    def create_sessions(self, n: int) -> list[str]:
        return [str(uuid.uuid4()) for _ in range(n)]


class RedisServer:
    """A private ``redis-server`` (no persistence) for the two-hub scenario."""

    def __init__(self, *, cpus: str | None = "1") -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server is not installed")
        self.port = free_port()
        cmd = [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        cmd += ["--appendonly", "no", "--protected-mode", "yes"]
        self.proc = subprocess.Popen(pinned(cmd, cpus), stdout=subprocess.DEVNULL)
        wait_port(self.port, 15, self.proc)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def describe_machine() -> dict[str, Any]:
    """What the results were measured on."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) // 1024
    except OSError:
        pass
    import platform

    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_mib": mem,
        "kernel": platform.release(),
        "python": platform.python_version(),
    }

"""The ``parley`` command as users run it: help, tokens, migrate, serve, graceful shutdown."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.services import free_port
from tests.support import WsClient

PARLEY = [sys.executable, "-m", "parley.cli"]


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*PARLEY, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_help_explains_every_option() -> None:
    top = run_cli("--help")
    assert top.returncode == 0
    for command in ("serve", "migrate", "token"):
        assert command in top.stdout
    serve = run_cli("serve", "--help")
    assert serve.returncode == 0
    for flag in (
        "--host",
        "--port",
        "--data-dir",
        "--database-url",
        "--broker-url",
        "--log-format",
        "--log-level",
    ):
        assert flag in serve.stdout
    assert "PARLEY_PORT" in serve.stdout


def test_token_create_and_bad_input(tmp_path: Path) -> None:
    folder = ["--data-dir", str(tmp_path)]
    ok = run_cli("token", "create", "--user", "alice", "--tenant", "acme", "--ttl", "1h", *folder)
    assert ok.returncode == 0
    assert ok.stdout.count(".") == 2, "a JWT"
    assert (tmp_path / "secret.key").exists(), "the secret was generated once into the data folder"
    bad_user = run_cli("token", "create", "--user", "bad user!", *folder)
    assert bad_user.returncode != 0
    assert "user id" in bad_user.stderr
    bad_ttl = run_cli(
        "token", "create", "--user", "a", "--ttl", "soon", "--data-dir", str(tmp_path)
    )
    assert bad_ttl.returncode != 0
    assert "duration" in bad_ttl.stderr


def test_migrate_is_repeatable(tmp_path: Path) -> None:
    for _ in range(2):
        result = run_cli("migrate", "--data-dir", str(tmp_path))
        assert result.returncode == 0, result.stderr
    assert (tmp_path / "parley.db").exists()


def ready_statuses(port: int, deadline: float = 60.0) -> list[dict[str, object]]:
    """Poll ``/readyz`` until it answers 200; every answer's status code and body, in order."""
    seen: list[dict[str, object]] = []
    end = time.monotonic() + deadline
    with httpx.Client() as h:
        while time.monotonic() < end:
            try:
                r = h.get(f"http://127.0.0.1:{port}/readyz")
            except httpx.TransportError:
                time.sleep(0.05)  # still starting: there is no event to wait on
                continue
            seen.append({"code": r.status_code, **r.json()})
            if r.status_code == 200:
                return seen
            time.sleep(0.05)
    raise TimeoutError(f"not ready within {deadline} s: {seen[-3:]}")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], int, str, Path]]:
    port = free_port()
    log_path = tmp_path / "server.log"
    with log_path.open("w") as log:
        args = ["serve", "--port", str(port), "--data-dir", str(tmp_path / "data"), "--demo-token"]
        proc = subprocess.Popen(
            [*PARLEY, *args],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env={**os.environ, "PARLEY_LOG_FORMAT": "json"},
        )
        try:
            assert proc.stdout is not None
            token = ""
            while not token:
                line = proc.stdout.readline()
                assert line, "serve exited before printing its token"
                if line.strip().startswith("eyJ"):
                    token = line.strip()
            ready_statuses(port)
            yield proc, port, token, log_path
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)


async def _close_code(client: WsClient) -> int | None:
    """Read until the server closes; return its close code."""
    try:
        while True:
            await client.recv()
    except ConnectionClosed as exc:
        return exc.rcvd.code if exc.rcvd else None


async def test_serve_prints_a_working_token_and_shuts_down_gracefully_with_1012(
    served: tuple[subprocess.Popen[str], int, str, Path],
) -> None:
    proc, port, token, log_path = served
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as h:
        r = await h.post(f"http://127.0.0.1:{port}/api/v1/sessions", json={"title": "shutdown"})
        assert r.status_code == 201
        sid = r.json()["id"]
    async with connect(f"ws://127.0.0.1:{port}/ws?token={token}") as ws:
        client = WsClient(ws)
        assert (await client.recv())["type"] == "welcome"
        await client.subscribe(sid)
        await client.say(sid, "before shutdown")
        proc.send_signal(signal.SIGTERM)
        assert await _close_code(client) == 1012, "clients are told to reconnect elsewhere"
    # uvicorn re-raises the signal after its graceful shutdown, so the status names SIGTERM
    assert await asyncio.to_thread(proc.wait, 20) in (0, -signal.SIGTERM)
    # the log is JSON lines and never contains the token
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    events = [entry.get("event") for entry in lines]
    assert "parley ready" in events
    assert "parley stopped" in events, "the lifespan shut down cleanly"
    assert token not in log_path.read_text()


def test_serve_prints_the_workspace_sign_in_link(
    served: tuple[subprocess.Popen[str], int, str, Path],
) -> None:
    proc, port, token, _ = served
    assert proc.stdout is not None
    after_token = [proc.stdout.readline() for _ in range(2)]
    assert f"http://127.0.0.1:{port}/#token={token}" in "".join(after_token)
    page = httpx.get(f"http://127.0.0.1:{port}/")
    assert page.status_code in (200, 503), "the workspace, or how to build it"
    assert "Parley" in page.text


def test_readyz_answers_not_ready_until_the_embedding_model_is_loaded(tmp_path: Path) -> None:
    """The model's import and first load hold the interpreter for seconds after the socket
    opens: a load balancer must not send traffic meanwhile."""
    port = free_port()
    log_path = tmp_path / "server.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [*PARLEY, "serve", "--port", str(port), "--data-dir", str(tmp_path / "data")],
            stdout=log,
            stderr=log,
            env={**os.environ, "PARLEY_LOG_FORMAT": "json", "PARLEY_SEMANTIC": "true"},
        )
        try:
            statuses = ready_statuses(port)
        finally:
            proc.terminate()
            proc.wait(30)
    first, last = statuses[0], statuses[-1]
    assert first["code"] == 503, statuses
    assert first["status"] == "not ready"
    assert first["checks"] == {"storage": "ok", "broker": "ok", "model": "loading"}
    assert last == {"code": 200, "status": "ready", "checks": {"storage": "ok", "broker": "ok"}}
    lines = log_path.read_text().splitlines()  # the banner on stdout is not JSON
    events = [json.loads(line).get("event") for line in lines if line.startswith("{")]
    assert "embedding model loaded" in events

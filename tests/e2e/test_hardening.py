"""Token refresh on the socket, expiry, CORS and security headers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from parley.config import Settings
from parley.governance.auth import create_token
from tests.support import DEFAULT_TIMEOUT, RunningServer, WsClient, start_server


async def test_auth_frame_refreshes_the_token_and_expiry_closes_with_4002(
    sqlite_server: RunningServer,
) -> None:
    server = sqlite_server
    sid = await server.create_session("alice")
    short = server.token("alice", ttl_seconds=2)
    async with connect(f"{server.ws_url}?token={short}") as ws:
        client = WsClient(ws)
        welcome = await client.recv()
        assert welcome["expires_at"] is not None
        await client.subscribe(sid)
        # Another user's token, or a bad one, is refused; the connection stays.
        other = await client.request({"type": "auth", "token": server.token("bob")})
        assert other["code"] == "forbidden"
        bad = await client.request({"type": "auth", "token": "not.a.token"})
        assert bad["code"] == "unauthenticated"
        fresh = await client.request({"type": "auth", "token": server.token("alice")})
        assert fresh["type"] == "ack"
        assert fresh["expires_at"] > welcome["expires_at"]
        # Past the first token's expiry the connection lives on.
        await asyncio.sleep(2.5)
        assert (await client.request({"type": "ping"}))["type"] == "pong"
        await client.say(sid, "still here")
    # Without a refresh, the connection ends when its token does.
    async with connect(f"{server.ws_url}?token={server.token('alice', ttl_seconds=3)}") as ws:
        client = WsClient(ws)
        await client.recv()
        expired = await client.wait_for(lambda f: f["type"] == "error")
        assert expired["code"] == "token_expired"
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), DEFAULT_TIMEOUT)
        assert ws.close_code == 4002


async def test_a_never_expiring_token_has_no_deadline(sqlite_server: RunningServer) -> None:
    token = create_token(
        sqlite_server.settings.signing_key, user_id="bot", tenant_id="acme", ttl_seconds=None
    )
    async with connect(f"{sqlite_server.ws_url}?token={token}") as ws:
        welcome = await WsClient(ws).recv()
        assert welcome["expires_at"] is None


async def test_security_headers_and_no_cors_by_default(sqlite_server: RunningServer) -> None:
    async with sqlite_server.http("alice") as h:
        r = await h.get("/sessions", headers={"Origin": "https://evil.example"})
    assert r.status_code == 200
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["referrer-policy"] == "no-referrer"
    assert r.headers["content-security-policy"].startswith("default-src 'none'")
    assert r.headers["cache-control"] == "no-store"
    assert "access-control-allow-origin" not in r.headers
    assert "strict-transport-security" not in r.headers
    async with httpx.AsyncClient(base_url=sqlite_server.base_url) as h:
        preflight = await h.options(
            "/api/v1/sessions",
            headers={
                "Origin": "https://evil.example",
                "Access-Control-Request-Method": "POST",
            },
        )
        assert "access-control-allow-origin" not in preflight.headers
        health = await h.get("/healthz")
        assert health.headers["x-content-type-options"] == "nosniff"


async def test_cors_allows_only_the_configured_origins(
    sqlite_url: str, settings_factory: Callable[..., Settings]
) -> None:
    settings = settings_factory(
        database_url=sqlite_url,
        cors_allowed_origins="https://app.example, https://admin.example",
        hsts_seconds=3600,
    )
    async with start_server(settings) as server, httpx.AsyncClient(base_url=server.base_url) as h:
        ok = await h.options(
            "/api/v1/sessions",
            headers={
                "Origin": "https://app.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
        )
        assert ok.status_code == 200, ok.text
        assert ok.headers["access-control-allow-origin"] == "https://app.example"
        refused = await h.options(
            "/api/v1/sessions",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        )
        assert refused.status_code == 400
        assert "access-control-allow-origin" not in refused.headers
        token = server.token("alice")
        r = await h.get(
            "/api/v1/sessions",
            headers={"Origin": "https://admin.example", "Authorization": f"Bearer {token}"},
        )
        assert r.headers["access-control-allow-origin"] == "https://admin.example"
        assert r.headers["strict-transport-security"] == "max-age=3600; includeSubDomains"

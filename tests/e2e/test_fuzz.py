"""Property-based tests: generated frames and REST bodies never crash the server.

Hypothesis generates garbage and near-miss input: random bytes and text, JSON and msgpack
values of every shape, frames of every known type with fields of the wrong shape, bodies and
query strings for every writing route. The properties: no answer is an ``internal`` error or
a 5xx, the fuzzing connection answers a ping afterwards (unless it was cut off by the fault
budget, which is the designed answer to garbage), and a bystander subscribed to the same
session stays connected and keeps receiving events.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any
from urllib.parse import quote

import httpx
import msgpack
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from parley.config import Settings
from parley.protocol.frames import CLIENT_FRAME_TYPES
from tests.support import DEFAULT_TIMEOUT, RunningServer, WsClient, start_server

FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=20,
)
FIELDS = [
    "id",
    "session",
    "since_seq",
    "text",
    "parts",
    "metadata",
    "client_id",
    "message_id",
    "parent_id",
    "active",
    "token",
    "data",
    "assistant",
    "stream_id",
    "protocol",
]


@st.composite
def frames(draw: st.DrawFn, sid: str) -> dict[str, Any]:
    """A frame of a known (or unknown) type with fields of any shape, often the real session."""
    frame: dict[str, Any] = {
        "type": draw(st.sampled_from(sorted(CLIENT_FRAME_TYPES)) | st.text(max_size=10))
    }
    for name in draw(st.lists(st.sampled_from(FIELDS), max_size=5, unique=True)):
        frame[name] = draw(st.just(sid) if name == "session" else json_values)
    return frame


def payloads(sid: str) -> st.SearchStrategy[bytes | str]:
    as_json = frames(sid).map(lambda f: orjson.dumps(f, option=orjson.OPT_NON_STR_KEYS).decode())
    as_msgpack = frames(sid).map(lambda f: msgpack.packb(f, use_bin_type=True))
    return (
        as_json
        | as_msgpack
        | st.binary(max_size=300)
        | st.text(max_size=300)
        | json_values.map(lambda v: orjson.dumps(v, option=orjson.OPT_NON_STR_KEYS).decode())
    )


@pytest.fixture
async def fuzz_server(
    database_url: str, settings_factory: Callable[..., Settings]
) -> AsyncIterator[RunningServer]:
    # Generous rates: the fuzzer should reach the handlers, not the rate limiter.
    config = settings_factory(database_url=database_url, frame_rate=10_000.0, frame_burst=10_000)
    async with start_server(config) as server:
        yield server


class Fuzzer:
    """The fuzzing connection, reopened when the server cut it off for sending garbage."""

    def __init__(self, server: RunningServer) -> None:
        self.server = server
        self.ws: Any = None
        self.client: WsClient | None = None
        self.cut_off = 0

    async def ensure(self) -> WsClient:
        if self.client is None:
            url = f"{self.server.ws_url}?token={self.server.token('fuzz')}"
            self.ws = await connect(url, max_size=None)
            self.client = WsClient(self.ws)
            assert (await self.client.recv())["type"] == "welcome"
        return self.client

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()


def blocking(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, None]) -> None:
    """Run ``coro`` on the server's loop from Hypothesis's thread, and wait for it."""
    asyncio.run_coroutine_threadsafe(coro, loop).result(DEFAULT_TIMEOUT * 3)


async def test_generated_frames_never_crash_the_server(fuzz_server: RunningServer) -> None:
    server = fuzz_server
    sid = await server.create_session("alice")
    fuzzer = Fuzzer(server)
    loop = asyncio.get_running_loop()

    async def check(payload: bytes | str) -> None:
        client = await fuzzer.ensure()
        try:
            await client.send_raw(payload)
            await client.send({"type": "ping", "id": "probe"})
            await client.wait_for(lambda f: f["type"] == "pong" and f.get("ref") == "probe")
        except ConnectionClosed:
            # Cut off for garbage (4029) or a frame over the hard limit (1009): by design.
            assert fuzzer.ws.close_code in (1009, 4029), fuzzer.ws.close_code
            fuzzer.client = None
            fuzzer.cut_off += 1
            return
        errors = [f for f in client.backlog if f["type"] == "error"]
        client.backlog.clear()
        assert all(e["code"] != "internal" for e in errors), errors

    @FUZZ
    @given(payload=payloads(sid))
    def one(payload: bytes | str) -> None:
        blocking(loop, check(payload))

    async with server.client("bystander") as bystander:
        await bystander.subscribe(sid)
        try:
            await asyncio.to_thread(one)
        finally:
            await fuzzer.close()
        # The bystander is still connected and still gets the session's events.
        async with server.http("alice") as h:
            r = await h.post(f"/sessions/{sid}/messages", json={"text": "after the storm"})
            assert r.status_code == 201, r.text
        await bystander.wait_for(
            lambda f: (
                f.get("event") == "message.created"
                and f["data"]["message"]["text"] == "after the storm"
            )
        )


ROUTES = [
    ("POST", "/sessions"),
    ("PATCH", "/sessions/{sid}"),
    ("POST", "/sessions/{sid}/messages"),
    ("PATCH", "/sessions/{sid}/messages/{mid}"),
    ("POST", "/sessions/{sid}/participants"),
    ("POST", "/sessions/{sid}/assistants"),
    ("POST", "/sessions/{sid}/assistants/helper/ask"),
    ("POST", "/sessions/{sid}/invitations"),
    ("POST", "/sessions/{sid}/share-links"),
    ("POST", "/share-links/{text}/redeem"),
    ("POST", "/invitations/{text}/accept"),
]
BODY_FIELDS = ["title", "tags", "status", "visibility", "user_id", "role", "expires_in"]
BODY_FIELDS += ["max_uses", "name", "provider", "model", "params", "trigger"]
BODY_FIELDS = ["title", "tags", "status", "visibility", "user_id", "role", "expires_in"]
BODY_FIELDS += ["max_uses", "name", "provider", "model", "params", "trigger"]
QUERY_ROUTES = [
    "/sessions",
    "/sessions/{sid}/messages",
    "/sessions/{sid}/events",
    "/sessions/{sid}/annotations",
    "/audit",
]
QUERY_KEYS = [
    "limit",
    "cursor",
    "after_seq",
    "before_seq",
    "status",
    "tag",
    "since",
    "until",
    "actor",
    "action",
    "target",
    "message_id",
]


@st.composite
def requests(draw: st.DrawFn, sid: str, mid: str) -> tuple[str, str, bytes | None, dict[str, str]]:
    text = quote(draw(st.text(min_size=1, max_size=80)), safe="")
    if draw(st.integers(0, 2)) == 0:
        method, template = draw(st.sampled_from(ROUTES))
        keys = st.sampled_from([*FIELDS, *BODY_FIELDS])
        value = draw(json_values | st.dictionaries(keys, json_values, max_size=6))
        raw = (
            orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
            if draw(st.booleans())
            else draw(st.binary(max_size=200))
        )
        path = template.format(sid=sid, mid=mid, text=text)
        return method, path, raw, {}
    path = draw(st.sampled_from(QUERY_ROUTES)).format(sid=sid)
    # Values that broke servers before (NUL reaches PostgreSQL as a parameter and fails there).
    nasty = st.sampled_from(["\x00", "a\x00b", "-1", "9" * 40, "2026-11-25T00:00:00Z", "é" * 300])
    values = nasty | nasty | st.text(max_size=40)
    params = draw(st.dictionaries(st.sampled_from(QUERY_KEYS), values, min_size=1, max_size=6))
    return "GET", path, None, params


async def test_generated_rest_requests_never_get_a_500(fuzz_server: RunningServer) -> None:
    server = fuzz_server
    async with server.http("alice") as h:
        sid = (await h.post("/sessions", json={"title": "fuzz"})).json()["id"]
        mid = (await h.post(f"/sessions/{sid}/messages", json={"text": "m"})).json()["message"][
            "id"
        ]
    token = server.token("alice", tenant_role="admin")  # type: ignore[arg-type]
    async with httpx.AsyncClient(
        base_url=server.base_url + "/api/v1",
        headers={"Authorization": f"Bearer {token}"},
        timeout=DEFAULT_TIMEOUT,
    ) as h:
        loop = asyncio.get_running_loop()

        async def check(request: tuple[str, str, bytes | None, dict[str, str]]) -> None:
            method, path, raw, params = request
            r = await h.request(method, path, content=raw, params=params)
            assert r.status_code < 500, (method, path, params, r.text)
            if r.status_code >= 400:
                assert set(r.json()) == {"error"}, r.text

        @FUZZ
        @given(request=requests(sid, mid))
        def one(request: tuple[str, str, bytes | None, dict[str, str]]) -> None:
            blocking(loop, check(request))

        await asyncio.to_thread(one)
        assert (await h.get(f"/sessions/{sid}")).status_code == 200

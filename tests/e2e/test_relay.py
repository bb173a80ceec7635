"""The LLM relay end to end: a real server, real SDKs, and a fake provider on loopback that
speaks each API's exact streaming wire format."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio

from parley.config import Settings
from parley.relay.state import BusyPolicy, StreamInfo
from tests.conftest import TEST_SECRET
from tests.fakes.llm_server import FakeLLM, Reply
from tests.fakes.relay_client import Watcher, add_assistant, answer_of, ask
from tests.support import RunningServer, start_server

OPENAI_KEY = "sk-test-openai-0123456789abcdef"
ANTHROPIC_KEY = "sk-ant-test-0123456789abcdef"
COMPAT_KEY = "compat-test-key-0123456789"
KINDS = ["openai", "openai_responses", "anthropic", "openai_compatible"]
WORDS = [f"w{i} " for i in range(40)]


# One fake provider and one server for the module's tests (each test has its own session);
# tests that need other settings start their own server. Starting and stopping both for every
# test would double this file's run time.
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def shared_llm() -> AsyncIterator[FakeLLM]:
    async with FakeLLM() as fake:
        yield fake


@pytest.fixture
def llm(shared_llm: FakeLLM) -> FakeLLM:
    shared_llm.replies.clear()
    shared_llm.requests.clear()
    return shared_llm


@pytest.fixture(scope="module")
def module_settings(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Settings]:
    """Like the shared ``settings_factory``, for module-scoped servers."""

    def make(**overrides: object) -> Settings:
        tmp = tmp_path_factory.mktemp("relay")
        values: dict[str, object] = {
            "host": "127.0.0.1",
            "port": 0,
            "data_dir": tmp / "data",
            "database_url": f"sqlite+aiosqlite:///{tmp / 'parley.db'}",
            "secret": TEST_SECRET,
            "log_level": "warning",
        }
        values.update(overrides)
        return Settings(**values)  # type: ignore[arg-type]

    return make


def relay_settings(llm: FakeLLM, factory: Callable[..., Settings], **kw: Any) -> Settings:
    values: dict[str, Any] = {
        "relay_openai_base_url": llm.openai_url,
        "relay_openai_api_key": OPENAI_KEY,
        "relay_anthropic_base_url": llm.anthropic_url,
        "relay_anthropic_api_key": ANTHROPIC_KEY,
        "relay_compatible_base_url": llm.openai_url,
        "relay_compatible_api_key": COMPAT_KEY,
        "relay_retry_base_delay": 0.01,
        "relay_coalesce_ms": 5.0,
        "frame_rate": 10_000.0,
        "frame_burst": 10_000,
    }
    values.update(kw)
    return factory(**values)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def server(
    shared_llm: FakeLLM, module_settings: Callable[..., Settings]
) -> AsyncIterator[RunningServer]:
    """Shadows the shared fixture: SQLite, with the relay pointed at the fake provider."""
    async with start_server(relay_settings(shared_llm, module_settings)) as running:
        yield running


async def session_with(server: RunningServer, **assistant: Any) -> str:
    sid = await server.create_session("alice")
    async with server.http("alice") as h:
        await add_assistant(h, sid, **{"name": "helper", **assistant})
    return sid


# -- streaming to everyone -------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
async def test_three_watchers_see_the_providers_text_and_the_answer_is_stored(
    server: RunningServer, llm: FakeLLM, kind: str
) -> None:
    sid = await session_with(
        server, provider=kind, model="model-x", system_prompt="Be brief.", params={"top_p": 0.5}
    )
    reply = Reply(chunks=WORDS, delay=0.002, usage=(123, 45))
    llm.script(reply)
    async with (
        server.client("alice") as a,
        server.client("bob") as b,
        server.client("carol", binary=True) as c,
    ):
        watchers = [Watcher(x, sid) for x in (a, b, c)]
        for w in watchers:
            await w.subscribe()
        answer = await ask(a, sid, "helper", text="what is up?")
        assert answer["status"] == "started"
        streams = [await w.finished(answer["stream_id"]) for w in watchers]

    expected = reply.text()
    for s in streams:
        assert s.text == expected, "every watcher assembled exactly the provider's text"
        assert s.final == expected
        assert s.finish_reason == "stop"
    assert len(watchers[0].events("stream.delta")) < len(WORDS), "deltas were coalesced"
    assert watchers[0].events("stream.delta") == watchers[1].events("stream.delta")

    message = answer_of(watchers[1], answer["stream_id"])
    assert message["parent_id"] == answer["prompt_id"]
    assert message["author"].startswith("assistant.")
    meta = message["metadata"]
    assert meta["provider"] == kind
    assert meta["model"] == "model-x"
    assert meta["finish_reason"] == "stop"
    assert meta["usage"] == {"input_tokens": 123, "output_tokens": 45, "estimated": False}
    assert meta["cost"] is None, "no price for model-x: no guess"
    assert meta["latency"]["first_token_ms"] > 0
    assert meta["latency"]["total_ms"] >= meta["latency"]["first_token_ms"]
    assert meta["attempts"] == 1

    (request,) = llm.requests
    body = json.dumps(request.body)
    assert "alice: what is up?" in body, "participants' turns carry their names"
    assert "Be brief." in body, "the assistant's system prompt is sent"
    assert "You are helper" in body, "with who it is in the conversation"
    assert "0.5" in body, "the assistant's parameters are sent"
    key = {"anthropic": ANTHROPIC_KEY, "openai_compatible": COMPAT_KEY}.get(kind, OPENAI_KEY)
    assert key in (request.headers.get("authorization", "") + request.headers.get("x-api-key", ""))


async def test_tool_calls_are_recorded_in_the_message(server: RunningServer, llm: FakeLLM) -> None:
    sid = await session_with(server, provider="anthropic", model="claude-test")
    llm.script(Reply(chunks=["Let me look."], tool_call=("lookup", ['{"q": ', '"parley"}'])))
    async with server.client("alice") as a:
        w = Watcher(a, sid)
        await w.subscribe()
        answer = await ask(a, sid, "helper", text="find it")
        stream = await w.finished(answer["stream_id"])
    assert stream.finish_reason == "tool_calls"
    message = answer_of(w, answer["stream_id"])
    call = {"id": "toolu_fake1", "name": "lookup", "arguments": '{"q": "parley"}'}
    assert message["metadata"]["tool_calls"] == [call]
    assert message["parts"] == [{"type": "tool_call", **call}]


async def test_split_utf8_and_split_surrogate_pairs_arrive_intact(
    server: RunningServer, llm: FakeLLM
) -> None:
    sid = await session_with(server, provider="openai", model="m")
    chunks = ["Grüße ", "日本語 ", "a\ud83d", "\ude00b ", "ok"]  # the emoji cut in two halves
    llm.script(Reply(chunks=chunks, split_utf8=True, ascii_json=True, delay=0.01))
    async with server.client("alice") as a, server.client("bob", binary=True) as b:
        watchers = [Watcher(a, sid), Watcher(b, sid)]
        for w in watchers:
            await w.subscribe()
        answer = await ask(a, sid, "helper", text="say something")
        streams = [await w.finished(answer["stream_id"]) for w in watchers]
    expected = "Grüße 日本語 a\U0001f600b ok"
    assert [s.text for s in streams] == [expected, expected]
    assert streams[0].final == expected


# -- resume ----------------------------------------------------------------------------------


async def test_late_joiner_and_reconnecting_client_get_the_full_text(
    server: RunningServer, llm: FakeLLM
) -> None:
    sid = await session_with(server, provider="openai_responses", model="m")
    gate = asyncio.Event()
    reply = Reply(chunks=WORDS, gate=gate, gate_after=10)
    llm.script(reply)
    async with server.client("alice") as a:
        early = Watcher(a, sid)
        await early.subscribe()
        async with server.client("bob") as b:
            leaver = Watcher(b, sid)
            ack = await leaver.subscribe()
            answer = await ask(a, sid, "helper", text="long answer please")
            stream_id = answer["stream_id"]
            # The stream is held after 10 chunks: both watchers have that much.
            for w in (early, leaver):
                await w.wait(lambda w=w: w.asm.text(stream_id) == "".join(WORDS[:10]))
            durable = [
                f["seq"] for f in leaver.seen if f["type"] == "event" and not f.get("ephemeral")
            ]
            last_seq = max([ack["seq"], *durable])

        # bob's connection is gone; carol joins late and bob comes back, both mid-stream.
        async with server.client("carol") as c, server.client("bob") as b2:
            late, back = Watcher(c, sid), Watcher(b2, sid)
            await late.subscribe()
            await back.subscribe(since_seq=last_seq)
            for w in (late, back):
                snap = await w.event("stream.snapshot")
                (s,) = snap["streams"]
                assert s["stream_id"] == stream_id
                assert s["text"] == "".join(WORDS[:10])
                assert s["length"] == len(s["text"].encode())
            gate.set()
            streams = [await w.finished(stream_id) for w in (early, late, back)]
    assert [s.text for s in streams] == [reply.text()] * 3
    for w in (late, back):
        assert w.asm.gaps == 0, "after the snapshot every delta followed on"


async def test_streams_frame_and_rest_return_the_text_so_far(
    server: RunningServer, llm: FakeLLM
) -> None:
    sid = await session_with(server, provider="openai", model="m")
    gate = asyncio.Event()
    llm.script(Reply(chunks=["one ", "two ", "three"], gate=gate, gate_after=2))
    async with server.client("alice") as a, server.http("bob") as h:
        w = Watcher(a, sid)
        await w.subscribe()
        answer = await ask(a, sid, "helper", text="count")
        await w.wait(lambda: w.asm.text(answer["stream_id"]) == "one two ")
        reply = await a.request({"type": "streams", "session": sid})
        assert reply["type"] == "ack"
        assert reply["streams"] == 1
        r = await h.get(f"/sessions/{sid}/streams")
        (item,) = r.json()["items"]
        assert (item["stream_id"], item["text"]) == (answer["stream_id"], "one two ")
        assert item["assistant"]["name"] == "helper"
        gate.set()
        await w.finished(answer["stream_id"])
        r = await h.get(f"/sessions/{sid}/streams")
        assert r.json()["items"] == []


# -- stop ------------------------------------------------------------------------------------


async def test_stop_by_another_participant_stores_the_partial_as_cancelled(
    server: RunningServer, llm: FakeLLM
) -> None:
    sid = await session_with(server, provider="anthropic", model="m")
    gate = asyncio.Event()
    llm.script(Reply(chunks=WORDS, gate=gate, gate_after=3))
    async with server.client("alice") as a, server.client("bob") as b, server.client("eve") as e:
        async with server.http("alice") as h:  # eve exists since she connected
            r = await h.post(
                f"/sessions/{sid}/participants", json={"user_id": "eve", "role": "viewer"}
            )
            assert r.status_code == 201, r.text
        w = Watcher(a, sid)
        await w.subscribe()
        answer = await ask(a, sid, "helper", text="tell me everything")
        stream_id = answer["stream_id"]
        await w.wait(lambda: w.asm.text(stream_id) == "".join(WORDS[:3]))
        refused = await e.request({"type": "stop", "session": sid, "stream_id": stream_id})
        assert refused["code"] == "forbidden", "a viewer may not stop an answer"
        stopped = await b.request({"type": "stop", "session": sid, "stream_id": stream_id})
        assert stopped["status"] == "stopping"
        stream = await w.finished(stream_id)
    assert stream.finish_reason == "cancelled"
    assert stream.final == "".join(WORDS[:3])
    meta = answer_of(w, stream_id)["metadata"]
    assert meta["finish_reason"] == "cancelled"
    assert meta["stopped_by"] == "bob"
    gate.set()


# -- failures --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["openai", "openai_responses", "anthropic"])
async def test_429_then_success_is_retried(server: RunningServer, llm: FakeLLM, kind: str) -> None:
    sid = await session_with(server, provider=kind, model="m")
    llm.script(Reply(status=429, headers={"retry-after": "0"}), Reply(chunks=["fine ", "now"]))
    async with server.client("alice") as a:
        w = Watcher(a, sid)
        await w.subscribe()
        answer = await ask(a, sid, "helper", text="hi")
        stream = await w.finished(answer["stream_id"])
    assert stream.text == "fine now"
    (retry,) = w.events("stream.retry")
    assert (retry["attempt"], retry["reason"], retry["status"]) == (1, "rate_limited", 429)
    assert answer_of(w, answer["stream_id"])["metadata"]["attempts"] == 2
    assert len(llm.requests) == 2


async def test_overloaded_before_the_first_token_is_retried(
    server: RunningServer, llm: FakeLLM
) -> None:
    sid = await session_with(server, provider="anthropic", model="m")
    llm.script(Reply(status=529, error="overloaded"), Reply(error_after=0), Reply(chunks=["ok"]))
    async with server.client("alice") as a:
        w = Watcher(a, sid)
        await w.subscribe()
        answer = await ask(a, sid, "helper", text="hi")
        stream = await w.finished(answer["stream_id"])
    assert stream.final == "ok"
    assert [r["reason"] for r in w.events("stream.retry")] == ["overloaded", "overloaded"]


@pytest.mark.parametrize("kind", ["openai", "openai_responses", "anthropic"])
async def test_mid_stream_error_is_reported_and_the_partial_stored(
    server: RunningServer, llm: FakeLLM, kind: str
) -> None:
    sid = await session_with(server, provider=kind, model="m")
    llm.script(Reply(chunks=WORDS, error_after=4))
    async with server.client("alice") as a:
        w = Watcher(a, sid)
        await w.subscribe()
        answer = await ask(a, sid, "helper", text="hi")
        stream = await w.finished(answer["stream_id"])
    partial = "".join(WORDS[:4])
    assert stream.text == stream.final == partial
    assert stream.finish_reason == "interrupted"
    (err,) = w.events("stream.error")
    assert err["partial"] is True
    assert err["kind"] in ("server", "overloaded")
    meta = answer_of(w, answer["stream_id"])["metadata"]
    assert meta["error"]["kind"] == err["kind"]
    assert not w.events("stream.retry"), "no retry after the first token"
    assert len(llm.requests) == 1


async def test_errors_that_never_succeed_store_a_notice_and_never_leak_the_key(
    server: RunningServer, llm: FakeLLM
) -> None:
    sid = await session_with(server, provider="openai", model="m")
    llm.script(Reply(status=401, error="auth", message=f"Incorrect API key provided: {OPENAI_KEY}"))
    async with server.client("alice") as a:
        w = Watcher(a, sid)
        await w.subscribe()
        answer = await ask(a, sid, "helper", text="hi")
        stream = await w.finished(answer["stream_id"])
    assert stream.finish_reason == "error"
    message = answer_of(w, answer["stream_id"])
    assert message["text"] == ""
    assert message["parts"] == [{"type": "notice", "finish_reason": "error"}]
    assert message["metadata"]["error"]["kind"] == "auth"
    assert len(llm.requests) == 1, "an auth error is not retried"
    everything = json.dumps(w.seen)
    assert OPENAI_KEY not in everything
    assert "[redacted]" in message["metadata"]["error"]["message"]


# -- assistants, triggers, policies ----------------------------------------------------------


async def test_triggers_mention_every_message_and_manual(
    server: RunningServer, llm: FakeLLM
) -> None:
    sid = await server.create_session("alice")
    async with server.http("alice") as h:
        await add_assistant(h, sid, name="Mentioned", trigger="mention", params={"reply": "m"})
        await add_assistant(h, sid, name="Chatty", trigger="message", params={"reply": "c"})
        await add_assistant(h, sid, name="Quiet", trigger="manual", params={"reply": "q"})
    async with server.client("alice") as a, server.client("robot", kind="bot") as bot:
        w = Watcher(a, sid)
        await w.subscribe()
        await bot.say(sid, "a bot speaks, @mentioned")  # mention: yes; every message: humans only
        started = await w.event("stream.started")
        assert started["assistant"]["name"] == "Mentioned"
        await w.finished(started["stream_id"])
        await a.say(sid, "hello everyone")  # Chatty answers, once: answers trigger nobody
        started = await w.event("stream.started")
        assert started["assistant"]["name"] == "Chatty"
        await w.finished(started["stream_id"])
        await ask(a, sid, "quiet", text="only when asked")
        # Chatty answers the ask's prompt too (every human message); Quiet only when asked.

        def all_done() -> bool:
            streams = w.asm.streams.values()
            return len(streams) == 4 and all(x.final is not None for x in streams)

        await w.wait(all_done)
    names = [s["assistant"]["name"] for s in w.events("stream.started")]
    assert sorted(names) == ["Chatty", "Chatty", "Mentioned", "Quiet"]
    assert all(s.startswith("[scripted] ") for s in (x.final or "" for x in w.asm.streams.values()))


@pytest.mark.parametrize("policy", list(BusyPolicy))
async def test_busy_policies(server: RunningServer, llm: FakeLLM, policy: BusyPolicy) -> None:
    sid = await session_with(server, provider="openai", model="m", busy_policy=str(policy))
    gate = asyncio.Event()
    llm.script(Reply(chunks=["first ", "answer"], gate=gate, gate_after=1), Reply(chunks=["2nd"]))
    async with server.client("alice") as a:
        w = Watcher(a, sid)
        await w.subscribe()
        first = await ask(a, sid, "helper", text="one")
        await w.wait(lambda: w.asm.text(first["stream_id"]) == "first ")
        second = await a.request(
            {"type": "ask", "session": sid, "assistant": "helper", "text": "two"}
        )
        if policy is BusyPolicy.REJECT:
            assert second["code"] == "assistant_busy"
            assert second["details"]["stream_id"] == first["stream_id"]
            gate.set()
            assert (await w.finished(first["stream_id"])).final == "first answer"
            return
        assert (second["status"], second["position"]) == ("queued", 1)
        if policy is BusyPolicy.QUEUE:
            gate.set()
            assert (await w.finished(first["stream_id"])).final == "first answer"
        else:
            one = await w.finished(first["stream_id"])
            assert (one.finish_reason, one.final) == ("cancelled", "first ")
            assert answer_of(w, first["stream_id"])["metadata"]["stopped_by"] == "interrupt"
            gate.set()
        two = await w.finished(second["stream_id"])
    assert (two.final, two.finish_reason) == ("2nd", "stop")
    assert answer_of(w, second["stream_id"])["parent_id"] == second["prompt_id"]


async def test_tenant_concurrency_limit(
    llm: FakeLLM, sqlite_url: str, settings_factory: Callable[..., Settings]
) -> None:
    settings = relay_settings(
        llm, settings_factory, database_url=sqlite_url, relay_tenant_concurrency=1
    )
    async with start_server(settings) as server:
        sid = await server.create_session("alice")
        async with server.http("alice") as h:
            await add_assistant(h, sid, name="one", provider="openai", model="m")
            await add_assistant(h, sid, name="two", provider="openai", model="m")
        gate = asyncio.Event()
        llm.script(Reply(chunks=["a", "b"], gate=gate, gate_after=1))
        async with server.client("alice") as a:
            w = Watcher(a, sid)
            await w.subscribe()
            first = await ask(a, sid, "one", text="go")
            refused = await a.request({"type": "ask", "session": sid, "assistant": "two"})
            assert refused["code"] == "generation_limit"
            gate.set()
            await w.finished(first["stream_id"])
            second = await ask(a, sid, "two")  # no text: answers the latest message
            assert second["status"] == "started"
            await w.finished(second["stream_id"])


async def test_assistants_rest(server: RunningServer) -> None:
    sid = await server.create_session("alice")
    async with server.http("alice") as h, server.http("mallory", tenant="other") as other:
        view = await add_assistant(h, sid, name="Helper", params={"token_delay": 1.0})
        assert view["user_id"].startswith("assistant.")
        assert view["trigger"] == "mention"
        r = await h.post(f"/sessions/{sid}/assistants", json={"name": "helper"})
        assert (r.status_code, r.json()["error"]["code"]) == (409, "conflict")
        r = await h.post(f"/sessions/{sid}/assistants", json={"name": "x", "provider": "magic"})
        assert r.status_code == 422
        bad = {"name": "x", "provider": "openai", "model": "m", "params": {"temprature": 1}}
        r = await h.post(f"/sessions/{sid}/assistants", json=bad)
        assert r.status_code == 422
        assert "temperature" in r.json()["error"]["details"]["allowed"]
        r = await h.post(f"/sessions/{sid}/assistants", json={"name": "@bad name"})
        assert r.status_code == 422
        r = await other.get(f"/sessions/{sid}/assistants")
        assert r.status_code == 404, "another tenant sees nothing"
        r = await h.patch(
            f"/sessions/{sid}/assistants/helper", json={"name": "Sage", "busy_policy": "reject"}
        )
        assert r.status_code == 200
        assert r.json()["busy_policy"] == "reject"
        parts = (await h.get(f"/sessions/{sid}/participants")).json()["items"]
        assert {"Sage": "assistant"}.items() <= {p["name"]: p["kind"] for p in parts}.items()
        r = await h.get(f"/sessions/{sid}/assistants/sage")
        assert r.json()["name"] == "Sage"
        r = await h.post(f"/sessions/{sid}/assistants/sage/ask", json={"text": "hi"})
        assert r.status_code == 202
        assert r.json()["status"] in ("started", "queued")
        r = await h.delete(f"/sessions/{sid}/assistants/sage")
        assert r.status_code == 204
        r = await h.get(f"/sessions/{sid}/assistants")
        assert r.json()["items"] == []
        events = (await h.get(f"/sessions/{sid}/events")).json()["items"]
        assert events[-2]["event"] == "message.created", "the stopped answer is stored first"
        assert events[-2]["data"]["message"]["metadata"]["finish_reason"] == "cancelled"
        assert events[-1]["event"] == "participant.left", "then the assistant leaves"
    async with server.http("bob") as bob:
        r = await bob.post(f"/sessions/{sid}/assistants", json={"name": "mine"})
        assert r.status_code == 403, "only owners and editors manage assistants"


# -- process death and shutdown --------------------------------------------------------------


async def test_the_reaper_stores_a_dead_processes_stream_as_interrupted(
    llm: FakeLLM, sqlite_url: str, settings_factory: Callable[..., Settings]
) -> None:
    settings = relay_settings(llm, settings_factory, database_url=sqlite_url, relay_lease_ttl=0.6)
    async with start_server(settings) as server:
        sid = await session_with(server)
        relay = server.app.state.relay
        async with server.http("alice") as h:
            (spec,) = (await h.get(f"/sessions/{sid}/assistants")).json()["items"]
            prompt = (await h.post(f"/sessions/{sid}/messages", json={"text": "q"})).json()
        async with server.client("bob") as b:
            w = Watcher(b, sid)
            await w.subscribe()
            # A stream whose process died: it holds the slot, has text, and renews nothing.
            info = StreamInfo(
                "01a20f00-0000-7000-8000-00000000dead",
                "acme",
                sid,
                spec["id"],
                "helper",
                spec["user_id"],
                "scripted",
                "scripted",
                prompt["message"]["id"],
                "alice",
                0.0,
            )
            await relay.store.begin(
                info, owner="dead-process", policy=BusyPolicy.QUEUE, queue_limit=8, tenant_limit=8
            )
            await relay.store.append("acme", info.stream_id, "half an ans")
            stream = await w.finished(info.stream_id)
        assert (stream.finish_reason, stream.final) == ("interrupted", "half an ans")
        message = answer_of(w, info.stream_id)
        assert message["metadata"]["error"]["kind"] == "owner_lost"
        assert message["parent_id"] == prompt["message"]["id"]


async def test_a_stopping_server_stores_running_answers_as_interrupted(
    llm: FakeLLM, sqlite_url: str, settings_factory: Callable[..., Settings]
) -> None:
    settings = relay_settings(llm, settings_factory, database_url=sqlite_url)
    gate = asyncio.Event()
    async with start_server(settings) as server:
        sid = await session_with(server, provider="openai", model="m")
        llm.script(Reply(chunks=["never ", "finished"], gate=gate, gate_after=1))
        async with server.client("alice") as a:
            w = Watcher(a, sid)
            await w.subscribe()
            answer = await ask(a, sid, "helper", text="go")
            await w.wait(lambda: w.asm.text(answer["stream_id"]) == "never ")
    async with start_server(settings) as again, again.http("alice") as h:
        items = (await h.get(f"/sessions/{sid}/messages")).json()["items"]
        (stored,) = [m for m in items if m["metadata"].get("stream_id") == answer["stream_id"]]
        assert (stored["text"], stored["metadata"]["finish_reason"]) == ("never ", "interrupted")
    gate.set()


async def test_provider_timeouts(
    llm: FakeLLM, sqlite_url: str, settings_factory: Callable[..., Settings]
) -> None:
    settings = relay_settings(
        llm,
        settings_factory,
        database_url=sqlite_url,
        relay_first_token_timeout=0.3,
        relay_idle_timeout=0.3,
        relay_max_attempts=2,
    )
    never = asyncio.Event()  # a provider that stops sending and never resumes
    async with start_server(settings) as server:
        sid = await session_with(server, provider="openai", model="m")
        async with server.client("alice") as a:
            w = Watcher(a, sid)
            await w.subscribe()
            # Silent before the first token: retried, then given up.
            llm.script(Reply(gate=never, gate_after=0), Reply(gate=never, gate_after=0))
            first = await ask(a, sid, "helper", text="anyone there?")
            silent = await w.finished(first["stream_id"])
            assert silent.finish_reason == "error"
            assert [r["reason"] for r in w.events("stream.retry")] == ["timeout"]
            # Silent after two tokens: not retried; the partial is stored as interrupted.
            llm.script(Reply(chunks=["half ", "an ", "answer"], gate=never, gate_after=2))
            second = await ask(a, sid, "helper", text="and now?")
            stalled = await w.finished(second["stream_id"])
            assert (stalled.finish_reason, stalled.final) == ("interrupted", "half an ")
            assert answer_of(w, second["stream_id"])["metadata"]["error"]["kind"] == "timeout"
    never.set()

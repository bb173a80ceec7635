"""The Python bot SDK (``parley.client``) against a real server: joining, handlers, replies,
typing, presence, reconnects with resume, typed errors, and the example bots."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Generic, TypeVar

import pytest

from parley.client import (
    Backoff,
    Event,
    Message,
    MessageContext,
    NotFound,
    ParleyClient,
    StreamStopped,
    Unauthenticated,
)
from parley.config import Settings
from parley.errors import CloseCode
from parley.governance.auth import UserKind
from parley.relay.assembler import StreamAssembler
from tests.services import free_port
from tests.support import RunningServer, WsClient, start_server

TIMEOUT = 10.0
T = TypeVar("T")


@asynccontextmanager
async def bot(server: RunningServer, user: str = "echo", **kw: Any) -> AsyncIterator[ParleyClient]:
    token = server.token(user, kind=UserKind.BOT)
    kw.setdefault("backoff", Backoff(base=0.05, max_delay=0.5))
    async with ParleyClient(server.base_url, token, **kw) as client:
        yield client


class Seen(Generic[T]):
    """What handlers saw, with a way to wait until it is enough."""

    def __init__(self) -> None:
        self.items: list[T] = []
        self._changed = asyncio.Event()

    def add(self, item: T) -> None:
        self.items.append(item)
        self._changed.set()

    async def wait(self, predicate: Callable[[list[T]], bool], timeout: float = TIMEOUT) -> list[T]:
        async with asyncio.timeout(timeout):
            while not predicate(self.items):
                self._changed.clear()
                await self._changed.wait()
        return self.items


async def message_from(human: WsClient, author: str, timeout: float = TIMEOUT) -> dict[str, Any]:
    event = await human.wait_for(
        lambda f: f.get("event") == "message.created" and f["data"]["message"]["author"] == author,
        timeout,
    )
    message: dict[str, Any] = event["data"]["message"]
    return message


async def test_bot_replies_to_a_human_and_the_human_sees_it(server: RunningServer) -> None:
    sid = await server.create_session("alice")
    async with bot(server) as client:
        seen: list[Message] = []

        @client.on_message
        async def echo(message: Message, ctx: MessageContext) -> None:
            seen.append(message)
            await ctx.reply(f"echo: {message.text}")

        joined = await client.join(sid)
        assert joined.seq == 2
        assert [p.user_id for p in joined.presence] == ["echo"]
        async with server.client("alice") as alice:
            await alice.subscribe(sid)
            sent = await alice.say(sid, "hello bot")
            reply = await message_from(alice, "echo")
            assert reply["text"] == "echo: hello bot"
            assert reply["parent_id"] == sent["message_id"]
        # the bot never answered its own reply
        assert [m.text for m in seen] == ["hello bot"]
        assert seen[0].author == "alice"
        # the reply is stored
        messages = await client.rest.list_messages(sid)
        assert [m.text for m in messages] == ["hello bot", "echo: hello bot"]


async def test_mentions_filter_and_own_messages(sqlite_server: RunningServer) -> None:
    server = sqlite_server
    sid = await server.create_session("alice")
    async with bot(server, "helper") as client:
        mentioned: list[str] = []
        everything: Seen[str] = Seen()

        @client.on_message(mentioned=True)
        async def on_mention(message: Message, ctx: MessageContext) -> None:
            mentioned.append(ctx.text)

        @client.on_message(include_own=True)
        async def on_any(message: Message, ctx: MessageContext) -> None:
            everything.add(message.text)

        await client.join(sid)
        await client.send(sid, "I am the bot")
        async with server.http("alice") as h:
            for text in ["no mention here", "hey @Helper  do   this", "mail@helper is not one"]:
                r = await h.post(f"/sessions/{sid}/messages", json={"text": text})
                assert r.status_code == 201
        seen = await everything.wait(lambda items: len(items) == 4)
        assert mentioned == ["hey do this"]
        assert seen[0] == "I am the bot"


async def test_handler_exceptions_are_logged_and_the_bot_goes_on(
    sqlite_server: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server = sqlite_server
    sid = await server.create_session("alice")
    async with bot(server) as client:
        handled: Seen[str] = Seen()

        @client.on_message
        async def fragile(message: Message, ctx: MessageContext) -> None:
            if message.text == "boom":
                raise RuntimeError("handler broke")
            handled.add(message.text)

        await client.join(sid)
        async with server.http("alice") as h:
            for text in ["boom", "after"]:
                await h.post(f"/sessions/{sid}/messages", json={"text": text})
        assert await handled.wait(lambda items: len(items) == 1) == ["after"]
    logged = capsys.readouterr().out
    assert "handler failed" in logged
    assert "RuntimeError: handler broke" in logged  # with its traceback


async def test_typing_and_presence_are_seen_by_others(sqlite_server: RunningServer) -> None:
    server = sqlite_server
    sid = await server.create_session("alice")
    async with server.client("alice") as alice:
        await alice.subscribe(sid)
        async with bot(server) as client:
            typing: Seen[Event] = Seen()

            @client.on_event("typing")
            async def on_typing(event: Event) -> None:
                typing.add(event)

            joined = await client.join(sid)
            assert sorted(p.user_id for p in joined.presence) == ["alice", "echo"]
            arrived = await alice.wait_for(lambda f: f.get("event") == "presence.joined")
            assert arrived["data"]["user_id"] == "echo"
            assert [p.user_id for p in await client.presence(sid)] == ["alice", "echo"]

            async with client.typing_while(sid, interval=0.05):
                first = await alice.wait_for(lambda f: f.get("event") == "typing")
                assert first["data"] == {"user_id": "echo", "name": "echo", "active": True}
            stopped = await alice.wait_for(
                lambda f: f.get("event") == "typing" and not f["data"]["active"]
            )
            assert stopped["data"]["user_id"] == "echo"

            await alice.request({"type": "typing", "session": sid})
            await typing.wait(lambda items: any(e.data["user_id"] == "alice" for e in items))
        left = await alice.wait_for(lambda f: f.get("event") == "presence.left")
        assert left["data"]["user_id"] == "echo"
    async with bot(server) as client:
        departures: Seen[Event] = Seen()

        @client.on_event("presence.left")
        async def on_left(event: Event) -> None:
            departures.add(event)

        async with server.client("alice") as alice:
            await alice.subscribe(sid)
            await client.join(sid)
            assert [p.user_id for p in client.present(sid)] == ["alice", "echo"]
        await departures.wait(lambda items: len(items) == 1)
        assert [p.user_id for p in client.present(sid)] == ["echo"]


async def test_bad_token_raises_unauthenticated(sqlite_server: RunningServer) -> None:
    client = ParleyClient(sqlite_server.base_url, "not-a-token")
    with pytest.raises(Unauthenticated) as err:
        await client.connect()
    assert err.value.code == "unauthenticated"
    expired = sqlite_server.token("echo", kind=UserKind.BOT, ttl_seconds=-10)
    with pytest.raises(Unauthenticated):
        async with ParleyClient(sqlite_server.base_url, expired):
            pass


async def test_server_errors_are_typed(server: RunningServer) -> None:
    other = await server.create_session("zed", tenant="other")
    async with bot(server) as client:
        with pytest.raises(NotFound) as err:
            await client.join(other)
        assert err.value.code == "not_found"
        with pytest.raises(NotFound) as rest_err:
            await client.rest.get_session(other)
        assert rest_err.value.status == 404
        assert client.joined() == []


def _bot_connections(server: RunningServer, user: str) -> list[Any]:
    hub = server.app.state.hub
    return [c for c in hub.connections if c.principal is not None and c.principal.user_id == user]


async def test_connection_killed_by_the_server_resumes_without_gaps_or_duplicates(
    sqlite_server: RunningServer,
) -> None:
    server = sqlite_server
    sid = await server.create_session("alice")
    async with bot(server) as client:
        handled: Seen[Message] = Seen()

        @client.on_message
        async def answer(message: Message, ctx: MessageContext) -> None:
            await ctx.reply(f"re {message.text}")
            handled.add(message)  # after its reply is stored

        await client.join(sid)
        async with server.http("alice") as h:
            await h.post(f"/sessions/{sid}/messages", json={"text": "m0"})
            await handled.wait(lambda items: len(items) == 1)
            (conn,) = _bot_connections(server, "echo")
            conn.close(CloseCode.SLOW_CONSUMER, "test: cut off")
            for i in range(1, 6):
                r = await h.post(f"/sessions/{sid}/messages", json={"text": f"m{i}"})
                assert r.status_code == 201
            await handled.wait(lambda items: len(items) == 6)
            assert [m.text for m in handled.items] == [f"m{i}" for i in range(6)]
            assert client.transport.reconnects >= 1
            r = await h.get(f"/sessions/{sid}/messages")
            replies = [m for m in r.json()["items"] if m["author"] == "echo"]
        assert sorted(m["text"] for m in replies) == [f"re m{i}" for i in range(6)]
        assert client.last_seq(sid) == max(m["seq"] for m in r.json()["items"])


async def test_send_cut_off_by_a_reconnect_is_stored_once(sqlite_server: RunningServer) -> None:
    server = sqlite_server
    sid = await server.create_session("alice")
    async with bot(server) as client:
        await client.join(sid)
        results = []
        for i in range(5):
            pending = asyncio.ensure_future(client.send(sid, f"retry {i}", client_id=f"k{i}"))
            await asyncio.sleep(0)  # the frame is handed to the socket...
            await client.transport.kill()  # ...which drops before the ack can come back
            results.append(await pending)
        assert [r.client_id for r in results] == [f"k{i}" for i in range(5)]
        texts = [m.text for m in await client.rest.list_messages(sid)]
        assert texts == [f"retry {i}" for i in range(5)]


async def test_server_restart_on_the_same_database_resumes_every_joined_session(
    database_url: str, settings_factory: Callable[..., Settings]
) -> None:
    settings = settings_factory(database_url=database_url, port=free_port())
    async with start_server(settings) as server:
        first = await server.create_session("alice")
        second = await server.create_session("alice")
        client = ParleyClient(
            server.base_url,
            server.token("echo", kind=UserKind.BOT),
            backoff=Backoff(base=0.05, max_delay=0.3),
        )
        await client.connect()
        handled: Seen[Message] = Seen()

        @client.on_message
        async def answer(message: Message, ctx: MessageContext) -> None:
            await ctx.reply(f"re {message.text}")
            handled.add(message)  # after its reply is stored

        await client.join(first)
        await client.join(second)
        async with server.http("alice") as h:
            for sid in (first, second):
                await h.post(f"/sessions/{sid}/messages", json={"text": f"before {sid[-4:]}"})
        await handled.wait(lambda items: len(items) == 2)
    try:
        async with start_server(settings) as server:
            async with server.http("alice") as h:
                for i in range(3):
                    for sid in (first, second):
                        r = await h.post(f"/sessions/{sid}/messages", json={"text": f"after {i}"})
                        assert r.status_code == 201
            await handled.wait(lambda items: len(items) == 8)
            for sid in (first, second):
                texts = [m.text for m in handled.items if m.session == sid]
                assert texts == [f"before {sid[-4:]}"] + [f"after {i}" for i in range(3)]
                async with server.http("alice") as h:
                    items = (await h.get(f"/sessions/{sid}/messages")).json()["items"]
                replies = sorted(m["text"] for m in items if m["author"] == "echo")
                assert replies == sorted(f"re {t}" for t in texts)
    finally:
        await client.close()


async def test_streamed_reply_reaches_watchers_in_order_and_is_stored(
    server: RunningServer,
) -> None:
    sid = await server.create_session("alice")
    pieces = ["Once ", "upon ", "a “time”, ", "🙂 ", "the ", "end."]
    async with bot(server, "teller") as client:

        @client.on_message
        async def tell(message: Message, ctx: MessageContext) -> None:
            async with ctx.stream_reply(metadata={"story": True}) as stream:
                for piece in pieces:
                    await stream.write(piece)
                    await asyncio.sleep(0.05)  # a model producing tokens

        await client.join(sid)
        async with server.client("alice") as alice:
            await alice.subscribe(sid)
            assembler = StreamAssembler()
            prompt = await alice.say(sid, "tell me a story")
            deltas: list[dict[str, Any]] = []
            while True:
                frame = await alice.wait_for(lambda f: f["type"] == "event")
                assert not assembler.feed(frame)  # never out of order
                if frame["event"] == "stream.delta":
                    deltas.append(frame["data"])
                if frame["event"] == "stream.finished":
                    break
            started = next(iter(assembler.streams.values()))
            assert started.info["assistant"]["user_id"] == "teller"
            assert started.info["prompt_id"] == prompt["message_id"]
            assert started.final == "".join(pieces)
            assert started.text == "".join(pieces)
            assert len(deltas) > 1  # it really streamed
            assert [d["offset"] for d in deltas[1:]] == [d["end"] for d in deltas[:-1]]
            assert started.finish_reason == "stop"
        stored = await client.rest.list_messages(sid)
        answer = stored[-1]
        assert answer.author == "teller"
        assert answer.text == "".join(pieces)
        assert answer.parent_id == prompt["message_id"]
        assert answer.metadata["story"] is True
        assert answer.metadata["finish_reason"] == "stop"


async def test_joining_mid_stream_gets_the_text_so_far(sqlite_server: RunningServer) -> None:
    server = sqlite_server
    sid = await server.create_session("alice")
    async with bot(server, "teller") as client:
        await client.join(sid)
        async with client.stream(sid) as stream:
            await stream.write("first half, ")
            await stream.flush()
            async with server.client("alice") as alice:
                # alice's subscribe ack is followed by the stream's text so far
                await alice.subscribe(sid)
                snapshot = await alice.wait_for(lambda f: f.get("event") == "stream.snapshot")
                (running,) = snapshot["data"]["streams"]
                assert running["text"] == "first half, "
                assembler = StreamAssembler()
                assembler.feed(snapshot)
                await stream.write("second half")
                delta = await alice.wait_for(lambda f: f.get("event") == "stream.delta")
                assembler.feed(delta)
                assert assembler.text(running["stream_id"]) == "first half, second half"
        assert stream.result is not None
        assert stream.result.seq == 4  # after the bot's participant.joined (3)
        (message,) = await client.rest.list_messages(sid)
        assert message.text == "first half, second half"


async def test_a_user_can_stop_a_bot_stream(sqlite_server: RunningServer) -> None:
    server = sqlite_server
    sid = await server.create_session("alice")
    async with bot(server, "teller") as client, server.client("alice") as alice:
        await client.join(sid)
        await alice.subscribe(sid)
        stream = client.stream(sid)
        stream_id = await stream.start()
        await stream.write("some text")
        await alice.wait_for(lambda f: f.get("event") == "stream.delta")
        stopped = await alice.request({"type": "stop", "session": sid, "stream_id": stream_id})
        assert stopped["status"] == "stopping"
        finished = await alice.wait_for(lambda f: f.get("event") == "stream.finished")
        assert finished["data"]["finish_reason"] == "cancelled"
        assert finished["data"]["stopped_by"] == "alice"
        await stream.write("more ")
        with pytest.raises(StreamStopped):
            await stream.flush()
        with pytest.raises(StreamStopped):
            await stream.write("and more")
        (message,) = await client.rest.list_messages(sid)
        assert message.text == "some text"
        assert message.metadata["finish_reason"] == "cancelled"


async def test_a_stream_cut_by_a_reconnect_is_stored_once_and_whole(
    server: RunningServer,
) -> None:
    sid = await server.create_session("alice")
    async with bot(server, "teller") as client, server.client("alice") as alice:
        await client.join(sid)
        await alice.subscribe(sid)
        async with client.stream(sid) as stream:
            await stream.write("before the cut, ")
            await alice.wait_for(lambda f: f.get("event") == "stream.delta")
            await client.transport.kill()
            interrupted = await alice.wait_for(lambda f: f.get("event") == "stream.finished")
            assert interrupted["data"]["finish_reason"] == "interrupted"
            await stream.write("after the cut.")
        assert stream.interrupted
        (message,) = await client.rest.list_messages(sid)
        assert message.text == "before the cut, after the cut."
        assert message.author == "teller"


async def test_stream_frames_refuse_what_they_must(sqlite_server: RunningServer) -> None:
    server = sqlite_server
    sid = await server.create_session("alice")
    async with server.client("bob") as bob, server.client("carol") as carol:
        started = await bob.request({"type": "stream_start", "session": sid})
        assert started["type"] == "ack"
        stream_id = started["stream_id"]
        again = await bob.request({"type": "stream_start", "session": sid})
        assert again["code"] == "assistant_busy"
        # only the connection that started it may write it
        other = await carol.request(
            {"type": "stream_delta", "session": sid, "stream_id": stream_id, "text": "x"}
        )
        assert other["code"] == "not_found"
        empty = await bob.request(
            {"type": "stream_delta", "session": sid, "stream_id": stream_id, "text": ""}
        )
        assert empty["code"] == "invalid_frame"
        bad_parent = await carol.request(
            {"type": "stream_start", "session": sid, "parent_id": "nope"}
        )
        assert bad_parent["code"] == "not_found"
        ended = await bob.request({"type": "stream_end", "session": sid, "stream_id": stream_id})
        assert ended["message_id"] is None  # nothing written, nothing stored
        late = await bob.request(
            {"type": "stream_delta", "session": sid, "stream_id": stream_id, "text": "x"}
        )
        assert late["code"] == "conflict"
    other_tenant = await server.create_session("zed", tenant="other")
    async with server.client("bob") as bob:
        hidden = await bob.request({"type": "stream_start", "session": other_tenant})
        assert hidden["code"] == "not_found"


EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@asynccontextmanager
async def example_bot(
    server: RunningServer, script: str, user: str, sid: str, *extra: str
) -> AsyncIterator[asyncio.subprocess.Process]:
    """Run an example bot as its own process until it has joined ``sid``; SIGTERM at the end
    must stop it cleanly."""
    token = server.token(user, kind=UserKind.BOT)
    args = ["--url", server.base_url, "--token", token, "--session", sid, *extra]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLES / script),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert proc.stdout is not None
    output: list[str] = []
    try:
        async with asyncio.timeout(30):
            while f"joined {sid}" not in "".join(output):
                line = await proc.stdout.readline()
                assert line, "the bot exited early:\n" + "".join(output)
                output.append(line.decode())
        yield proc
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            async with asyncio.timeout(30):
                rest = await proc.stdout.read()
                code = await proc.wait()
            assert code == 0, "".join(output) + rest.decode()


async def test_echo_bot_example_answers_and_stops_cleanly(server: RunningServer) -> None:
    sid = await server.create_session("alice")
    async with (
        example_bot(server, "echo_bot.py", "echo", sid, "--stream"),
        server.client("alice") as alice,
    ):
        await alice.subscribe(sid)
        sent = await alice.say(sid, "is anybody there?")
        started = await alice.wait_for(lambda f: f.get("event") == "stream.started")
        assert started["data"]["assistant"]["user_id"] == "echo"
        reply = await message_from(alice, "echo", timeout=20)
        assert reply["text"] == "echo: is anybody there?"
        assert reply["parent_id"] == sent["message_id"]


async def test_summarize_bot_example_summarizes_on_request(server: RunningServer) -> None:
    sid = await server.create_session("alice")
    conversation = [
        "Morning! The database migration failed again last night.",
        "Which database migration? The billing one?",
        "Yes. The billing database migration locks the invoices table for an hour.",
        "Lunch at noon?",
        "We could split the billing migration into batches so the invoices table stays free.",
        "Good idea, batches it is.",
    ]
    async with (
        example_bot(server, "summarize_bot.py", "summarizer", sid, "--sentences", "2"),
        server.client("alice") as alice,
    ):
        await alice.subscribe(sid)
        for text in conversation:
            await alice.say(sid, text)
        await alice.say(sid, "@summarizer hello")
        hint = await message_from(alice, "summarizer", timeout=20)
        assert "summarize" in hint["text"]
        await alice.say(sid, "@Summarizer please summarize")
        typing = await alice.wait_for(lambda f: f.get("event") == "typing")
        assert typing["data"]["user_id"] == "summarizer"
        summary = await message_from(alice, "summarizer", timeout=20)
    lines = summary["text"].splitlines()
    assert lines[0] == "Summary of the last 7 messages:"
    assert lines[1:] == [
        "• The database migration failed again last night.",
        "• The billing database migration locks the invoices table for an hour.",
    ]


async def test_rest_helpers_and_history_with_msgpack_frames(server: RunningServer) -> None:
    async with server.http("alice") as h:
        assert (await h.get("/me")).status_code == 200  # alice exists in the tenant
    async with bot(server, "keeper", msgpack=True) as client:
        me = await client.rest.me()
        assert (me.id, me.kind) == ("keeper", "bot")
        session = await client.rest.create_session("bot's own", tags=["Bots"])
        assert (session.title, session.tags, session.created_by) == (
            "bot's own",
            ["bots"],
            "keeper",
        )
        assert session.id in [s.id for s in await client.rest.list_sessions(tag="bots")]
        first, result = await client.rest.post_message(session.id, "one", client_id="k1")
        again, retry = await client.rest.post_message(session.id, "one", client_id="k1")
        assert (result.duplicate, retry.duplicate, again.id) == (False, True, first.id)
        await client.rest.add_participant(session.id, "alice", "commenter")
        roles = {p.user_id: p.role for p in await client.rest.participants(session.id)}
        assert roles == {"keeper": "owner", "alice": "commenter"}

        seen: Seen[Message] = Seen()

        @client.on_message(include_own=True)
        async def record(message: Message, ctx: MessageContext) -> None:
            seen.add(message)

        joined = await client.join(session.id, since_seq=0)  # the whole history first
        assert joined.replayed == joined.seq
        sent = await client.send(session.id, "two ✓")
        await client.edit(session.id, sent.message_id, text="two, edited")
        texts = [m.text for m in await seen.wait(lambda items: len(items) == 2)]
        assert texts == ["one", "two ✓"]
        assert [m.text for m in await client.history(session.id)] == ["one", "two, edited"]
        async with server.client("alice") as alice:
            refused = await alice.request({"type": "send", "session": session.id, "text": "hi"})
            assert refused["code"] == "forbidden"


async def test_a_stream_across_a_server_restart_is_stored_once_and_whole(
    database_url: str, settings_factory: Callable[..., Settings]
) -> None:
    settings = settings_factory(database_url=database_url, port=free_port())
    async with start_server(settings) as server:
        sid = await server.create_session("alice")
        client = ParleyClient(
            server.base_url,
            server.token("teller", kind=UserKind.BOT),
            backoff=Backoff(base=0.05, max_delay=0.3),
        )
        await client.connect()
        await client.join(sid)
        stream = client.stream(sid)
        await stream.start()
        await stream.write("written before the restart, ")
        await stream.flush()
    try:
        # the shutdown stored the text so far as interrupted
        async with start_server(settings) as server:
            async with server.http("alice") as h:
                (partial,) = (await h.get(f"/sessions/{sid}/messages")).json()["items"]
            assert partial["text"] == "written before the restart, "
            assert partial["metadata"]["finish_reason"] == "interrupted"
            await stream.write("and after it.")
            result = await stream.finish()
            assert result is not None
            assert result.message_id == partial["id"]
            async with server.http("alice") as h:
                (whole,) = (await h.get(f"/sessions/{sid}/messages")).json()["items"]
            assert whole["text"] == "written before the restart, and after it."
            assert whole["metadata"]["finish_reason"] == "stop"
            assert whole["edited_at"] is not None
    finally:
        await client.close()


async def test_a_handler_can_close_the_client(sqlite_server: RunningServer) -> None:
    server = sqlite_server
    sid = await server.create_session("alice")
    client = ParleyClient(server.base_url, server.token("echo", kind=UserKind.BOT))
    await client.connect()

    @client.on_message
    async def quit_on_request(message: Message, ctx: MessageContext) -> None:
        await ctx.reply("bye")
        await client.close()

    await client.join(sid)
    async with server.http("alice") as h:
        await h.post(f"/sessions/{sid}/messages", json={"text": "please stop"})
        async with asyncio.timeout(TIMEOUT):
            await client.run_forever()
        items = (await h.get(f"/sessions/{sid}/messages")).json()["items"]
    assert [m["text"] for m in items] == ["please stop", "bye"]

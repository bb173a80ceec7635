"""Every kind of bad frame gets its precise error, and nobody else notices.

A misbehaving client ("mallory") sends malformed, ill-typed, oversized, unauthorised and
too-frequent frames. Each one is answered with the exact error code (echoing the frame's ``id``
as ``ref`` whenever it had a usable one) and the same connection keeps working afterwards, while
a bystander subscribed to a session keeps receiving the messages a third client sends. Only a
frame above the hard transport limit (1009), a bad token or the auth timeout (4001), or a flood
of bad or too-frequent frames (4029) closes a connection, and then only that one.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import msgpack
import orjson
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from parley.config import Settings
from parley.governance.auth import create_token
from parley.protocol.frames import CLIENT_FRAME_TYPES
from parley.server import uvicorn_config
from tests.support import DEFAULT_TIMEOUT, RunningServer, WsClient, start_server

Frame = dict[str, Any]

# -- helpers -----------------------------------------------------------------------------------


def is_error(frame: Frame) -> bool:
    return frame["type"] == "error"


async def answer_to(client: WsClient, data: bytes | str) -> Frame:
    """Send raw ``data``, then a ping; return the one ack or error that came before the pong.

    The pong proves the connection still works after the frame; frames are answered in order,
    so the answer to ``data`` (whatever its ``ref``) is among those that arrived before it.
    """
    await client.send_raw(data)
    sync = await client.request({"type": "ping"})
    assert sync["type"] == "pong", sync
    answers = [f for f in client.backlog if f["type"] in ("ack", "error", "pong", "welcome")]
    for frame in answers:
        client.backlog.remove(frame)
    assert len(answers) == 1, answers
    return answers[0]


def encoded(client: WsClient, frame: Frame) -> bytes | str:
    if client.binary:
        data: bytes = msgpack.packb(frame, use_bin_type=True)
        return data
    return orjson.dumps(frame).decode()


async def refused(
    client: WsClient,
    data: bytes | str,
    code: str,
    *,
    ref: str | int | None = None,
    check_ref: bool = True,
    sync: bool = True,
) -> Frame:
    """Send raw ``data``; it must be answered by an error with ``code`` and ``ref``.

    With ``sync`` (for authenticated connections) a ping follows and must get its pong.
    """
    if sync:
        err = await answer_to(client, data)
    else:
        await client.send_raw(data)
        err = await client.wait_for(is_error)
    assert err["type"] == "error", err
    assert err["code"] == code, err
    if check_ref:
        assert err["ref"] == ref, err
    assert set(err) <= {"type", "ref", "code", "message", "details"}, err
    assert isinstance(err["message"], str), err
    assert err["message"], err
    return err


async def refused_frame(client: WsClient, frame: Frame, code: str, *, sync: bool = True) -> Frame:
    """Send ``frame`` (which has an ``id``) in the client's encoding; expect ``code``."""
    return await refused(client, encoded(client, frame), code, ref=frame["id"], sync=sync)


def fields_named(err: Frame) -> list[str]:
    details = err.get("details")
    assert isinstance(details, list), err
    assert details, err
    for problem in details:
        assert set(problem) == {"field", "problem"}, problem
        assert isinstance(problem["problem"], str), problem
        assert problem["problem"], problem
    return [p["field"] for p in details]


async def still_usable(client: WsClient) -> None:
    """The connection answers a ping with a pong carrying the ping's id."""
    reply = await client.request({"type": "ping"})
    assert reply["type"] == "pong", reply
    assert isinstance(reply["time"], str), reply


def decode(data: bytes | str) -> Frame:
    frame: Frame = (
        msgpack.unpackb(data, raw=False) if isinstance(data, bytes) else orjson.loads(data)
    )
    return frame


async def read_until_closed(
    client: WsClient, timeout: float = DEFAULT_TIMEOUT
) -> tuple[int | None, list[Frame]]:
    """Every frame the server still sends, then the close code it closed with."""
    frames: list[Frame] = list(client.backlog)
    client.backlog.clear()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        while True:
            data = await asyncio.wait_for(client.ws.recv(), max(0.01, deadline - loop.time()))
            frames.append(decode(data))
    except ConnectionClosed as exc:
        return (exc.rcvd.code if exc.rcvd is not None else None), frames


@asynccontextmanager
async def anonymous(server: RunningServer, fmt: str = "json") -> AsyncIterator[WsClient]:
    """A socket opened without a token: it must authenticate with a hello frame."""
    async with connect(f"{server.ws_url}?format={fmt}", max_size=None) as ws:
        yield WsClient(ws, binary=fmt == "msgpack")


@dataclass
class Witness:
    """A talker sends to a session a bystander is subscribed to; both are well-behaved."""

    server: RunningServer
    sid: str
    talker: WsClient
    bystander: WsClient
    sent: list[str] = field(default_factory=list)

    async def check(self) -> None:
        """A new message from the talker reaches the bystander, with the talker's seq."""
        text = f"all is well #{len(self.sent)}"
        ack = await self.talker.say(self.sid, text)
        self.sent.append(text)
        event = await self.bystander.wait_for(
            lambda f: (
                f["type"] == "event"
                and f.get("event") == "message.created"
                and f["data"]["message"]["text"] == text
            )
        )
        assert event["seq"] == ack["seq"], (event, ack)
        assert event["data"]["message"]["author"] == "bob"

    async def stored_texts(self) -> list[str]:
        async with self.server.http("carol") as h:
            r = await h.get(f"/sessions/{self.sid}/messages")
        assert r.status_code == 200, r.text
        return [m["text"] for m in r.json()["items"]]


@asynccontextmanager
async def witness(server: RunningServer) -> AsyncIterator[Witness]:
    sid = await server.create_session("bob", title="bystanders")
    async with server.client("bob") as talker, server.client("carol", binary=True) as bystander:
        await bystander.subscribe(sid)
        w = Witness(server, sid, talker, bystander)
        await w.check()
        yield w
        await w.check()


def small_server(
    settings_factory: Callable[..., Settings], sqlite_url: str, **overrides: Any
) -> AbstractAsyncContextManager[RunningServer]:
    """A SQLite server with some limits changed."""
    return start_server(settings_factory(database_url=sqlite_url, **overrides))


# -- one connection, every malformed frame, both storage backends ------------------------------


async def test_every_bad_frame_gets_its_error_and_bystanders_are_unaffected(
    server: RunningServer,
) -> None:
    async with witness(server) as w, server.client("mallory") as mal:
        sid = w.sid
        await mal.subscribe(sid)
        good = await mal.say(sid, "mallory's one good message", client_id="m-1")
        w.sent.append("mallory's one good message")

        # Not JSON at all: nothing to take an id from.
        await refused(mal, '{"type": "ping", "id": "j1"', "bad_encoding")
        await refused(mal, "", "bad_encoding")
        await still_usable(mal)
        await w.check()

        # Valid JSON, but not an object.
        for text in ("[1, 2]", "42", '"x"', "null", "true"):
            await refused(mal, text, "bad_frame")
        await still_usable(mal)

        # An object without a usable "type"; the id is still echoed.
        await refused(mal, orjson.dumps({"id": "t1", "text": "hi"}).decode(), "bad_frame", ref="t1")
        await refused(mal, orjson.dumps({"id": "t2", "type": 5}).decode(), "bad_frame", ref="t2")
        await refused(mal, orjson.dumps({"id": 7, "type": None}).decode(), "bad_frame", ref=7)
        await refused(
            mal, orjson.dumps({"id": "t3", "type": ["send"]}).decode(), "bad_frame", ref="t3"
        )
        await still_usable(mal)
        await w.check()

        # A type this protocol does not have.
        err = await refused_frame(mal, {"id": "u1", "type": "shout", "text": "hi"}, "unknown_type")
        # the error lists every frame type the server knows, and the core ones are there
        assert err["details"]["known"] == sorted(CLIENT_FRAME_TYPES)
        assert {
            "hello",
            "subscribe",
            "unsubscribe",
            "send",
            "edit",
            "delete",
            "typing",
            "ping",
        } <= set(err["details"]["known"])
        await refused_frame(mal, {"id": 8, "type": "PING"}, "unknown_type")
        await still_usable(mal)

        # Fields of the wrong type, missing, out of range or unknown: invalid_frame, naming them.
        cases: list[tuple[Frame, str]] = [
            ({"type": "subscribe", "session": sid, "since_seq": "3"}, "since_seq"),
            ({"type": "subscribe", "session": sid, "since_seq": 1.5}, "since_seq"),
            ({"type": "subscribe", "session": sid, "since_seq": -1}, "since_seq"),
            ({"type": "subscribe", "session": 12345}, "session"),
            ({"type": "subscribe", "session": ""}, "session"),
            ({"type": "subscribe"}, "session"),
            ({"type": "send", "session": sid, "text": ["a", "b"]}, "text"),
            ({"type": "send", "session": sid, "text": "hi", "client_id": 5}, "client_id"),
            ({"type": "send", "session": sid, "text": "hi", "metadata": [1]}, "metadata"),
            ({"type": "send", "session": sid, "parts": [{"text": "no type"}]}, "parts.0.type"),
            ({"type": "typing", "session": sid, "active": "yes"}, "active"),
            ({"type": "edit", "session": sid, "text": "x"}, "message_id"),
            ({"type": "hello", "token": 42}, "token"),
            ({"type": "ping", "colour": "red"}, "colour"),
            ({"type": "send", "session": sid, "text": "hi", "txet": "typo"}, "txet"),
        ]
        for n, (frame, field_name) in enumerate(cases):
            err = await refused_frame(mal, {"id": f"f{n}", **frame}, "invalid_frame")
            assert fields_named(err) == [field_name], (frame, err)
            assert err["message"].startswith(f"invalid {frame['type']} frame: {field_name}: "), err
        await still_usable(mal)
        await w.check()

        # An id that is not usable is not echoed, and the frame is invalid.
        for bad_id in (True, "", -1, 2**53 + 1, "i" * 129, 1.5, ["a"]):
            await refused(
                mal, orjson.dumps({"id": bad_id, "type": "ping"}).decode(), "invalid_frame"
            )
        await w.check()

        # Well-formed frames the server must still refuse.
        limit = mal.welcome["limits"]["max_text_chars"]
        assert limit == server.settings.max_text_chars
        await refused_frame(
            mal,
            {"id": "x1", "type": "send", "session": sid, "text": "y" * (limit + 1)},
            "text_too_long",
        )
        await refused_frame(
            mal, {"id": "x2", "type": "send", "session": sid, "text": "   "}, "invalid_request"
        )
        await refused_frame(
            mal, {"id": "x3", "type": "subscribe", "session": "no-such-session"}, "not_found"
        )
        await refused_frame(
            mal, {"id": "x4", "type": "typing", "session": "no-such-session"}, "not_subscribed"
        )
        await refused_frame(
            mal,
            {"id": "x5", "type": "unsubscribe", "session": "no-such-session"},
            "not_subscribed",
        )
        await refused_frame(
            mal,
            {"id": "x6", "type": "hello", "token": server.token("mallory")},
            "already_authenticated",
        )
        await still_usable(mal)
        await w.check()

        # Retrying the one good message is still idempotent after all that.
        again = await mal.say(sid, "mallory's one good message", client_id="m-1")
        assert again["duplicate"] is True
        assert (again["seq"], again["message_id"]) == (good["seq"], good["message_id"])
        ack = await mal.say(sid, "mallory's second good message")
        w.sent.append("mallory's second good message")
        assert ack["duplicate"] is False
        assert ack["seq"] > good["seq"]

    # Nothing that was refused was stored; everything acknowledged was, in order.
    assert await w.stored_texts() == w.sent


async def test_a_nul_character_is_stored_or_refused_never_an_internal_error(
    server: RunningServer,
) -> None:
    """U+0000 is a valid character of JSON and msgpack strings. Whatever the storage backend,
    a frame carrying it is either applied (and the text reads back exactly) or refused with a
    precise client error; it is never an ``internal`` error."""
    async with witness(server) as w, server.client("mallory", binary=True) as mal:
        frames: list[Frame] = [
            {"type": "send", "session": w.sid, "text": "nul \x00 inside"},
            {
                "type": "send",
                "session": w.sid,
                "text": "nul in metadata",
                "metadata": {"k": "\x00"},
            },
            {
                "type": "send",
                "session": w.sid,
                "text": "nul in a part",
                "parts": [{"type": "note", "body": "\x00"}],
            },
        ]
        for frame in frames:
            reply = await mal.request(frame)
            if reply["type"] == "ack":
                w.sent.append(frame["text"])
            else:
                assert reply["code"] in ("invalid_frame", "invalid_request"), reply
            await still_usable(mal)
            await w.check()
    assert await w.stored_texts() == w.sent


async def test_binary_bad_frames_get_their_errors(sqlite_server: RunningServer) -> None:
    server = sqlite_server
    async with witness(server) as w, server.client("mallory", binary=True) as mal:
        sid = w.sid
        packb = msgpack.packb

        # Garbage, truncated and trailing bytes are not msgpack frames.
        await refused(mal, b"\xc1\xff\x00 definitely not msgpack", "bad_encoding")
        await refused(mal, packb({"type": "ping", "id": "t"})[:-2], "bad_encoding")
        await refused(mal, packb({"type": "ping", "id": "t"}) + b"\x00", "bad_encoding")
        await still_usable(mal)
        await w.check()

        # Extension types and non-string map keys are refused when decoding.
        ext = packb({"id": "e1", "type": "ping", "x": msgpack.ExtType(5, b"abc")})
        await refused(mal, ext, "bad_encoding")
        nested_ext = packb(
            {"id": "e2", "type": "send", "session": sid, "metadata": {"t": msgpack.ExtType(1, b"")}}
        )
        await refused(mal, nested_ext, "bad_encoding")
        int_keys = packb({1: "one", "id": "k1", "type": "ping"})
        await refused(mal, int_keys, "bad_encoding")
        nested_keys = packb(
            {"id": "k2", "type": "send", "session": sid, "text": "hi", "metadata": {7: "x"}}
        )
        await refused(mal, nested_keys, "bad_encoding")
        await still_usable(mal)
        await w.check()

        # Decodes, but is not a frame.
        await refused(mal, packb([1, 2]), "bad_frame")
        await refused(mal, packb(42), "bad_frame")
        await refused(mal, packb("x"), "bad_frame")
        await refused(mal, packb({"id": "b1", "text": "no type"}), "bad_frame", ref="b1")
        await refused(mal, packb({"id": "b2", "type": b"ping"}), "bad_frame", ref="b2")
        await refused(mal, packb({"id": "b3", "type": "yodel"}), "unknown_type", ref="b3")
        await still_usable(mal)

        # Wrong field types: bytes are not strings, strings are not integers.
        err = await refused(
            mal,
            packb({"id": "b4", "type": "subscribe", "session": sid.encode()}),
            "invalid_frame",
            ref="b4",
        )
        assert fields_named(err) == ["session"]
        err = await refused(
            mal,
            packb({"id": "b5", "type": "subscribe", "session": sid, "since_seq": "0"}),
            "invalid_frame",
            ref="b5",
        )
        assert fields_named(err) == ["since_seq"]
        err = await refused(
            mal,
            packb({"id": "b6", "type": "send", "session": sid, "text": 3.5}),
            "invalid_frame",
            ref="b6",
        )
        assert fields_named(err) == ["text"]
        await still_usable(mal)

        ack = await mal.say(sid, "binary and fine")
        w.sent.append("binary and fine")
        assert ack["duplicate"] is False
    assert await w.stored_texts() == w.sent


async def test_invalid_frame_details_name_the_field_as_the_client_wrote_it(
    sqlite_server: RunningServer,
) -> None:
    """``details[].field`` is the path of the offending field in the frame (``id``, ``parts.0``),
    not a path into the validator's internals."""
    async with sqlite_server.client("mallory") as mal:
        for bad_id in (True, "", -1, 2**53 + 1, "i" * 129, 1.5):
            err = await refused(
                mal, orjson.dumps({"id": bad_id, "type": "ping"}).decode(), "invalid_frame"
            )
            assert set(fields_named(err)) == {"id"}, (bad_id, err)
            assert err["message"].startswith("invalid ping frame: id: "), err


# -- sizes ---------------------------------------------------------------------------------------


async def test_frame_over_max_frame_bytes_is_refused_and_the_connection_stays_usable(
    settings_factory: Callable[..., Settings], sqlite_url: str
) -> None:
    async with small_server(settings_factory, sqlite_url, max_frame_bytes=4096) as server:
        async with (
            witness(server) as w,
            server.client("mallory") as mal,
            server.client("mallory", binary=True) as bin_mal,
        ):
            assert mal.welcome["limits"]["max_frame_bytes"] == 4096
            await mal.subscribe(w.sid)
            big_text = orjson.dumps(
                {"id": "big1", "type": "send", "session": w.sid, "text": "z" * 6000}
            ).decode()
            assert 4096 < len(big_text.encode()) < 4 * 4096
            # (Whether the error echoes the id is the subject of the next test.)
            err = await refused(mal, big_text, "frame_too_large", check_ref=False)
            assert "4096" in err["message"]
            await w.check()

            big_bin = msgpack.packb({"id": "big2", "type": "ping", "pad": "p" * 10_000})
            assert 4096 < len(big_bin) < 4 * 4096
            await refused(bin_mal, big_bin, "frame_too_large", check_ref=False)
            await still_usable(bin_mal)

            # A frame of exactly the limit is fine.
            frame: Frame = {"id": "edge", "type": "send", "session": w.sid, "text": ""}
            frame["text"] = "a" * (4096 - len(orjson.dumps(frame)))
            assert len(orjson.dumps(frame)) == 4096
            ack = await answer_to(mal, orjson.dumps(frame).decode())
            assert (ack["type"], ack["ref"]) == ("ack", "edge"), ack
            w.sent.append(frame["text"])
            await w.check()
        assert await w.stored_texts() == w.sent


async def test_frame_too_large_error_echoes_the_frame_id(
    settings_factory: Callable[..., Settings], sqlite_url: str
) -> None:
    """The protocol promises that the error answering a frame carries its id as ``ref``
    (frames.py); a client with several requests in flight cannot otherwise tell which one
    was refused, and would wait for its answer for ever."""
    async with small_server(settings_factory, sqlite_url, max_frame_bytes=4096) as server:
        sid = await server.create_session("mallory")
        async with server.client("mallory") as mal:
            big = {"id": "big1", "type": "send", "session": sid, "text": "z" * 6000}
            await refused_frame(mal, big, "frame_too_large")


async def test_frame_above_the_transport_limit_closes_only_that_connection(
    settings_factory: Callable[..., Settings], sqlite_url: str
) -> None:
    async with small_server(settings_factory, sqlite_url, max_frame_bytes=4096) as server:
        async with (
            witness(server) as w,
            server.client("mallory") as mal,
            server.client("mallory") as mal_other_tab,
        ):
            await mal.subscribe(w.sid)
            await mal_other_tab.subscribe(w.sid)
            transport_limit = uvicorn_config(None, server.settings).ws_max_size
            assert transport_limit >= 4 * 4096
            huge = orjson.dumps(
                {"id": "huge", "type": "send", "session": w.sid, "text": "h" * transport_limit}
            ).decode()
            await mal.send_raw(huge)
            code, frames = await read_until_closed(mal)
            assert code == 1009
            assert not [f for f in frames if f["type"] in ("ack", "error")], frames

            await w.check()
            # The same user's other connection in the same session is untouched too.
            await still_usable(mal_other_tab)
            event = await mal_other_tab.wait_for(
                lambda f: (
                    f["type"] == "event"
                    and f.get("event") == "message.created"
                    and f["data"]["message"]["text"] == w.sent[-1]
                )
            )
            assert event["data"]["message"]["author"] == "bob"
            # And the server takes new connections as before.
            async with server.client("mallory") as again:
                await still_usable(again)
        assert await w.stored_texts() == w.sent


# -- authentication ------------------------------------------------------------------------------


async def test_frames_before_hello_are_unauthenticated_and_a_bad_hello_closes_4001(
    sqlite_server: RunningServer,
) -> None:
    server = sqlite_server
    async with witness(server) as w, anonymous(server) as anon:
        await refused_frame(
            anon,
            {"id": "s1", "type": "send", "session": w.sid, "text": "sneaky"},
            "unauthenticated",
            sync=False,
        )
        await refused_frame(
            anon, {"id": "s2", "type": "subscribe", "session": w.sid}, "unauthenticated", sync=False
        )
        await refused_frame(anon, {"id": "s3", "type": "ping"}, "unauthenticated", sync=False)
        # Malformed frames before authenticating get their own precise errors.
        await refused(anon, "{oops", "bad_encoding", sync=False)
        await refused_frame(anon, {"id": "s4", "type": "whisper"}, "unknown_type", sync=False)
        await w.check()

        await anon.send({"id": "h1", "type": "hello", "token": "not-a-token"})
        code, frames = await read_until_closed(anon)
        assert code == 4001
        assert [(f["type"], f["ref"], f["code"]) for f in frames] == [
            ("error", "h1", "unauthenticated")
        ]
        await w.check()
    assert await w.stored_texts() == w.sent


async def test_hello_with_a_token_signed_by_another_key_closes_4001(
    sqlite_server: RunningServer,
) -> None:
    server = sqlite_server
    forged = create_token("some-other-key-" + "y" * 40, user_id="bob", tenant_id="acme")
    async with anonymous(server, "msgpack") as anon:
        await anon.send({"id": 1, "type": "hello", "token": forged})
        code, frames = await read_until_closed(anon)
    assert code == 4001
    assert [(f["type"], f["ref"], f["code"]) for f in frames] == [("error", 1, "unauthenticated")]


async def test_bad_token_in_the_url_closes_4001(sqlite_server: RunningServer) -> None:
    url = f"{sqlite_server.ws_url}?format=json&token=garbage"
    async with connect(url, max_size=None) as ws:
        code, frames = await read_until_closed(WsClient(ws))
    assert code == 4001
    assert [(f["type"], f["ref"], f["code"]) for f in frames] == [
        ("error", None, "unauthenticated")
    ]


async def test_a_socket_that_never_authenticates_is_closed_4001_after_the_auth_timeout(
    settings_factory: Callable[..., Settings], sqlite_url: str
) -> None:
    async with (
        small_server(settings_factory, sqlite_url, auth_timeout=0.5) as server,
        witness(server) as w,
        anonymous(server) as anon,
    ):
        # Frames that are not a hello do not authenticate, nor extend the deadline.
        await refused_frame(anon, {"id": "a1", "type": "ping"}, "unauthenticated", sync=False)
        await refused(anon, "[]", "bad_frame", sync=False)
        code, frames = await read_until_closed(anon)
        assert code == 4001
        assert [(f["type"], f["ref"], f["code"]) for f in frames] == [
            ("error", None, "unauthenticated")
        ]
        await w.check()


async def test_hello_then_a_second_hello_is_already_authenticated(
    sqlite_server: RunningServer,
) -> None:
    server = sqlite_server
    async with witness(server) as w, anonymous(server) as anon:
        await refused_frame(anon, {"id": "p0", "type": "ping"}, "unauthenticated", sync=False)
        await anon.send({"id": "h1", "type": "hello", "token": server.token("mallory")})
        welcome = await anon.wait_for(lambda f: f["type"] == "welcome")
        assert welcome["ref"] == "h1"
        assert welcome["user"]["id"] == "mallory"
        assert welcome["tenant"] == "acme"
        assert welcome["protocol"] == 1

        err = await refused_frame(
            anon,
            {"id": "h2", "type": "hello", "token": server.token("mallory")},
            "already_authenticated",
        )
        assert "already" in err["message"]
        # Even a hello with someone else's token cannot switch identities.
        await refused_frame(
            anon,
            {"id": "h3", "type": "hello", "token": server.token("bob")},
            "already_authenticated",
        )
        await still_usable(anon)
        await anon.subscribe(w.sid)
        ack = await anon.say(w.sid, "mallory, properly logged in")
        w.sent.append("mallory, properly logged in")
        event = await w.bystander.wait_for(
            lambda f: f["type"] == "event" and f.get("seq") == ack["seq"]
        )
        assert event["data"]["message"]["author"] == "mallory"
        await w.check()
    assert await w.stored_texts() == w.sent


# -- rates and floods ----------------------------------------------------------------------------


async def test_exceeding_the_frame_rate_is_rate_limited_and_not_fatal(
    settings_factory: Callable[..., Settings], sqlite_url: str
) -> None:
    async with (
        small_server(settings_factory, sqlite_url, frame_rate=5.0, frame_burst=5) as server,
        server.client("mallory") as mal,
        server.client("dave") as dave,
    ):
        assert mal.welcome["limits"]["frame_rate"] == 5.0
        assert mal.welcome["limits"]["frame_burst"] == 5
        # 5 in a burst, then more than the 5/s refill allows (but far fewer errors than the
        # fault budget of 100).
        total = 25
        for i in range(total):
            await mal.send({"id": f"p{i}", "type": "ping"})
        replies = [await mal.recv() for _ in range(total)]
        pongs = [r for r in replies if r["type"] == "pong"]
        limited = [r for r in replies if r["type"] == "error"]
        assert [(r["type"], r["ref"]) for r in replies[:5]] == [("pong", f"p{i}") for i in range(5)]
        assert replies[5]["type"] == "error"
        assert len(pongs) + len(limited) == total
        assert len(pongs) < 8, "the refill is 5 frames per second"
        retry_after = 0.0
        for err in limited:
            assert err["code"] == "rate_limited", err
            retry_after = err["details"]["retry_after"]
            assert 0 < retry_after <= 1 / 5.0, err

        # Other clients have their own budgets: a bystander still gets a talker's messages.
        await still_usable(dave)
        async with witness(server) as w:
            await w.check()

        # The server said when a frame will be accepted again; waiting that long is the
        # protocol, not a guess.
        await asyncio.sleep(retry_after + 0.05)
        await still_usable(mal)


async def test_rate_limited_error_echoes_the_frame_id(
    settings_factory: Callable[..., Settings], sqlite_url: str
) -> None:
    """A client pipelining requests must learn which one was dropped for the rate."""
    async with (
        small_server(settings_factory, sqlite_url, frame_rate=5.0, frame_burst=5) as server,
        server.client("mallory") as mal,
    ):
        for i in range(7):
            await mal.send({"id": f"p{i}", "type": "ping"})
        replies = [await mal.recv() for _ in range(7)]
        assert [r["type"] for r in replies[:5]] == ["pong"] * 5
        assert replies[5]["code"] == "rate_limited"
        assert [r.get("ref") for r in replies] == [f"p{i}" for i in range(7)]


async def test_a_client_that_keeps_exceeding_the_rate_is_closed_4029(
    settings_factory: Callable[..., Settings], sqlite_url: str
) -> None:
    """CloseCode.TOO_MANY_ERRORS: "the client kept sending bad frames or exceeding the rate"."""
    async with (
        small_server(settings_factory, sqlite_url, frame_rate=5.0, frame_burst=5) as server,
        witness(server) as w,
        server.client("mallory") as mal,
    ):
        for i in range(150):
            try:
                await mal.send({"id": i, "type": "ping"})
            except ConnectionClosed:
                break
        code, frames = await read_until_closed(mal)
        assert code == 4029
        limited = [f for f in frames if f["type"] == "error"]
        assert {e["code"] for e in limited} == {"rate_limited"}
        assert 101 <= len(limited) <= 120, len(limited)
        await w.check()


async def test_a_flood_of_bad_frames_closes_4029_and_only_that_connection(
    sqlite_server: RunningServer,
) -> None:
    server = sqlite_server
    async with witness(server) as w, server.client("mallory") as mal:
        await mal.subscribe(w.sid)
        # The fault budget is a bucket of 100 refilled at 5 per second (endpoint.py): 150 bad
        # frames sent as fast as possible exhaust it. (150 stays below the frame burst of 200,
        # so none of them is merely rate limited.)
        for i in range(150):
            try:
                await mal.send_raw(f"not json {i}")
            except ConnectionClosed:
                break
        code, frames = await read_until_closed(mal)
        assert code == 4029
        errors = [f for f in frames if f["type"] == "error"]
        assert all(e["code"] == "bad_encoding" for e in errors), errors
        # Every bad frame up to the one that exhausted the budget of 100 was answered.
        assert 101 <= len(errors) <= 120, len(errors)
        await w.check()
        async with server.client("mallory") as fresh:
            # Fewer bad frames than the budget are all answered and cost nothing else.
            for i in range(90):
                await fresh.send_raw(f"[{i}]")
            for _ in range(90):
                err = await fresh.wait_for(is_error)
                assert err["code"] == "bad_frame", err
            await still_usable(fresh)
    assert await w.stored_texts() == w.sent

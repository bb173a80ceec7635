"""What each client frame does. One handler per frame type; each returns the ack fields."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from parley.crdt.mux import Mux
from parley.errors import ErrorCode, InvalidRequest, ParleyError, ProtocolError
from parley.governance.auth import Principal
from parley.hub.connection import Connection
from parley.hub.hub import Hub
from parley.ids import iso, utcnow
from parley.integrations.filters import FeedFilter, check_patterns
from parley.integrations.live import LiveFeeds, parse_cursor
from parley.protocol import frames as f
from parley.protocol.server_frames import ack, pong
from parley.relay.service import Relay
from parley.sessions.service import SessionService

Handler = Callable[["CommandContext", Any], Awaitable[None]]
log = structlog.get_logger("parley.hub")


class CommandContext:
    """What a handler needs: the connection, its principal, and the parts it may call: the
    hub, the session service, the documents (``doc`` frames) and the relay (``ask``...)."""

    __slots__ = ("conn", "feeds", "hub", "mux", "principal", "relay", "service")

    def __init__(
        self,
        conn: Connection,
        principal: Principal,
        hub: Hub,
        service: SessionService,
        mux: Mux,
        relay: Relay,
        feeds: LiveFeeds | None = None,
    ):
        self.conn = conn
        self.feeds = feeds
        self.principal = principal
        self.hub = hub
        self.service = service
        self.mux = mux
        self.relay = relay


async def _subscribe(ctx: CommandContext, frame: f.Subscribe) -> None:
    facts = await ctx.service.read_facts(ctx.principal, frame.session)  # not found for others
    last = facts.last_seq
    if frame.since_seq is not None and frame.since_seq > last:
        raise InvalidRequest(
            f"since_seq {frame.since_seq} is ahead of the session (last seq {last})",
            details={"last_seq": last},
        )

    acked: list[int] = []

    def ready(seq: int, replayed: int, present: list[dict[str, str]]) -> None:
        acked.append(seq)
        ctx.conn.send_frame(
            ack(frame.id, session=frame.session, seq=seq, replayed=replayed, presence=present)
        )

    await ctx.hub.subscribe(
        ctx.conn,
        ctx.principal.tenant_id,
        frame.session,
        frame.since_seq,
        ready,
        last_seq=last,
        history=facts.history_rev,
    )
    if acked:
        await _stream_snapshot(ctx, frame.session, acked[0])


async def _unsubscribe(ctx: CommandContext, frame: f.Unsubscribe) -> None:
    if not await ctx.hub.unsubscribe(ctx.conn, frame.session):
        raise ParleyError("not subscribed to this session", code=ErrorCode.NOT_SUBSCRIBED)
    ctx.conn.send_frame(ack(frame.id, session=frame.session))


async def _send(ctx: CommandContext, frame: f.Send) -> None:
    result = await ctx.service.post_message(
        ctx.principal,
        frame.session,
        text=frame.text,
        parts=[p.model_dump() for p in frame.parts] if frame.parts is not None else None,
        parent_id=frame.parent_id,
        metadata=frame.metadata,
        client_id=frame.client_id,
    )
    ctx.conn.send_frame(
        ack(
            frame.id,
            session=frame.session,
            seq=result.seq,
            message_id=result.message["id"],
            client_id=frame.client_id,
            duplicate=result.duplicate,
        )
    )


async def _edit(ctx: CommandContext, frame: f.Edit) -> None:
    message, seq = await ctx.service.edit_message(
        ctx.principal,
        frame.session,
        frame.message_id,
        text=frame.text,
        parts=[p.model_dump() for p in frame.parts] if frame.parts is not None else None,
        metadata=frame.metadata,
    )
    ctx.conn.send_frame(ack(frame.id, session=frame.session, seq=seq, message_id=message["id"]))


async def _delete(ctx: CommandContext, frame: f.Delete) -> None:
    message, seq = await ctx.service.delete_message(ctx.principal, frame.session, frame.message_id)
    ctx.conn.send_frame(ack(frame.id, session=frame.session, seq=seq, message_id=message["id"]))


async def _typing(ctx: CommandContext, frame: f.Typing) -> None:
    if not ctx.hub.subscribed(ctx.conn, frame.session):
        raise ParleyError(
            "subscribe to the session before sending typing", code=ErrorCode.NOT_SUBSCRIBED
        )
    p = ctx.principal
    await ctx.hub.publish_ephemeral(
        p.tenant_id,
        frame.session,
        "typing",
        {"user_id": p.user_id, "name": p.name, "active": frame.active},
    )
    if frame.id is not None:
        ctx.conn.send_frame(ack(frame.id, session=frame.session))


async def _ping(ctx: CommandContext, frame: f.Ping) -> None:
    ctx.conn.send_frame(pong(frame.id, iso(utcnow()) or ""))


# -- collaborative documents (crdt/mux.py, docs/documents.md) ------------------------------------


async def _doc_join(ctx: CommandContext, frame: f.DocJoin) -> None:
    def joined(access: Any) -> None:
        ctx.conn.send_frame(ack(frame.id, session=frame.session, role=str(access.role)))

    await ctx.mux.join(ctx.conn, ctx.principal, frame.session, joined)


async def _doc(ctx: CommandContext, frame: f.Doc) -> None:
    data = frame.data
    if isinstance(data, str):
        try:
            data = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise ProtocolError(
                "data must be base64 (JSON) or bytes (msgpack)",
                details=[{"field": "data", "problem": "not valid base64"}],
            ) from None
    await ctx.mux.receive(ctx.conn, frame.session, data)
    if frame.id is not None:
        ctx.conn.send_frame(ack(frame.id, session=frame.session))


async def _doc_leave(ctx: CommandContext, frame: f.DocLeave) -> None:
    if not ctx.mux.leave(ctx.conn, frame.session):
        raise ParleyError(
            "this connection has not joined the document", code=ErrorCode.NOT_SUBSCRIBED
        )
    ctx.conn.send_frame(ack(frame.id, session=frame.session))


# -- the LLM relay (relay/, docs/relay.md) ---------------------------------------------------


async def _stream_snapshot(ctx: CommandContext, session_id: str, seq: int) -> None:
    """After a subscribe ack: the text so far of the session's running generations, read
    after the subscription went live, so the deltas that follow continue it (the client drops
    deltas that end at or before a snapshot's length). Sent only when something is running."""
    if not ctx.hub.subscribed(ctx.conn, session_id):
        return
    try:
        frame = await ctx.relay.snapshot(ctx.principal.tenant_id, session_id, seq)
    except Exception as exc:  # the subscription stands; the client can ask with `streams`
        log.warning("stream snapshot failed", session=session_id, error=str(exc))
        return
    if frame["data"]["streams"]:
        ctx.conn.send_frame(frame)


async def _ask(ctx: CommandContext, frame: f.Ask) -> None:
    answer = await ctx.relay.ask(
        ctx.principal,
        frame.session,
        frame.assistant,
        text=frame.text,
        message_id=frame.message_id,
        parent_id=frame.parent_id,
        client_id=frame.client_id,
    )
    ctx.conn.send_frame(ack(frame.id, session=frame.session, **answer))


async def _stop(ctx: CommandContext, frame: f.Stop) -> None:
    answer = await ctx.relay.stop_stream(ctx.principal, frame.session, frame.stream_id)
    ctx.conn.send_frame(ack(frame.id, session=frame.session, **answer))


async def _streams(ctx: CommandContext, frame: f.Streams) -> None:
    if not ctx.hub.subscribed(ctx.conn, frame.session):
        raise ParleyError(
            "subscribe to the session before asking for its streams",
            code=ErrorCode.NOT_SUBSCRIBED,
        )
    snapshot = await ctx.relay.snapshot(ctx.principal.tenant_id, frame.session)
    ctx.conn.send_frame(snapshot)
    ctx.conn.send_frame(
        ack(frame.id, session=frame.session, streams=len(snapshot["data"]["streams"]))
    )


# -- messages streamed by the client (relay/client_streams.py) ----------------------------------


async def _stream_start(ctx: CommandContext, frame: f.StreamStart) -> None:
    answer = await ctx.relay.client_streams.start(
        ctx.principal,
        ctx.conn.id,
        frame.session,
        parent_id=frame.parent_id,
        client_id=frame.client_id,
    )
    ctx.conn.send_frame(ack(frame.id, session=frame.session, **answer))


async def _stream_delta(ctx: CommandContext, frame: f.StreamDelta) -> None:
    answer = await ctx.relay.client_streams.append(
        ctx.principal, ctx.conn.id, frame.session, frame.stream_id, frame.text
    )
    if frame.id is not None:
        ctx.conn.send_frame(ack(frame.id, session=frame.session, **answer))


async def _stream_end(ctx: CommandContext, frame: f.StreamEnd) -> None:
    answer = await ctx.relay.client_streams.finish(
        ctx.principal,
        ctx.conn.id,
        frame.session,
        frame.stream_id,
        cancel=frame.cancel,
        metadata=frame.metadata,
    )
    ctx.conn.send_frame(ack(frame.id, session=frame.session, **answer))


# -- the live tenant feed (integrations/live.py, docs/integrations.md) -------------------------


async def _feed_subscribe(ctx: CommandContext, frame: f.FeedSubscribe) -> None:
    if ctx.feeds is None:
        raise ParleyError("the live feed is not available on this server")
    flt = FeedFilter(
        types=tuple(check_patterns(frame.types, "types")) if frame.types else (),
        sessions=frozenset(frame.sessions),
        tags=frozenset(t.strip().lower() for t in frame.tags),
    )
    cursor = parse_cursor(frame.cursor) if frame.cursor is not None else None
    start = await ctx.feeds.subscribe_socket(ctx.conn, ctx.principal, flt, cursor)
    ctx.conn.send_frame(ack(frame.id, cursor=str(start)))


async def _feed_unsubscribe(ctx: CommandContext, frame: f.FeedUnsubscribe) -> None:
    if ctx.feeds is None or not ctx.feeds.unsubscribe_socket(ctx.conn):
        raise ParleyError("no feed subscription on this connection", code=ErrorCode.NOT_SUBSCRIBED)
    ctx.conn.send_frame(ack(frame.id))


HANDLERS: dict[type[Any], Handler] = {
    f.Subscribe: _subscribe,
    f.Unsubscribe: _unsubscribe,
    f.Send: _send,
    f.Edit: _edit,
    f.Delete: _delete,
    f.Typing: _typing,
    f.Ping: _ping,
    f.DocJoin: _doc_join,
    f.Doc: _doc,
    f.DocLeave: _doc_leave,
    f.Ask: _ask,
    f.Stop: _stop,
    f.Streams: _streams,
    f.StreamStart: _stream_start,
    f.StreamDelta: _stream_delta,
    f.StreamEnd: _stream_end,
    f.FeedSubscribe: _feed_subscribe,
    f.FeedUnsubscribe: _feed_unsubscribe,
}

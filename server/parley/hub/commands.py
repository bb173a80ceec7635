"""What each client frame does. One handler per frame type; each returns the ack fields."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from parley.errors import ErrorCode, InvalidRequest, ParleyError
from parley.governance.auth import Principal
from parley.hub.connection import Connection
from parley.hub.hub import Hub
from parley.ids import iso, utcnow
from parley.protocol import frames as f
from parley.protocol.server_frames import ack, pong
from parley.sessions.service import SessionService

Handler = Callable[["CommandContext", Any], Awaitable[None]]


class CommandContext:
    """What a handler needs: the connection, its principal, the hub and the service."""

    __slots__ = ("conn", "hub", "principal", "service")

    def __init__(self, conn: Connection, principal: Principal, hub: Hub, service: SessionService):
        self.conn = conn
        self.principal = principal
        self.hub = hub
        self.service = service


async def _subscribe(ctx: CommandContext, frame: f.Subscribe) -> None:
    last = await ctx.service.last_seq(ctx.principal, frame.session)  # not found for others
    if frame.since_seq is not None and frame.since_seq > last:
        raise InvalidRequest(
            f"since_seq {frame.since_seq} is ahead of the session (last seq {last})",
            details={"last_seq": last},
        )

    def ready(seq: int, replayed: int, present: list[dict[str, str]]) -> None:
        ctx.conn.send_frame(
            ack(frame.id, session=frame.session, seq=seq, replayed=replayed, presence=present)
        )

    await ctx.hub.subscribe(
        ctx.conn, ctx.principal.tenant_id, frame.session, frame.since_seq, ready
    )


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


HANDLERS: dict[type[Any], Handler] = {
    f.Subscribe: _subscribe,
    f.Unsubscribe: _unsubscribe,
    f.Send: _send,
    f.Edit: _edit,
    f.Delete: _delete,
    f.Typing: _typing,
    f.Ping: _ping,
}

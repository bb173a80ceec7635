"""The ``/ws`` endpoint: a short pump from the socket to the protocol and the handlers.

Authentication: ``?token=`` in the URL, an ``Authorization: Bearer`` header, or a ``hello``
frame within ``auth_timeout`` seconds. ``?format=msgpack|json`` picks the encoding of server
frames (default: the encoding of the client's first frame, JSON before any frame).
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import structlog

from parley import metrics
from parley.config import Settings
from parley.crdt.mux import Mux
from parley.errors import (
    AuthError,
    CloseCode,
    ErrorCode,
    Forbidden,
    ParleyError,
    ProtocolError,
    QuotaExceeded,
    RateLimited,
)
from parley.governance import audit
from parley.governance.apikeys import FRAME_SCOPES, require_scope
from parley.governance.auth import Principal, socket_token, verify_token_expiry
from parley.governance.hub import Governance
from parley.hub.commands import HANDLERS, CommandContext
from parley.hub.connection import Connection, ConnState
from parley.hub.hub import Hub
from parley.hub.ratelimit import TokenBucket
from parley.ids import iso, utcnow
from parley.integrations.live import LiveFeeds
from parley.protocol import frames as f
from parley.protocol.codec import Encoding, decode_raw, frame_ref, parse_frame
from parley.protocol.server_frames import ack, error
from parley.relay.service import Relay
from parley.sessions.service import SessionService
from parley.types import ASGIReceive, ASGISend, Scope

log = structlog.get_logger("parley.hub")

# Frames that read or write conversation content, and the audit action each one is.
AUDITED_FRAMES = {
    "subscribe": "session.subscribe",
    "send": "message.create",
    "edit": "message.update",
    "delete": "message.delete",
    "doc_join": "document.join",
    "doc": "document.sync",
    "ask": "assistant.ask",
    "stop": "stream.stop",
    "streams": "stream.list",
}
# Sync traffic comes keystroke by keystroke: one entry per client and flush, with a count.
COALESCED_FRAMES = frozenset({"doc"})


class SocketEndpoint:
    """ASGI app serving protocol v1 on one WebSocket per client."""

    def __init__(
        self,
        hub: Hub,
        service: SessionService,
        settings: Settings,
        *,
        mux: Mux,
        relay: Relay,
        governance: Governance,
        audit: audit.AuditRecorder | None = None,
        feeds: LiveFeeds | None = None,
    ) -> None:
        self.governance = governance
        self.feeds = feeds
        self.hub = hub
        self.service = service
        self.settings = settings
        self.mux = mux
        self.relay = relay
        self.audit = audit

    async def __call__(self, scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
        if (await receive())["type"] != "websocket.connect":
            return
        params = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        fmt = params.get("format", [""])[0].lower()
        encoding = Encoding.MSGPACK if fmt == "msgpack" else Encoding.JSON
        token = socket_token(params, dict(scope.get("headers") or []))
        conn = Connection.for_scope(
            scope, send, encoding=encoding, max_queue=self.settings.send_queue_frames
        )
        structlog.contextvars.bind_contextvars(conn=conn.id)
        await send({"type": "websocket.accept"})
        self.hub.add_connection(conn)
        metrics.CONNECTIONS_TOTAL.inc()
        log.info("connection opened", client=conn.client)
        pump = _Pump(self, conn, explicit_format=bool(fmt))
        try:
            if fmt and fmt not in ("json", "msgpack"):
                conn.send_frame(
                    error(None, ProtocolError(f"unknown format {fmt!r}; use json or msgpack"))
                )
                conn.close(CloseCode.NORMAL, "unknown format", flush=True)
            elif token is not None:
                await pump.authenticate(token, ref=None)
            await pump.run(receive)
        finally:
            pump.stop_expiry()
            if conn.principal is not None:
                await self.governance.quotas.dismiss(conn.principal.tenant_id, conn.id)
            await self.hub.remove_connection(conn)
            await self.relay.client_streams.disconnected(conn.id)
            if self.feeds is not None:
                self.feeds.unsubscribe_socket(conn)
            if conn.is_open:
                conn.close(CloseCode.NORMAL)
            await conn.wait_closed(1.0)
            log.info("connection closed", code=conn.close_code)
            structlog.contextvars.clear_contextvars()


class _Pump:
    """Reads frames one at a time and answers each; frames of one client are handled in order."""

    __slots__ = (
        "client",
        "conn",
        "ctx",
        "ep",
        "expiry",
        "explicit_format",
        "faults",
        "frames",
        "opened",
    )

    def __init__(self, endpoint: SocketEndpoint, conn: Connection, *, explicit_format: bool):
        self.ep = endpoint
        self.conn = conn
        self.explicit_format = explicit_format
        settings = endpoint.settings
        now = time.monotonic()
        self.frames = TokenBucket(settings.frame_rate, settings.frame_burst, now)
        # A client that keeps sending bad frames is cut off; honest bugs get plenty of answers.
        self.faults = TokenBucket(5.0, 100, now)
        self.ctx: CommandContext | None = None
        self.opened = now
        self.expiry: asyncio.TimerHandle | None = None
        self.client = conn.client.rpartition(":")[0] if conn.client else None

    async def run(self, receive: ASGIReceive) -> None:
        conn = self.conn
        while conn.is_open:
            if self.ctx is None:
                remaining = self.ep.settings.auth_timeout - (time.monotonic() - self.opened)
                try:
                    async with asyncio.timeout(max(remaining, 0.0)):
                        message = await receive()
                except TimeoutError:
                    conn.send_frame(
                        error(None, AuthError("no hello frame with a valid token in time"))
                    )
                    conn.close(CloseCode.UNAUTHENTICATED, "authentication timeout", flush=True)
                    return
            else:
                message = await receive()
            if message["type"] == "websocket.disconnect":
                conn.disconnected()
                return
            data = message.get("bytes")
            if data is None:
                data = message.get("text")
            if data is not None:
                await self.handle(data)

    async def handle(self, data: bytes | str) -> None:
        conn = self.conn
        if not self.explicit_format and self.ctx is None:
            conn.encoding = Encoding.MSGPACK if isinstance(data, bytes) else Encoding.JSON
        ref: str | int | None = None
        ftype = "invalid"
        try:
            limit = self.ep.settings.max_frame_bytes
            if len(data) > limit:
                ref = _ref_of_oversized(data)
                unit = "bytes" if isinstance(data, bytes) else "characters"
                raise ProtocolError(
                    f"frame is {len(data)} {unit}; the limit is {limit}",
                    code=ErrorCode.FRAME_TOO_LARGE,
                )
            raw = decode_raw(data)
            ref = frame_ref(raw)
            wait = self.frames.take(time.monotonic())
            if wait:
                raise RateLimited("too many frames; slow down", retry_after=wait)
            frame = parse_frame(raw)
            ftype = frame.type
            if isinstance(frame, f.Hello):
                if self.ctx is not None:
                    raise ParleyError(
                        "this connection is already authenticated",
                        code=ErrorCode.ALREADY_AUTHENTICATED,
                    )
                await self.authenticate(frame.token, ref=ref)
                return
            if self.ctx is None:
                raise AuthError("send a hello frame with a token first")
            if isinstance(frame, f.Auth):
                self.refresh(frame.token, ref)
                return
            if self.ctx.principal.scopes is not None:
                require_scope(self.ctx.principal, FRAME_SCOPES[frame.type])
            try:
                await HANDLERS[type(frame)](self.ctx, frame)
            except BaseException as exc:
                self._audit(frame, exc)
                raise
            self._audit(frame, None)
        except ParleyError as exc:
            self._refuse(ref, exc)
        except Exception:
            log.exception("frame handler failed", frame_type=ftype)
            self._refuse(ref, ParleyError("internal error; the frame was not applied"))
        finally:
            metrics.FRAMES_IN.labels(type=ftype).inc()

    def _audit(self, frame: Any, exc: BaseException | None) -> None:
        action = AUDITED_FRAMES.get(frame.type)
        recorder, ctx = self.ep.audit, self.ctx
        if action is None or recorder is None or ctx is None:
            return
        if isinstance(exc, asyncio.CancelledError):
            return
        result, code = audit.result_of(exc)
        details = {"message_id": frame.message_id} if hasattr(frame, "message_id") else {}
        entry = audit.Entry.of(
            ctx.principal,
            action,
            "session",
            frame.session,
            result,
            code=code,
            client=self.client,
            details={k: v for k, v in details.items() if v is not None},
        )
        recorder.record_nowait(entry, coalesce=frame.type in COALESCED_FRAMES)

    def refresh(self, token: str, ref: str | int | None) -> None:
        """An ``auth`` frame: take a fresh token of the same user and tenant."""
        ctx = self.ctx
        assert ctx is not None
        old = ctx.principal
        principal, exp = verify_token_expiry(self.ep.settings.signing_key, token)
        if (principal.tenant_id, principal.user_id) != (old.tenant_id, old.user_id):
            raise Forbidden("a refreshed token must name the same user and tenant")
        ctx.principal = principal
        self.conn.principal = principal
        self._expire_at(exp)
        if self.ep.audit is not None:
            self.ep.audit.record_nowait(
                audit.Entry.of(
                    principal, "token.refresh", "user", principal.user_id, client=self.client
                )
            )
        self.conn.send_frame(ack(ref, expires_at=_iso_of(exp)))

    def _expire_at(self, exp: int | None) -> None:
        self.stop_expiry()
        if exp is not None:
            delay = max(0.0, exp - time.time())
            self.expiry = asyncio.get_running_loop().call_later(delay, self._expired)

    def stop_expiry(self) -> None:
        if self.expiry is not None:
            self.expiry.cancel()
            self.expiry = None

    def _expired(self) -> None:
        self.expiry = None
        exc = AuthError(
            "the token expired; send an auth frame with a fresh token before it does",
            code=ErrorCode.TOKEN_EXPIRED,
        )
        metrics.FRAME_ERRORS.labels(code=str(exc.code)).inc()
        self.conn.send_frame(error(None, exc))
        self.conn.close(CloseCode.TOKEN_EXPIRED, "token expired", flush=True)

    def _refuse(self, ref: str | int | None, exc: ParleyError) -> None:
        metrics.FRAME_ERRORS.labels(code=str(exc.code)).inc()
        self.conn.send_frame(error(ref, exc))
        if self.faults.take(time.monotonic()):
            self.conn.close(CloseCode.TOO_MANY_ERRORS, "too many bad frames", flush=True)

    async def authenticate(self, token: str, *, ref: str | int | None) -> None:
        conn = self.conn
        try:
            principal, exp = await self.ep.governance.authenticate_expiry(token)
        except AuthError as exc:
            metrics.FRAME_ERRORS.labels(code=str(exc.code)).inc()
            conn.send_frame(error(ref, exc))
            conn.close(CloseCode.UNAUTHENTICATED, exc.message, flush=True)
            return
        try:
            await self.ep.governance.quotas.admit(principal, conn.id)
        except QuotaExceeded as exc:
            metrics.FRAME_ERRORS.labels(code=str(exc.code)).inc()
            conn.send_frame(error(ref, exc))
            conn.close(CloseCode.QUOTA_EXCEEDED, "connection quota exceeded", flush=True)
            return
        conn.principal = principal  # from here on the slot is given back on close
        try:
            await self.ep.service.ensure_principal(principal)
        except Exception:
            log.exception("could not record the principal")
            conn.send_frame(error(ref, ParleyError("internal error; try again")))
            conn.close(CloseCode.INTERNAL_ERROR, "internal error", flush=True)
            return
        conn.state = ConnState.OPEN
        ep = self.ep
        self.ctx = CommandContext(
            conn, principal, ep.hub, ep.service, ep.mux, ep.relay, feeds=ep.feeds
        )
        structlog.contextvars.bind_contextvars(tenant=principal.tenant_id, user=principal.user_id)
        self._expire_at(exp)
        conn.send_frame(welcome(ref, conn, principal, self.ep.settings, expires_at=_iso_of(exp)))


def _ref_of_oversized(data: bytes | str) -> str | int | None:
    """The id of a frame refused for its size, so the error can name it. The transport bounds
    such frames (4x the limit), so decoding one to find its id costs little."""
    try:
        return frame_ref(decode_raw(data))
    except ProtocolError:
        return None


def _iso_of(exp: int | None) -> str | None:
    return iso(datetime.fromtimestamp(exp, UTC)) if exp is not None else None


def welcome(
    ref: str | int | None,
    conn: Connection,
    p: Principal,
    s: Settings,
    *,
    expires_at: str | None = None,
) -> dict[str, Any]:
    return {
        "type": "welcome",
        "ref": ref,
        "protocol": f.PROTOCOL_VERSION,
        "connection_id": conn.id,
        "tenant": p.tenant_id,
        "user": {"id": p.user_id, "name": p.name, "kind": str(p.kind)},
        "server_time": iso(utcnow()),
        "expires_at": expires_at,
        "limits": {
            "max_frame_bytes": s.max_frame_bytes,
            "max_text_chars": s.max_text_chars,
            "frame_rate": s.frame_rate,
            "frame_burst": s.frame_burst,
        },
    }

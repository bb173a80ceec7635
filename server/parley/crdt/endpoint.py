"""The ``/yjs/{session_id}`` endpoint: y-websocket's wire protocol, for stock Yjs clients.

``new WebsocketProvider("ws://HOST:PORT/yjs", sessionId, doc, {params: {token}})`` connects to
``/yjs/{session_id}?token=...`` (an ``Authorization: Bearer`` header works too). One binary
WebSocket message carries one y-protocol message (``yprotocol.py``).

The socket is accepted before the token is checked, so a refusal can say why with a close code
y-websocket understands: 4401 (bad token) and 4404 (no such session) stop its reconnecting,
4503 (the document could not be loaded) and 1012 (restart) make it retry. A refused message is
answered with a y-protocol "permission denied" message whose reason starts with the Parley
error code (``forbidden: ...``); y-websocket logs it with ``console.warn``.

Frames above the rate limit are not dropped, as on ``/ws``: dropping an update would fork the
document. The endpoint stops reading until the bucket refills, which slows the sender down.
"""

from __future__ import annotations

import asyncio
import time
from urllib.parse import parse_qs

import structlog

from parley.config import Settings
from parley.crdt import yprotocol as y
from parley.crdt.manager import DocManager
from parley.crdt.room import Access
from parley.errors import (
    AuthError,
    CloseCode,
    ErrorCode,
    Forbidden,
    NotFound,
    ParleyError,
    QuotaExceeded,
)
from parley.governance import apikeys
from parley.governance.audit import AuditRecorder, Entry, result_of
from parley.governance.auth import Principal, socket_token, verify_token_expiry
from parley.governance.hub import Governance
from parley.hub.connection import Connection, ConnState
from parley.hub.events import OutEvent
from parley.hub.ratelimit import TokenBucket
from parley.protocol.codec import Encoding
from parley.sessions.service import SessionService
from parley.types import ASGIReceive, ASGISend, Scope

log = structlog.get_logger("parley.crdt")


class YjsPeer:
    """A y-websocket client: raw y-protocol messages as binary frames on its own socket."""

    def __init__(
        self, conn: Connection, principal: Principal, session_id: str, access: Access
    ) -> None:
        self.conn = conn
        self.key = "yjs:" + conn.id
        self.principal = principal
        self.session_id = session_id
        self.access = access

    def send(self, message: bytes) -> None:
        # The connection's queue takes pre-encoded events; a msgpack-encoded connection writes
        # an event's bytes as they are, which is exactly one binary frame per message.
        self.conn.send_event(OutEvent({}, message, 0.0))

    def refuse(self, exc: ParleyError) -> None:
        self.send(y.permission_denied(f"{exc.code}: {exc.message}"))

    def end(self, code: CloseCode, error: ParleyError) -> None:
        self.refuse(error)
        self.conn.close(code, error.message, flush=True)


class YjsEndpoint:
    """ASGI app for ``/yjs/{session_id}``."""

    def __init__(
        self,
        manager: DocManager,
        service: SessionService,
        settings: Settings,
        *,
        governance: Governance,
        audit: AuditRecorder | None = None,
    ) -> None:
        self.governance = governance
        self.manager = manager
        self.service = service
        self.settings = settings
        self.audit = audit

    async def __call__(self, scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
        if (await receive())["type"] != "websocket.connect":
            return
        session_id = str(scope.get("path_params", {}).get("session_id", ""))
        params = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        token = socket_token(params, dict(scope.get("headers") or []))
        conn = Connection.for_scope(
            scope, send, encoding=Encoding.MSGPACK, max_queue=self.settings.send_queue_frames
        )
        structlog.contextvars.bind_contextvars(conn=conn.id, doc=session_id)
        await send({"type": "websocket.accept"})
        peer: YjsPeer | None = None
        expiry: asyncio.TimerHandle | None = None
        try:
            peer = await self._open(conn, token, session_id)
            if peer is not None:
                log.info("document client joined", user=peer.principal.user_id)
                expiry = self._close_at_expiry(conn, token or "")
                await self._pump(peer, receive)
        finally:
            if expiry is not None:
                expiry.cancel()
            if peer is not None:
                self.manager.leave(peer)
            if conn.principal is not None:
                await self.governance.quotas.dismiss(conn.principal.tenant_id, conn.id)
            if conn.is_open:
                conn.close(CloseCode.NORMAL)
            await conn.wait_closed(1.0)
            structlog.contextvars.clear_contextvars()

    def _close_at_expiry(self, conn: Connection, token: str) -> asyncio.TimerHandle | None:
        """y-websocket cannot refresh a token in-band: the socket closes with 4401 when the
        token expires, and the client reconnects with a fresh one."""
        try:
            exp = verify_token_expiry(self.settings.signing_key, token)[1]
        except AuthError:
            return None
        if exp is None:
            return None
        return asyncio.get_running_loop().call_later(
            max(0.0, exp - time.time()),
            lambda: conn.close(CloseCode.DOC_UNAUTHENTICATED, "token expired", flush=True),
        )

    def _audit(
        self, p: Principal, conn: Connection, action: str, session_id: str, exc: Exception | None
    ) -> None:
        if self.audit is None:
            return
        result, code = result_of(exc)
        client = conn.client.rpartition(":")[0] if conn.client else None
        if action == "document.sync":  # one per message: counted on one entry per flush
            self.audit.record_coalesced(
                p, action, "session", session_id, result, code=code, client=client
            )
        else:
            self.audit.record_nowait(
                Entry.of(p, action, "session", session_id, result, code=code, client=client)
            )

    async def _open(self, conn: Connection, token: str | None, session_id: str) -> YjsPeer | None:
        principal: Principal | None = None
        try:
            if token is None:
                raise AuthError("missing token: connect with ?token=...")
            principal = await self.governance.authenticate(token)
            apikeys.require_scope(principal, apikeys.Scope.SESSIONS_READ)
            await self.governance.quotas.admit(principal, conn.id)
            conn.principal = principal  # from here on the slot is given back on close
            await self.service.ensure_principal(principal)
            access = await self.manager.access(principal, session_id)
        except AuthError as exc:
            conn.close(CloseCode.DOC_UNAUTHENTICATED, exc.message)
            return None
        except QuotaExceeded as exc:
            conn.close(CloseCode.DOC_QUOTA_EXCEEDED, exc.message)
            return None
        except Forbidden as exc:
            conn.close(CloseCode.DOC_FORBIDDEN, exc.message)
            return None
        except NotFound as exc:
            if principal is not None:
                self._audit(principal, conn, "document.join", session_id, exc)
            conn.close(CloseCode.DOC_NOT_FOUND, exc.message)
            return None
        except Exception:
            log.exception("opening a document connection failed")
            conn.close(CloseCode.DOC_UNAVAILABLE, "internal error; try again")
            return None
        conn.principal = principal
        conn.state = ConnState.OPEN
        structlog.contextvars.bind_contextvars(tenant=principal.tenant_id, user=principal.user_id)
        peer = YjsPeer(conn, principal, session_id, access)
        try:
            await self.manager.join(peer)
        except ParleyError as exc:
            conn.close(CloseCode.DOC_UNAVAILABLE, exc.message)
            return None
        self._audit(principal, conn, "document.join", session_id, None)
        return peer

    async def _pump(self, peer: YjsPeer, receive: ASGIReceive) -> None:
        conn, s = peer.conn, self.settings
        now = time.monotonic()
        frames = TokenBucket(s.frame_rate, s.frame_burst, now)
        faults = TokenBucket(5.0, 100, now)
        while conn.is_open:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                conn.disconnected()
                return
            data = message.get("bytes")
            if data is None:
                error: ParleyError | None = ParleyError(
                    "y-protocol messages are binary frames", code=ErrorCode.BAD_DOC_MESSAGE
                )
            else:
                wait = frames.take(time.monotonic())
                if wait:
                    await asyncio.sleep(wait)  # slow the sender down; never drop an update
                error = await self._handle(peer, data)
            if error is not None:
                peer.refuse(error)
                if faults.take(time.monotonic()):
                    conn.close(CloseCode.TOO_MANY_ERRORS, "too many refused messages", flush=True)

    async def _handle(self, peer: YjsPeer, data: bytes) -> ParleyError | None:
        outcome: ParleyError | None = None
        try:
            await self.manager.receive(peer, data)
        except NotFound as exc:  # the session was deleted, or the caller lost access
            peer.end(CloseCode.DOC_NOT_FOUND, exc)
        except ParleyError as exc:
            outcome = exc
        except Exception:
            log.exception("document message failed")
            outcome = ParleyError("internal error; the message was not applied")
        self._audit(peer.principal, peer.conn, "document.sync", peer.session_id, outcome)
        return outcome

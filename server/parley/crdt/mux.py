"""Document sync multiplexed on the main ``/ws`` socket, so a Parley client needs one socket.

Frames (see docs/protocol.md, "Collaborative documents")::

    client  {"type": "doc_join",  "id": 1, "session": S}            -> ack {"role": ...}, then
    server  {"type": "doc", "session": S, "data": <y message>}         sync step 1 and presence
    client  {"type": "doc", "session": S, "data": <y message>}      -> only errors are answered
    client  {"type": "doc_leave", "id": 2, "session": S}            -> ack

``data`` is exactly what a y-websocket client would send or receive as one binary message on
``/yjs``: bytes (msgpack ``bin``) on msgpack connections, base64 text on JSON connections.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable

import structlog

from parley.crdt.manager import DocManager
from parley.crdt.room import Access
from parley.errors import CloseCode, ErrorCode, NotFound, ParleyError
from parley.governance.auth import Principal
from parley.hub.connection import Connection
from parley.protocol.codec import Encoding
from parley.protocol.server_frames import error

log = structlog.get_logger("parley.crdt")


class MuxPeer:
    """One document joined on one ``/ws`` connection."""

    def __init__(
        self, conn: Connection, principal: Principal, session_id: str, access: Access, mux: Mux
    ) -> None:
        self.conn = conn
        self.key = f"ws:{conn.id}:{session_id}"
        self.principal = principal
        self.session_id = session_id
        self.access = access
        self._mux = mux

    def send(self, message: bytes) -> None:
        data: bytes | str = message
        if self.conn.encoding is not Encoding.MSGPACK:
            data = base64.b64encode(message).decode()
        self.conn.send_frame({"type": "doc", "session": self.session_id, "data": data})

    def end(self, code: CloseCode, err: ParleyError) -> None:
        """The document ended for this client (session deleted, server stopping); the socket
        stays open for everything else."""
        self._mux.forget(self)
        if err.details is None:
            err.details = {"session": self.session_id}
        self.conn.send_frame(error(None, err))


class Mux:
    """The documents each ``/ws`` connection has joined."""

    def __init__(self, manager: DocManager) -> None:
        self.manager = manager
        self._peers: dict[Connection, dict[str, MuxPeer]] = {}
        self._watchers: dict[Connection, asyncio.Task[None]] = {}

    async def join(
        self,
        conn: Connection,
        principal: Principal,
        session_id: str,
        on_joined: Callable[[Access], None],
    ) -> None:
        """Join (or join again, which syncs afresh). ``on_joined`` sends the ack, before the
        room's first messages. Raises ``not_found`` or ``document_unavailable``."""
        self.leave(conn, session_id)
        access = await self.manager.access(principal, session_id)
        peer = MuxPeer(conn, principal, session_id, access, self)
        self._peers.setdefault(conn, {})[session_id] = peer
        self._watch(conn)
        try:
            await self.manager.join(peer, on_ready=lambda: on_joined(access))
        except BaseException:
            self.forget(peer)
            raise
        if not conn.is_open:  # the socket went away during the load
            self.leave(conn, session_id)

    async def receive(self, conn: Connection, session_id: str, data: bytes) -> None:
        """One y-protocol message; raises the refusal (the pump answers with an error)."""
        peer = self._peers.get(conn, {}).get(session_id)
        if peer is None:
            raise ParleyError(
                "join the document with doc_join first", code=ErrorCode.NOT_SUBSCRIBED
            )
        try:
            await self.manager.receive(peer, data)
        except NotFound:  # the session was deleted: the document is gone for this client
            self.leave(conn, session_id)
            raise

    def leave(self, conn: Connection, session_id: str) -> bool:
        peer = self._peers.get(conn, {}).get(session_id)
        if peer is None:
            return False
        self.manager.leave(peer)
        self.forget(peer)
        return True

    def forget(self, peer: MuxPeer) -> None:
        peers = self._peers.get(peer.conn)
        if peers is not None and peers.get(peer.session_id) is peer:
            del peers[peer.session_id]
            if not peers:
                del self._peers[peer.conn]

    def _watch(self, conn: Connection) -> None:
        """Leave every document the moment the connection is gone, so its presence ends at
        once (the hub's own bookkeeping has no hook for us)."""
        if conn not in self._watchers:
            self._watchers[conn] = asyncio.get_running_loop().create_task(self._wait(conn))

    async def _wait(self, conn: Connection) -> None:
        try:
            await conn.until_closed()
        except asyncio.CancelledError:
            pass  # our own cancellation (shutdown) still needs the clean-up below
        finally:
            self._watchers.pop(conn, None)
            for session_id in list(self._peers.get(conn, {})):
                self.leave(conn, session_id)

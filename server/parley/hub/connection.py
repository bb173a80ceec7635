"""One client connection: its identity, its subscriptions, and a bounded send queue drained by
its own writer task, so fan-out never waits for a slow client.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
from collections import deque
from collections.abc import Callable
from enum import Enum
from typing import Any

import structlog

from parley import metrics
from parley.errors import CloseCode
from parley.governance.auth import Principal
from parley.hub.events import OutEvent
from parley.protocol.codec import Encoding, encode
from parley.types import ASGISend, Scope

log = structlog.get_logger("parley.hub")


class ConnState(Enum):
    AUTHENTICATING = "authenticating"
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


# Connection ids: unique within the process (presence adds the process id), cheap to make
# (the OS random source cost ~4% of connect time in profiles); the prefix tells processes'
# logs apart.
_CONN_PREFIX = secrets.token_hex(3)
_conn_numbers = itertools.count(1)


class Connection:
    """Owns the write side of one socket. All writes go through the queue."""

    def __init__(
        self,
        send: ASGISend,
        *,
        conn_id: str,
        encoding: Encoding,
        max_queue: int,
        client: str | None = None,
    ) -> None:
        self.id = conn_id
        self.encoding = encoding
        self.client = client
        self.principal: Principal | None = None
        self.state = ConnState.AUTHENTICATING
        self.close_code: int | None = None
        self._send = send
        self._queue: deque[bytes | str] = deque()
        self._max_queue = max_queue
        self._wakeup = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._close_reason = ""
        self._writer: asyncio.Task[None] | None = None
        self.on_close: Callable[[Connection], None] | None = None

    @classmethod
    def for_scope(
        cls, scope: Scope, send: ASGISend, *, encoding: Encoding, max_queue: int
    ) -> Connection:
        """A connection for an ASGI WebSocket scope, with a fresh id and the peer address."""
        client = scope.get("client")
        return cls(
            send,
            conn_id=f"{_CONN_PREFIX}{next(_conn_numbers):x}",
            encoding=encoding,
            max_queue=max_queue,
            client=f"{client[0]}:{client[1]}" if client else None,
        )

    def start(self) -> None:
        self._writer = asyncio.get_running_loop().create_task(self._write_loop())

    @property
    def is_open(self) -> bool:
        return self.state in (ConnState.AUTHENTICATING, ConnState.OPEN)

    # -- queueing ---------------------------------------------------------------------------

    def send_frame(self, frame: dict[str, Any]) -> None:
        """Queue a frame built for this connection alone (ack, error, welcome)."""
        self._push(encode(frame, self.encoding))

    def send_event(self, event: OutEvent) -> None:
        """Queue a shared event, in this connection's encoding (encoded once per format)."""
        self._push(event.encoded(self.encoding))

    async def send_event_waiting(self, event: OutEvent) -> None:
        """Queue an event, waiting for room instead of failing: replay uses this."""
        while self.is_open and len(self._queue) >= self._max_queue // 2:
            self._room.clear()
            await self._room.wait()
        self._push(event.encoded(self.encoding))

    def _push(self, data: bytes | str) -> None:
        if not self.is_open:
            return
        if len(self._queue) >= self._max_queue:
            self.close(CloseCode.SLOW_CONSUMER, "send queue overflow; reconnect and resume by seq")
            return
        self._queue.append(data)
        self._wakeup.set()

    # -- closing ----------------------------------------------------------------------------

    def close(self, code: int, reason: str = "", *, flush: bool = False) -> None:
        """Close the socket with ``code``. Without ``flush`` queued frames are dropped."""
        if not self.is_open:
            return
        self.state = ConnState.CLOSING
        self.close_code = int(code)
        self._close_reason = reason[:120]
        if not flush:
            self._queue.clear()
        metrics.DISCONNECTS.labels(code=str(code)).inc()
        log.info("closing connection", conn=self.id, code=int(code), reason=reason)
        self._wakeup.set()
        self._room.set()
        if self.on_close is not None:
            # Stop fan-out to this connection soon, not when the peer finally goes away (a
            # stalled peer may hold its socket until the keepalive gives up). Deferred: close()
            # can run in the middle of a fan-out loop over the subscribers.
            asyncio.get_running_loop().call_soon(self.on_close, self)

    async def wait_closed(self, grace: float | None = None) -> None:
        """Wait up to ``grace`` seconds for the writer to flush and send the close frame."""
        if self._writer is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._writer), grace)
        except TimeoutError:
            self._writer.cancel()

    def disconnected(self) -> None:
        """The peer went away: stop writing."""
        self.state = ConnState.CLOSED
        self._queue.clear()
        self._wakeup.set()
        self._room.set()

    # -- the writer -------------------------------------------------------------------------

    async def _write_loop(self) -> None:
        queue, send = self._queue, self._send
        try:
            while True:
                written = 0
                while queue:
                    data = queue.popleft()
                    if isinstance(data, bytes):
                        await send({"type": "websocket.send", "bytes": data})
                    else:
                        await send({"type": "websocket.send", "text": data})
                    written += 1
                    if not self._room.is_set() and len(queue) < self._max_queue // 4:
                        self._room.set()
                if written:  # one (locked) counter update per batch, not per frame
                    metrics.FRAMES_OUT.inc(written)
                self._room.set()
                if self.state is ConnState.CLOSING:
                    await send(
                        {
                            "type": "websocket.close",
                            "code": self.close_code,
                            "reason": self._close_reason,
                        }
                    )
                    self.state = ConnState.CLOSED
                    return
                if self.state is ConnState.CLOSED:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
        except (OSError, RuntimeError) as exc:
            # The transport died under us (peer reset, already-closed socket); uvicorn's
            # ClientDisconnected is an OSError.
            log.debug("writer stopped", conn=self.id, error=str(exc))
            self.state = ConnState.CLOSED

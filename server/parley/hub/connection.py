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
from parley.hub.wire import Wire, frame_bytes, wire_of
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
    """Owns the write side of one socket. Frames go out in order: written at once while
    nothing is queued and the socket takes them (see ``hub.wire``), else queued and written by
    a writer task that exists only while there is something to write."""

    __slots__ = (
        "_close_reason",
        "_draining",
        "_gone",
        "_max_queue",
        "_queue",
        "_room",
        "_send",
        "_wakeup",
        "_wire",
        "_writer",
        "client",
        "close_code",
        "encoding",
        "id",
        "on_close",
        "principal",
        "state",
    )

    def __init__(
        self,
        send: ASGISend,
        *,
        conn_id: str,
        encoding: Encoding,
        max_queue: int,
        client: str | None = None,
        wire: Wire | None = None,
    ) -> None:
        self.id = conn_id
        self.encoding = encoding
        self.client = client
        self.principal: Principal | None = None
        self.state = ConnState.AUTHENTICATING
        self.close_code: int | None = None
        self._send = send
        # With a wire, queued items are complete WebSocket frames; without, ASGI payloads.
        self._wire = wire
        self._queue: deque[bytes | str] = deque()
        self._max_queue = max_queue
        self._draining = False  # the writer holds frames taken from the queue
        # Created when first needed: most connections never queue, and these cost memory.
        self._wakeup: asyncio.Event | None = None
        self._room: asyncio.Event | None = None
        self._close_reason = ""
        self._writer: asyncio.Task[None] | None = None
        self._gone: asyncio.Future[None] | None = None  # made by until_closed() when awaited
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
            wire=wire_of(scope),
        )

    @property
    def is_open(self) -> bool:
        return self.state in (ConnState.AUTHENTICATING, ConnState.OPEN)

    # -- queueing ---------------------------------------------------------------------------

    def send_frame(self, frame: dict[str, Any]) -> None:
        """Send a frame built for this connection alone (ack, error, welcome)."""
        data = encode(frame, self.encoding)
        if self._push(frame_bytes(data) if self._wire is not None else data):
            metrics.FRAMES_OUT.inc()

    def send_event(self, event: OutEvent, *, count: bool = True) -> bool:
        """Send a shared event, in this connection's encoding (encoded and framed once per
        format for all connections). True when it was written at once; ``count=False`` leaves
        counting those to the caller (a fan-out counts once for all its connections)."""
        if self._wire is not None:
            written = self._push(event.wire(self.encoding))
        else:
            written = self._push(event.encoded(self.encoding))
        if written and count:
            metrics.FRAMES_OUT.inc()
        return written

    async def send_event_waiting(self, event: OutEvent) -> None:
        """Send an event, waiting for room instead of failing: replay uses this."""
        while self.is_open and len(self._queue) >= self._max_queue // 2:
            if self._room is None:
                self._room = asyncio.Event()
            self._room.clear()
            await self._room.wait()
        self.send_event(event)

    def _push(self, data: bytes | str) -> bool:
        if not self.is_open:
            return False
        queue = self._queue
        wire = self._wire
        if not queue and not self._draining and wire is not None and wire.ready():
            wire.write(data)  # type: ignore[arg-type]  # with a wire, data is a frame
            return True
        if len(queue) >= self._max_queue:
            self.close(CloseCode.SLOW_CONSUMER, "send queue overflow; reconnect and resume by seq")
            return False
        queue.append(data)
        self._wake()
        return False

    def _wake(self) -> None:
        if self._writer is None:
            self._wakeup = asyncio.Event()
            self._writer = asyncio.get_running_loop().create_task(self._write_loop())
        else:
            assert self._wakeup is not None
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
        self._wake()  # the writer sends the close frame after what is queued
        self._mark_gone()
        if self._room is not None:
            self._room.set()
        if self.on_close is not None:
            # Stop fan-out to this connection soon, not when the peer finally goes away (a
            # stalled peer may hold its socket until the keepalive gives up). Deferred: close()
            # can run in the middle of a fan-out loop over the subscribers.
            asyncio.get_running_loop().call_soon(self.on_close, self)

    async def until_closed(self) -> None:
        """Until the connection stops being open (closed by us or gone on the peer's side);
        unlike :meth:`wait_closed`, this does not depend on a writer task existing."""
        if not self.is_open:
            return
        if self._gone is None:
            self._gone = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._gone)

    def _mark_gone(self) -> None:
        if self._gone is not None and not self._gone.done():
            self._gone.set_result(None)

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
        self._mark_gone()
        if self._wakeup is not None:
            self._wakeup.set()
        if self._room is not None:
            self._room.set()

    # -- the writer -------------------------------------------------------------------------

    async def _write_loop(self) -> None:
        queue, send, wire = self._queue, self._send, self._wire
        wakeup = self._wakeup
        assert wakeup is not None
        try:
            while True:
                self._draining = True
                written = 0
                while queue:
                    if wire is not None:
                        # Frames as they are, all queued ones in one write (one system call).
                        if not wire.ready():
                            await wire.wait_writable()
                            if wire.gone:
                                raise ConnectionResetError("the peer went away")
                        n = len(queue)
                        chunk = queue[0] if n == 1 else b"".join(queue)  # type: ignore[arg-type]
                        queue.clear()
                        wire.write(chunk)  # type: ignore[arg-type]
                        written += n
                    else:
                        data = queue.popleft()
                        if isinstance(data, bytes):
                            await send({"type": "websocket.send", "bytes": data})
                        else:
                            await send({"type": "websocket.send", "text": data})
                        written += 1
                    room = self._room
                    if room is not None and not room.is_set() and len(queue) < self._max_queue // 4:
                        room.set()
                self._draining = False
                if written:  # one (locked) counter update per batch, not per frame
                    metrics.FRAMES_OUT.inc(written)
                if self._room is not None:
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
                wakeup.clear()
                await wakeup.wait()
        except (OSError, RuntimeError) as exc:
            # The transport died under us (peer reset, already-closed socket); uvicorn's
            # ClientDisconnected is an OSError.
            log.debug("writer stopped", conn=self.id, error=str(exc))
            self.state = ConnState.CLOSED
            self._mark_gone()
        finally:
            self._draining = False

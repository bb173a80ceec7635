"""One logical socket to ``/ws`` that survives reconnects.

It matches answers to requests by frame id, and on every (re)connect it first lets its owner
restore state (resubscribe by ``since_seq``), then sends the requests still waiting. A request
marked ``resend`` (a ``send`` with a ``client_id``, an edit) is sent again after a reconnect
when its answer never came: the server dedupes it, so it is stored once. Any other request in
flight when the socket drops fails with :class:`ConnectionLost`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgpack
import orjson
import structlog
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from parley.client.backoff import Backoff
from parley.client.errors import (
    ClientClosed,
    ClientError,
    ConnectionLost,
    Unauthenticated,
    error_from,
)
from parley.client.models import User
from parley.errors import CloseCode

log = structlog.get_logger("parley.client")

# Close codes after which reconnecting cannot help: the credential or the client is at fault.
FATAL_CLOSE_CODES = frozenset({CloseCode.UNAUTHENTICATED, CloseCode.TOO_MANY_ERRORS})


@dataclass(slots=True, eq=False)
class _Pending:
    frame: dict[str, Any]
    future: asyncio.Future[dict[str, Any]]
    resend: bool
    sent_on: int | None = None  # the connection number it was last sent on


class Transport:
    """Requests and events over a reconnecting WebSocket (see the module docstring)."""

    def __init__(
        self,
        ws_url: str,
        token: str,
        *,
        msgpack_frames: bool = False,
        backoff: Backoff | None = None,
        on_event: Callable[[dict[str, Any]], None],
        on_connected: Callable[[User, bool], Awaitable[None]],
        connect_timeout: float = 15.0,
        request_timeout: float = 30.0,
    ) -> None:
        fmt = "msgpack" if msgpack_frames else "json"
        self._url = f"{ws_url}?format={fmt}"
        self._token = token
        self._binary = msgpack_frames
        self._backoff = backoff or Backoff()
        self._on_event = on_event
        self._on_connected = on_connected
        self._connect_timeout = connect_timeout
        self.request_timeout = request_timeout
        self._ws: ClientConnection | None = None
        self._generation = 0
        self._pending: dict[str, _Pending] = {}
        self._ids = itertools.count(1)
        self._runner: asyncio.Task[None] | None = None
        self._closing = False
        self.failure: BaseException | None = None  # why it stopped for good, if it did
        self.done = asyncio.Event()
        self.connected = asyncio.Event()
        self.user: User | None = None
        self.reconnects = 0

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> User:
        """Connect for the first time; raises :class:`Unauthenticated` for a bad credential
        (and the connection error when the server cannot be reached)."""
        ws, user = await self._open()
        self.user = user
        self._runner = asyncio.get_running_loop().create_task(self._run(ws), name="parley-client")
        return user

    async def close(self) -> None:
        """Close the socket (1000) and fail what is still waiting with :class:`ClientClosed`."""
        self._closing = True
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        if self._runner is not None:
            self._runner.cancel()  # it may be waiting to reconnect
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        self._fail_all(ClientClosed("the client was closed"))
        self.done.set()

    async def kill(self) -> None:
        """Drop the current socket without a close handshake (tests; the client reconnects)."""
        if self._ws is not None:
            self._ws.transport.abort()

    # -- requests ---------------------------------------------------------------------------

    async def request(self, frame: dict[str, Any], *, resend: bool = False) -> dict[str, Any]:
        """Send ``frame`` with a fresh id; its ``ack`` (an ``error`` raises, typed). Waits at
        most ``request_timeout`` seconds, reconnects included; a request given up is never
        sent again."""
        pending = self._submit(frame, resend)
        try:
            async with asyncio.timeout(self.request_timeout):
                return await pending.future
        finally:
            self._pending.pop(pending.frame["id"], None)

    def submit(
        self, frame: dict[str, Any], *, resend: bool = False
    ) -> asyncio.Future[dict[str, Any]]:
        """Queue ``frame`` with a fresh id and return the future of its ack, without waiting.
        While disconnected it waits and goes out on the next connection."""
        return self._submit(frame, resend).future

    def _submit(self, frame: dict[str, Any], resend: bool) -> _Pending:
        if self.failure is not None:
            raise self.failure
        if self._closing:
            raise ClientClosed("the client is closed")
        ref = f"c{next(self._ids)}"
        pending = _Pending({**frame, "id": ref}, asyncio.get_running_loop().create_future(), resend)
        self._pending[ref] = pending
        if self._ws is not None and self.connected.is_set():
            self._write(pending)
        return pending

    async def notify(self, frame: dict[str, Any]) -> None:
        """Send a frame that gets no answer (``typing`` without an id); dropped when offline."""
        if self._ws is not None and self.connected.is_set():
            with contextlib.suppress(ConnectionClosed):
                await self._ws.send(self._encode(frame))

    def _write(self, pending: _Pending) -> None:
        ws = self._ws
        assert ws is not None
        pending.sent_on = self._generation
        data = self._encode(pending.frame)
        task = asyncio.get_running_loop().create_task(ws.send(data))
        task.add_done_callback(_ignore_closed)

    def _encode(self, frame: dict[str, Any]) -> bytes | str:
        if self._binary:
            packed: bytes = msgpack.packb(frame, use_bin_type=True)
            return packed
        return orjson.dumps(frame).decode()

    # -- the connection loop ----------------------------------------------------------------

    async def _open(self) -> tuple[ClientConnection, User]:
        ws = await connect(
            self._url,
            additional_headers={"Authorization": f"Bearer {self._token}"},
            open_timeout=self._connect_timeout,
            max_size=None,
        )
        try:
            async with asyncio.timeout(self._connect_timeout):
                first = self._decode(await ws.recv())
        except ConnectionClosed as exc:
            raise _closed_error(exc) from None
        except BaseException:
            await ws.close()
            raise
        if first.get("type") == "error":
            await ws.close()
            raise error_from(first)
        if first.get("type") != "welcome":
            await ws.close()
            raise ClientError(f"expected a welcome frame, got {first.get('type')!r}")
        return ws, User.from_dict(first["user"])

    async def _run(self, ws: ClientConnection) -> None:
        resumed = False
        try:
            while not self._closing:
                await self._serve(ws, resumed)
                if self._closing:
                    return
                resumed = True
                ws = await self._reconnect()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            if self._closing:
                return
            self.failure = exc
            log.error("parley client stopped", error=str(exc))
            self._fail_all(exc)
        finally:
            self.connected.clear()
            self.done.set()

    async def _serve(self, ws: ClientConnection, resumed: bool) -> None:
        """Use one connection until it closes."""
        self._ws = ws
        self._generation += 1
        self.connected.set()
        reader = asyncio.get_running_loop().create_task(self._read(ws))
        try:
            assert self.user is not None
            await self._on_connected(self.user, resumed)
            for pending in list(self._pending.values()):
                if pending.sent_on != self._generation:
                    self._write(pending)
            self._backoff.reset()
            await reader
        finally:
            reader.cancel()
            self.connected.clear()
            self._ws = None
            self._lost(self._generation)
        code = ws.close_code
        if code == CloseCode.UNAUTHENTICATED and not self._closing:
            raise Unauthenticated("unauthenticated", ws.close_reason or "the token was refused")
        if code in FATAL_CLOSE_CODES and not self._closing:
            raise ClientError(f"the server closed the connection ({code} {ws.close_reason})")
        if not self._closing:
            log.info("connection lost; reconnecting", code=code, reason=ws.close_reason)

    async def _read(self, ws: ClientConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for data in ws:
                try:
                    frame = self._decode(data)
                except (ValueError, msgpack.UnpackException) as exc:
                    log.warning("undecodable frame from the server", error=str(exc))
                    continue
                self._dispatch(frame)

    def _dispatch(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "event":
            self._on_event(frame)
            return
        ref = frame.get("ref")
        pending = self._pending.pop(ref, None) if isinstance(ref, str) else None
        if pending is None:
            if kind == "error":
                log.warning(
                    "error from the server", code=frame.get("code"), message=frame.get("message")
                )
            return
        if pending.future.done():
            return
        if kind == "error":
            pending.future.set_exception(error_from(frame))
        else:
            pending.future.set_result(frame)

    async def _reconnect(self) -> ClientConnection:
        while True:
            delay = self._backoff.next_delay()
            log.info("reconnecting", delay=round(delay, 3), attempt=self._backoff.attempt)
            await asyncio.sleep(delay)
            if self._closing:
                raise ClientClosed("the client was closed")
            try:
                ws, user = await self._open()
            except (Unauthenticated, ClientError):
                raise
            except (OSError, TimeoutError, WebSocketException) as exc:
                if isinstance(exc, InvalidStatus) and exc.response.status_code == 401:
                    raise Unauthenticated(
                        "unauthenticated", "the server refused the credential"
                    ) from None
                log.info("reconnect failed", error=str(exc) or type(exc).__name__)
                continue
            self.user = user
            self.reconnects += 1
            return ws

    def _lost(self, generation: int) -> None:
        """The connection ``generation`` dropped: fail what cannot be resent safely."""
        for ref, pending in list(self._pending.items()):
            if pending.sent_on == generation and not pending.resend:
                del self._pending[ref]
                if not pending.future.done():
                    pending.future.set_exception(
                        ConnectionLost(
                            f"the connection dropped before the answer to {pending.frame['type']}"
                        )
                    )

    def _fail_all(self, exc: BaseException) -> None:
        for pending in self._pending.values():
            if not pending.future.done():
                pending.future.set_exception(exc)
        self._pending.clear()

    def _decode(self, data: bytes | str) -> dict[str, Any]:
        frame = msgpack.unpackb(data, raw=False) if isinstance(data, bytes) else orjson.loads(data)
        if not isinstance(frame, dict):
            raise ValueError("a server frame must be an object")
        return frame


def _closed_error(exc: ConnectionClosed) -> ClientError:
    code = exc.rcvd.code if exc.rcvd is not None else None
    reason = exc.rcvd.reason if exc.rcvd is not None else ""
    if code == CloseCode.UNAUTHENTICATED:
        return Unauthenticated("unauthenticated", reason or "the server refused the credential")
    return ConnectionLost(f"the server closed the connection ({code} {reason})")


def _ignore_closed(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        exc = task.exception()
        if exc is not None and not isinstance(exc, ConnectionClosed):
            log.warning("frame not sent", error=str(exc))

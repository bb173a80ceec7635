"""``ParleyClient``: an async client for bot participants.

It holds one REST client and one reconnecting socket. ``join`` subscribes to a session; every
event of a joined session goes to the handlers registered with ``on_message`` and
``on_event``, in ``seq`` order, one at a time per session (sessions run side by side). After a
reconnect each joined session resumes from the last ``seq`` handled, so handlers see every
durable event exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar, overload

import structlog

from parley.client.backoff import Backoff
from parley.client.context import MessageContext, StreamReply, keep_typing
from parley.client.errors import ClientClosed, NotFound, ServerError, StreamStopped
from parley.client.models import Event, JoinResult, Message, Presence, SendResult, User
from parley.client.rest import RestClient
from parley.client.tracker import SeqTracker
from parley.client.transport import Transport
from parley.ids import new_id

log = structlog.get_logger("parley.client")

MessageHandler = Callable[[Message, MessageContext], Awaitable[None]]
EventHandler = Callable[[Event], Awaitable[None]]
H = TypeVar("H", bound=MessageHandler)
E = TypeVar("E", bound=EventHandler)


@dataclass(frozen=True, slots=True)
class _Route:
    handler: MessageHandler
    mentioned: bool
    include_own: bool


class _Joined:
    """A joined session: its resume position, its event queue and the worker draining it."""

    def __init__(self, session_id: str, since_seq: int | None) -> None:
        self.session_id = session_id
        self.tracker = SeqTracker(since_seq)
        self.queue: asyncio.Queue[Event] = asyncio.Queue()
        self.worker: asyncio.Task[None] | None = None
        self.present: dict[str, Presence] = {}


class ParleyClient:
    """A bot's connection to a Parley server.

    ``url`` is the server's base URL (``http://127.0.0.1:8000``); ``token`` a bearer token or
    an API key (``pk_...``). Use it as an async context manager, or call :meth:`connect` and
    :meth:`close`.
    """

    def __init__(
        self,
        url: str,
        token: str,
        *,
        msgpack: bool = False,
        backoff: Backoff | None = None,
        request_timeout: float = 30.0,
    ) -> None:
        base = url.rstrip("/")
        ws = "ws" + base[4:] if base.startswith("http") else base
        self.url = base
        self.request_timeout = request_timeout
        self.rest = RestClient(base, token, timeout=request_timeout)
        self.transport = Transport(
            ws + "/ws",
            token,
            msgpack_frames=msgpack,
            backoff=backoff,
            on_event=self._on_frame,
            on_connected=self._on_connected,
            request_timeout=request_timeout,
        )
        self.user: User | None = None
        self._joined: dict[str, _Joined] = {}
        self._routes: list[_Route] = []
        self._event_handlers: dict[str, list[EventHandler]] = {}
        self._closed = False
        self._closer: asyncio.Task[None] | None = None

    # -- lifecycle --------------------------------------------------------------------------

    async def __aenter__(self) -> ParleyClient:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def connect(self) -> User:
        """Open the socket and authenticate. Raises :class:`Unauthenticated` for a bad token."""
        try:
            self.user = await self.transport.start()
        except BaseException:
            await self.rest.aclose()
            raise
        log.info("connected", user=self.user.id, url=self.url)
        return self.user

    async def close(self, grace: float = 5.0) -> None:
        """Stop: let each session's current handler finish (up to ``grace`` seconds), drop
        the events still queued, close the socket and the HTTP client."""
        if self._closed:
            return
        self._closed = True
        # A handler may call close() itself: its own session worker is neither awaited nor
        # cancelled here; it ends after that handler returns.
        current = asyncio.current_task()
        joined = [j for j in self._joined.values() if j.worker is not current]
        for j in self._joined.values():
            while not j.queue.empty():
                j.queue.get_nowait()
                j.queue.task_done()
        if joined:
            waits = [asyncio.ensure_future(j.queue.join()) for j in joined]
            await asyncio.wait(waits, timeout=grace)
            for task in waits:
                task.cancel()
        workers = [j.worker for j in joined if j.worker is not None]
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        await self.transport.close()
        await self.rest.aclose()

    async def run_forever(self, *, stop_on_signals: bool = False) -> None:
        """Wait until the client is closed, or gives up (a token refused on a reconnect):
        then raise why. ``stop_on_signals``: SIGINT and SIGTERM close the client gracefully
        (for a bot's main program)."""
        loop = asyncio.get_running_loop()
        signals = (signal.SIGINT, signal.SIGTERM) if stop_on_signals else ()
        for sig in signals:
            loop.add_signal_handler(sig, self._close_soon)
        try:
            await self.transport.done.wait()
            if self._closer is not None:
                await self._closer
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)
        if self.transport.failure is not None:
            raise self.transport.failure

    def _close_soon(self) -> None:
        if self._closer is None:
            log.info("stopping")
            self._closer = asyncio.get_running_loop().create_task(self.close())

    @property
    def names(self) -> tuple[str, ...]:
        """The names a mention of this bot may use: its user id and its display name."""
        if self.user is None:
            return ()
        return tuple(dict.fromkeys((self.user.id, self.user.name)))

    # -- handlers ---------------------------------------------------------------------------

    @overload
    def on_message(self, handler: H, /) -> H: ...

    @overload
    def on_message(
        self, handler: None = None, /, *, mentioned: bool = False, include_own: bool = False
    ) -> Callable[[H], H]: ...

    def on_message(
        self, handler: H | None = None, /, *, mentioned: bool = False, include_own: bool = False
    ) -> H | Callable[[H], H]:
        """Register ``async def handler(message, ctx)`` for new messages of joined sessions.

        ``mentioned=True``: only messages that mention the bot (``@id`` or ``@name``).
        The bot's own messages are skipped unless ``include_own=True``.
        """

        def register(fn: H) -> H:
            self._routes.append(_Route(fn, mentioned, include_own))
            return fn

        return register(handler) if handler is not None else register

    def on_event(self, name: str) -> Callable[[E], E]:
        """Register ``async def handler(event)`` for events named ``name`` (for example
        ``"typing"``, ``"presence.joined"``, ``"message.edited"``, ``"stream.delta"``), or
        ``"*"`` for every event."""

        def register(fn: E) -> E:
            self._event_handlers.setdefault(name, []).append(fn)
            return fn

        return register

    # -- sessions ---------------------------------------------------------------------------

    async def join(self, session_id: str, *, since_seq: int | None = None) -> JoinResult:
        """Subscribe to a session. Events from now on reach the handlers; with ``since_seq``
        those after it first (0: the whole history). Presence starts here too."""
        joined = self._joined.get(session_id)
        if joined is None:
            joined = self._joined[session_id] = _Joined(session_id, since_seq)
            joined.worker = asyncio.get_running_loop().create_task(self._work(joined))
        try:
            return await self._subscribe(joined)
        except BaseException:
            self._forget(session_id)
            raise

    async def leave(self, session_id: str) -> None:
        """Unsubscribe; queued events of the session are dropped."""
        if self._forget(session_id) is not None:
            with contextlib.suppress(ServerError):
                await self.transport.request({"type": "unsubscribe", "session": session_id})

    def joined(self) -> list[str]:
        return list(self._joined)

    def last_seq(self, session_id: str) -> int | None:
        """The newest durable seq handled in a joined session (the resume position)."""
        joined = self._joined.get(session_id)
        return joined.tracker.last_seq if joined is not None else None

    def present(self, session_id: str) -> list[Presence]:
        """Who is in a joined session now, as the presence events told this client."""
        joined = self._joined.get(session_id)
        return sorted(joined.present.values(), key=lambda p: p.user_id) if joined else []

    async def presence(self, session_id: str) -> list[Presence]:
        """Who is in the session now, asked over REST (any session of the tenant)."""
        return await self.rest.presence(session_id)

    async def _subscribe(self, joined: _Joined) -> JoinResult:
        frame: dict[str, Any] = {"type": "subscribe", "session": joined.session_id}
        if joined.tracker.last_seq is not None:
            frame["since_seq"] = joined.tracker.last_seq
        ack = await self.transport.request(frame)
        joined.tracker.acked(int(ack["seq"]))
        present = [Presence.from_dict(p) for p in ack.get("presence") or []]
        joined.present = {p.user_id: p for p in present}
        return JoinResult(joined.session_id, int(ack["seq"]), int(ack["replayed"]), present)

    def _forget(self, session_id: str) -> _Joined | None:
        joined = self._joined.pop(session_id, None)
        if joined is not None and joined.worker is not None:
            joined.worker.cancel()
        return joined

    async def _on_connected(self, user: User, resumed: bool) -> None:
        """After a reconnect: resubscribe every joined session from its last seq."""
        self.user = user
        if not resumed:
            return
        results = await asyncio.gather(
            *(self._subscribe(j) for j in list(self._joined.values())), return_exceptions=True
        )
        for joined, result in zip(list(self._joined.values()), results, strict=False):
            if isinstance(result, NotFound):
                log.warning("joined session is gone; leaving it", session=joined.session_id)
                self._forget(joined.session_id)
            elif isinstance(result, BaseException):
                log.warning("resubscribe failed", session=joined.session_id, error=str(result))
            else:
                log.info(
                    "resumed", session=joined.session_id, seq=result.seq, replayed=result.replayed
                )

    # -- writing ----------------------------------------------------------------------------

    async def send(
        self,
        session_id: str,
        text: str,
        *,
        parent_id: str | None = None,
        parts: list[dict[str, Any]] | None = None,
        metadata: dict[str, Any] | None = None,
        client_id: str | None = None,
    ) -> SendResult:
        """Post a message over the socket. With a ``client_id`` (one is made up if absent) a
        send interrupted by a reconnect is sent again and stored once."""
        frame: dict[str, Any] = {
            "type": "send",
            "session": session_id,
            "text": text,
            "client_id": client_id or new_id(),
        }
        if parent_id is not None:
            frame["parent_id"] = parent_id
        if parts is not None:
            frame["parts"] = parts
        if metadata is not None:
            frame["metadata"] = metadata
        ack = await self.transport.request(frame, resend=True)
        return SendResult(
            session_id,
            str(ack["message_id"]),
            int(ack["seq"]),
            frame["client_id"],
            bool(ack["duplicate"]),
        )

    async def edit(
        self,
        session_id: str,
        message_id: str,
        *,
        text: str | None = None,
        parts: list[dict[str, Any]] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> int:
        """Change one of the bot's messages; returns the seq of the edit."""
        frame: dict[str, Any] = {"type": "edit", "session": session_id, "message_id": message_id}
        for key, value in (("text", text), ("parts", parts), ("metadata", metadata)):
            if value is not None:
                frame[key] = value
        ack = await self.transport.request(frame, resend=True)
        return int(ack["seq"])

    async def delete(self, session_id: str, message_id: str) -> int:
        """Tombstone a message; returns the seq of the deletion."""
        ack = await self.transport.request(
            {"type": "delete", "session": session_id, "message_id": message_id}
        )
        return int(ack["seq"])

    async def typing(self, session_id: str, active: bool = True) -> None:
        """Tell the session's subscribers the bot is (or stopped) typing. Needs a join."""
        await self.transport.notify({"type": "typing", "session": session_id, "active": active})

    def typing_while(
        self, session_id: str, *, interval: float = 3.0
    ) -> contextlib.AbstractAsyncContextManager[None]:
        """``async with client.typing_while(sid):`` keeps the bot shown as typing until the
        block ends."""
        return keep_typing(self, session_id, interval)

    def stream(
        self,
        session_id: str,
        *,
        parent_id: str | None = None,
        client_id: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> StreamReply:
        """A message written piece by piece (see :class:`StreamReply`)."""
        return StreamReply(
            self, session_id, parent_id=parent_id, client_id=client_id, metadata=metadata
        )

    async def ask(
        self,
        session_id: str,
        assistant: str,
        *,
        text: str | None = None,
        message_id: str | None = None,
        client_id: str | None = None,
    ) -> dict[str, Any]:
        """Ask one of the session's assistants (docs/relay.md) to answer ``text`` (posted as
        the bot's message first) or ``message_id`` (default: the latest message). Returns the
        ack (``stream_id``, ``status``); the answer streams to every subscriber."""
        frame: dict[str, Any] = {"type": "ask", "session": session_id, "assistant": assistant}
        if text is not None:
            frame["text"] = text
            frame["client_id"] = client_id or new_id()
        if message_id is not None:
            frame["message_id"] = message_id
        return await self.transport.request(frame, resend=text is not None)

    # -- REST shortcuts ---------------------------------------------------------------------

    async def history(self, session_id: str, *, limit: int = 100) -> list[Message]:
        """The session's latest ``limit`` messages, oldest first (over REST)."""
        session = await self.rest.get_session(session_id)
        after = max(0, session.last_seq - 4 * limit)
        messages: list[Message] = []
        while True:
            page = await self.rest.list_messages(session_id, after_seq=after, limit=200)
            messages.extend(page)
            if len(page) < 200:
                break
            after = page[-1].seq
        return messages[-limit:]

    # -- dispatch ---------------------------------------------------------------------------

    def _on_frame(self, frame: dict[str, Any]) -> None:
        """Called by the transport for each ``event`` frame, in arrival order."""
        session_id = frame.get("session")
        joined = self._joined.get(session_id) if isinstance(session_id, str) else None
        if joined is None or self._closed:
            return
        try:
            event = Event.from_frame(frame)
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("malformed event", error=str(exc))
            return
        if not event.ephemeral and not joined.tracker.accept(event.seq):
            return  # already handled before a reconnect
        if event.name == "presence.joined":
            p = Presence.from_dict(event.data)
            joined.present[p.user_id] = p
        elif event.name == "presence.left":
            joined.present.pop(str(event.data.get("user_id")), None)
        joined.queue.put_nowait(event)

    async def _work(self, joined: _Joined) -> None:
        while not self._closed:
            event = await joined.queue.get()
            try:
                await self._handle(event)
            finally:
                joined.queue.task_done()

    async def _handle(self, event: Event) -> None:
        if event.name == "message.created":
            message = Message.from_dict(event.data["message"])
            own = self.user is not None and message.author == self.user.id
            for route in self._routes:
                if own and not route.include_own:
                    continue
                if route.mentioned and not message.mentions(*self.names):
                    continue
                await self._call(route.handler, message, MessageContext(self, message))
        for name in (event.name, "*"):
            for handler in self._event_handlers.get(name, ()):
                await self._call(handler, event)

    async def _call(self, handler: Callable[..., Awaitable[None]], *args: Any) -> None:
        """Run a handler; a failure is logged with its traceback and the bot goes on."""
        try:
            await handler(*args)
        except asyncio.CancelledError:
            raise
        except ClientClosed:
            pass
        except StreamStopped as exc:
            log.info("a streamed reply was stopped", by=exc.details)
        except Exception:
            log.exception("handler failed", handler=getattr(handler, "__name__", repr(handler)))

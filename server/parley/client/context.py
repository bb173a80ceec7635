"""What a handler works with: the message's context (reply, stream a reply, typing), a typing
keep-alive, and a streamed reply."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any

import structlog

from parley.client.errors import Conflict, ConnectionLost, NotFound, ServerError, StreamStopped
from parley.client.models import Message, SendResult
from parley.ids import new_id
from parley.relay.text import Coalescer

if TYPE_CHECKING:
    from parley.client.bot import ParleyClient

log = structlog.get_logger("parley.client")


@dataclass
class MessageContext:
    """Passed to ``on_message`` handlers with the message. Replies are answers to the message
    (``parent_id``) with client ids derived from it, so a message handled twice (a bot that
    restarted and replayed it) is still answered once."""

    client: ParleyClient
    message: Message
    _replies: int = field(default=0, repr=False)

    @property
    def session_id(self) -> str:
        return self.message.session

    @property
    def text(self) -> str:
        """The message text without the mentions of this bot."""
        return self.message.without_mentions(*self.client.names)

    @property
    def mentioned(self) -> bool:
        """True when the message mentions this bot (``@id`` or ``@name``)."""
        return self.message.mentions(*self.client.names)

    def _next_client_id(self, kind: str) -> str:
        self._replies += 1
        return f"{kind}:{self.message.id}:{self._replies}"

    async def reply(
        self,
        text: str,
        *,
        parts: list[dict[str, Any]] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> SendResult:
        """Post ``text`` as an answer to the message."""
        return await self.client.send(
            self.session_id,
            text,
            parent_id=self.message.id,
            parts=parts,
            metadata=metadata,
            client_id=self._next_client_id("reply"),
        )

    def stream_reply(self, *, metadata: dict[str, Any] | None = None) -> StreamReply:
        """An answer to the message written piece by piece: ``async with ctx.stream_reply() as
        s: await s.write("...")``. Watchers see each piece as it is written."""
        return self.client.stream(
            self.session_id,
            parent_id=self.message.id,
            client_id=self._next_client_id("stream"),
            metadata=metadata,
        )

    def typing(self, interval: float = 3.0) -> contextlib.AbstractAsyncContextManager[None]:
        """Show the bot as typing in the message's session while the block runs."""
        return self.client.typing_while(self.session_id, interval=interval)


@contextlib.asynccontextmanager
async def keep_typing(
    client: ParleyClient, session_id: str, interval: float
) -> AsyncIterator[None]:
    """Send ``typing`` now and every ``interval`` seconds; ``active: false`` at the end."""

    async def beat() -> None:
        while True:
            await client.typing(session_id)
            await asyncio.sleep(interval)

    task = asyncio.get_running_loop().create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        with contextlib.suppress(Exception):  # best effort: typing expires anyway
            await client.typing(session_id, active=False)


class StreamReply:
    """A message streamed into a session (``stream_start`` / ``stream_delta`` / ``stream_end``
    frames). Every subscriber sees ``stream.started`` and ``stream.delta`` events, then the
    stored ``message.created`` and ``stream.finished``, exactly as for an assistant's answer.

    Use it as an async context manager: the message is stored when the block ends; if the
    block raises, what was written is stored with finish reason ``cancelled``. Writes are
    coalesced (one frame every ``flush_interval`` seconds or ``flush_bytes`` bytes) to stay
    well under the server's frame rate.

    If the connection drops mid-stream, the server stores the text so far as
    ``interrupted``; ``finish`` then posts the whole text with the same ``client_id`` after the
    reconnect, which answers with that partial message, and edits it to the whole text. So
    the message is stored once, complete. If someone stops the stream, ``write`` raises
    :class:`StreamStopped`.
    """

    def __init__(
        self,
        client: ParleyClient,
        session_id: str,
        *,
        parent_id: str | None = None,
        client_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        flush_interval: float = 0.04,
        flush_bytes: int = 512,
    ) -> None:
        self.client = client
        self.session_id = session_id
        self.parent_id = parent_id
        self.client_id = client_id or new_id()
        self.metadata = metadata
        self.stream_id: str | None = None
        self.text = ""
        self.result: SendResult | None = None
        self.interrupted = False  # the connection dropped: recover in finish()
        self._stopped: StreamStopped | None = None
        self._done = False
        self._acks: list[asyncio.Future[dict[str, Any]]] = []
        self._flush_interval = flush_interval
        self._flush_bytes = flush_bytes
        self._coalescer: Coalescer | None = None

    async def __aenter__(self) -> StreamReply:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self._done and self._stopped is None and self.stream_id is not None:
            await self.finish(cancelled=exc is not None)

    async def start(self) -> str:
        """Open the stream; returns its id."""
        frame: dict[str, Any] = {
            "type": "stream_start",
            "session": self.session_id,
            "client_id": self.client_id,
        }
        if self.parent_id is not None:
            frame["parent_id"] = self.parent_id
        ack = await self.client.transport.request(frame)
        self.stream_id = str(ack["stream_id"])
        self._coalescer = Coalescer(
            self._flush, interval=self._flush_interval, max_bytes=self._flush_bytes
        )
        return self.stream_id

    async def write(self, text: str) -> None:
        """Append ``text``: watchers see it within ``flush_interval`` seconds."""
        if self._stopped is not None:
            raise self._stopped
        if self._coalescer is None or self._done:
            raise RuntimeError("the stream is not open (use it as an async context manager)")
        if text:
            self.text += text
            self._coalescer.add(text)

    async def flush(self) -> None:
        """Wait until the server has taken everything written so far."""
        if self._coalescer is not None and not self._done:
            await self._coalescer.close()
            self._coalescer = Coalescer(
                self._flush, interval=self._flush_interval, max_bytes=self._flush_bytes
            )
        await asyncio.gather(*self._acks, return_exceptions=True)
        self._acks = [ack for ack in self._acks if not ack.done()]
        if self._stopped is not None:
            raise self._stopped

    async def _flush(self, text: str) -> None:
        if self.interrupted or self._stopped is not None:
            return
        future = self.client.transport.submit(
            {
                "type": "stream_delta",
                "session": self.session_id,
                "stream_id": self.stream_id,
                "text": text,
            }
        )
        future.add_done_callback(self._delta_done)
        self._acks.append(future)

    def _delta_done(self, future: asyncio.Future[dict[str, Any]]) -> None:
        exc = None if future.cancelled() else future.exception()
        if exc is None:
            return
        if _stopped_by_someone(exc):
            assert isinstance(exc, ServerError)
            self._stopped = StreamStopped(exc.code, exc.message, details=exc.details)
        else:  # the connection dropped; the server stored the text so far as interrupted
            self.interrupted = True

    async def finish(self, *, cancelled: bool = False) -> SendResult | None:
        """Store the streamed text as a message (``cancelled``: with that finish reason).
        None when nothing was written (nothing is stored)."""
        if self.stream_id is None or self._coalescer is None:
            raise RuntimeError("the stream was never started")
        self._done = True
        await self._coalescer.close()
        await asyncio.gather(*self._acks, return_exceptions=True)
        self._acks.clear()
        if self._stopped is not None:
            raise self._stopped
        if not self.interrupted:
            frame: dict[str, Any] = {
                "type": "stream_end",
                "session": self.session_id,
                "stream_id": self.stream_id,
            }
            if cancelled:
                frame["cancel"] = True
            if self.metadata is not None:
                frame["metadata"] = self.metadata
            try:
                ack = await self.client.transport.request(frame)
            except (ConnectionLost, NotFound):
                self.interrupted = True
            except Conflict as exc:
                if _stopped_by_someone(exc):
                    raise StreamStopped(exc.code, exc.message, details=exc.details) from None
                self.interrupted = True
            else:
                if ack.get("message_id") is not None:
                    self.result = SendResult(
                        self.session_id,
                        str(ack["message_id"]),
                        int(ack["seq"]),
                        self.client_id,
                        bool(ack.get("duplicate")),
                    )
                return self.result
        return await self._recover(cancelled)

    async def _recover(self, cancelled: bool) -> SendResult | None:
        """After a dropped connection: store the whole text once (see the class docstring)."""
        if not self.text.strip():
            return None
        log.info("stream interrupted by a reconnect; storing the whole text", stream=self.stream_id)
        metadata = {
            **(self.metadata or {}),
            "stream_id": self.stream_id,
            "finish_reason": "cancelled" if cancelled else "stop",
        }
        sent = await self.client.send(
            self.session_id,
            self.text,
            parent_id=self.parent_id,
            metadata=metadata,
            client_id=self.client_id,
        )
        if sent.duplicate:  # the server stored the text so far: complete it
            await self.client.edit(
                self.session_id, sent.message_id, text=self.text, metadata=metadata
            )
        self.result = sent
        return sent


def _stopped_by_someone(exc: BaseException) -> bool:
    if not isinstance(exc, Conflict) or not isinstance(exc.details, dict):
        return False
    return exc.details.get("finish_reason") == "cancelled"

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

from parley.client.models import Message, SendResult

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
    frames). Every subscriber sees ``stream.started``, ``stream.delta`` events and then the
    stored ``message.created`` and ``stream.finished``, exactly as for an assistant's answer.

    Use it as an async context manager: the message is stored when the block ends; if the
    block raises, what was written is stored with finish reason ``cancelled``.
    """

    def __init__(
        self,
        client: ParleyClient,
        session_id: str,
        *,
        parent_id: str | None = None,
        client_id: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self.client = client
        self.session_id = session_id
        self.parent_id = parent_id
        self.client_id = client_id
        self.metadata = metadata
        self.stream_id: str | None = None
        self.text = ""
        self.result: SendResult | None = None
        self._acks: list[asyncio.Future[dict[str, Any]]] = []

    async def __aenter__(self) -> StreamReply:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.result is None and self.stream_id is not None:
            await self.finish(cancelled=exc is not None)

    async def start(self) -> str:
        """Open the stream; returns its id."""
        frame: dict[str, Any] = {"type": "stream_start", "session": self.session_id}
        if self.parent_id is not None:
            frame["parent_id"] = self.parent_id
        if self.client_id is not None:
            frame["client_id"] = self.client_id
        ack = await self.client.transport.request(frame)
        self.stream_id = str(ack["stream_id"])
        return self.stream_id

    async def write(self, text: str) -> None:
        """Append ``text``. It goes out at once; a refusal (the stream was stopped by someone,
        or the connection dropped) is raised by a later ``write`` or by ``finish``."""
        if not text:
            return
        if self.stream_id is None:
            raise RuntimeError("start the stream first (use it as an async context manager)")
        self._raise_failed()
        self._acks.append(
            self.client.transport.submit(
                {
                    "type": "stream_delta",
                    "session": self.session_id,
                    "stream_id": self.stream_id,
                    "text": text,
                }
            )
        )
        self.text += text

    def _raise_failed(self) -> None:
        while self._acks and self._acks[0].done():
            ack = self._acks.pop(0)
            ack.result()  # raises the typed error of a refused delta

    async def finish(self, *, cancelled: bool = False) -> SendResult:
        """Store the streamed text as a message (``cancelled``: with that finish reason)."""
        if self.stream_id is None:
            raise RuntimeError("the stream was never started")
        frame: dict[str, Any] = {
            "type": "stream_end",
            "session": self.session_id,
            "stream_id": self.stream_id,
        }
        if cancelled:
            frame["cancel"] = True
        if self.metadata is not None:
            frame["metadata"] = self.metadata
        end = self.client.transport.submit(frame)
        results = await asyncio.gather(*self._acks, return_exceptions=True)
        self._acks.clear()
        ack = await end
        for failure in results:
            if isinstance(failure, BaseException) and not cancelled:
                log.warning("a stream delta was refused", error=str(failure))
        self.result = SendResult(
            self.session_id,
            str(ack["message_id"]),
            int(ack["seq"]),
            self.client_id,
            bool(ack.get("duplicate")),
        )
        return self.result

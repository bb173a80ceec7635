"""Messages that clients (bots) stream into a session, token by token.

A bot writes a message in pieces with ``stream_start``, ``stream_delta`` and ``stream_end``
frames. Everything else is the relay's, so watchers cannot tell a bot's stream from an
assistant's answer: the same ``stream.started`` / ``stream.delta`` / ``stream.finished``
events with byte offsets, the same store of the text so far (a client that subscribes or
reconnects mid-stream gets it in its ``stream.snapshot``), the same lease renewed by this
process, and the same ``stop`` frame for anyone who may write.

A stream belongs to the connection that started it. It ends with ``stream_end`` (stored as a
message by the bot, finish reason ``stop``, or ``cancelled`` when the bot cancels), or when:

* someone sends ``stop``: the text so far is stored, ``cancelled``; the bot's next delta or
  end is refused with ``conflict``;
* the bot's connection closes, or this process shuts down: the text so far is stored,
  ``interrupted`` (with the bot's ``client_id``, so the bot can resend the whole text after a
  reconnect: the retry is a duplicate of the partial message, which it can then edit);
* this process dies: the relay's reaper on another process stores it, ``interrupted``.

One user streams at most one message per session at a time (the relay's slot per session
and author); the tenant's generation limit counts bot streams too.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy.orm import Session

from parley.errors import Conflict, ErrorCode, NotFound, ParleyError
from parley.governance.auth import Principal
from parley.ids import new_id
from parley.relay.state import APPEND_LOST, APPEND_MISSING, BeginStatus, BusyPolicy, StreamInfo
from parley.sessions.queries import message_row

if TYPE_CHECKING:
    from parley.relay.service import Relay

log = structlog.get_logger("parley.relay")

CLIENT_PROVIDER = "client"  # the ``provider`` of a stream written by a client, not an LLM
_ENDED_MEMORY = 4096  # how many ended streams still answer "it ended" instead of "not found"


class ClientStream:
    """One message a connection is streaming (a running stream of the relay, see the
    ``RunningStream`` protocol in ``relay/service.py``)."""

    def __init__(
        self,
        owner: ClientStreams,
        info: StreamInfo,
        author: Principal,
        conn_id: str,
        client_id: str | None,
    ) -> None:
        self.owner = owner
        self.info = info
        self.author = author
        self.conn_id = conn_id
        self.client_id = client_id
        self.flushed: list[str] = []  # what went to the store and to subscribers
        self.end = 0  # bytes
        self.chars = 0
        self.ended: str | None = None  # the finish reason, once it ended
        self.lock = asyncio.Lock()

    def stop(self, reason: str) -> None:
        """A ``stop`` (``cancelled:<user>``) or a shutdown: store the text so far."""
        kind, _, who = reason.partition(":")
        finish = "interrupted" if kind == "shutdown" else "cancelled"
        self.owner.conclude_soon(self, finish, stopped_by=who or None)

    def abandon(self) -> None:
        """Another process claimed the stream (this one was presumed dead): store nothing."""
        self.owner.forget(self, "lost")


class ClientStreams:
    """The client streams of this process."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.streams: dict[tuple[str, str], ClientStream] = {}
        self.ended: OrderedDict[tuple[str, str], str] = OrderedDict()

    async def start(
        self,
        p: Principal,
        conn_id: str,
        session_id: str,
        *,
        parent_id: str | None,
        client_id: str | None,
    ) -> dict[str, Any]:
        """Open a stream; every subscriber gets ``stream.started``. The ack names the stream."""
        relay = self.relay
        await relay.check_writer(p, session_id)
        if parent_id is not None:

            def check_parent(s: Session) -> None:
                message_row(s, session_id, parent_id, p.tenant_id)

            await relay.service.db.read(check_parent)
        info = StreamInfo(
            stream_id=new_id(),
            tenant_id=p.tenant_id,
            session_id=session_id,
            assistant_id=p.user_id,  # the slot: one stream per author and session
            assistant_name=p.name,
            assistant_user=p.user_id,
            provider=CLIENT_PROVIDER,
            model="",
            prompt_id=parent_id,
            asked_by=p.user_id,
            created_at=time.time(),
        )
        begun = await relay.store.begin(
            info,
            owner=relay.node,
            policy=BusyPolicy.REJECT,
            queue_limit=0,
            tenant_limit=relay.settings.relay_tenant_concurrency,
        )
        if begun.status is BeginStatus.BUSY:
            raise Conflict(
                "you are already streaming a message in this session; end it first",
                code=ErrorCode.ASSISTANT_BUSY,
                details={"stream_id": begun.holder},
            )
        if begun.status is not BeginStatus.STARTED:
            raise ParleyError(
                "this tenant runs as many streams as it may at once; try again shortly",
                code=ErrorCode.GENERATION_LIMIT,
                details={"limit": relay.settings.relay_tenant_concurrency},
            )
        stream = ClientStream(self, info, p, conn_id, client_id)
        self.streams[(p.tenant_id, info.stream_id)] = stream
        relay.running[(p.tenant_id, info.stream_id)] = stream
        await relay.emit(info, "stream.started", info.public())
        return {"stream_id": info.stream_id}

    async def append(
        self, p: Principal, conn_id: str, session_id: str, stream_id: str, text: str
    ) -> dict[str, Any]:
        """Add text; every subscriber gets a ``stream.delta`` with its byte offsets."""
        stream = self._owned(p, conn_id, session_id, stream_id)
        relay, info = self.relay, stream.info
        async with stream.lock:
            self._check_open(stream)
            limit = relay.service.max_text_chars
            if stream.chars + len(text) > limit:
                raise ParleyError(
                    f"the streamed message would pass {limit} characters",
                    code=ErrorCode.TEXT_TOO_LONG,
                )
            start = stream.end
            stream.flushed.append(text)
            stream.chars += len(text)
            stream.end = start + len(text.encode())
            try:
                got = await relay.store.append(info.tenant_id, stream_id, text)
                if got == APPEND_LOST:
                    stream.abandon()
                    raise Conflict("the stream was taken over by another process")
                if got == APPEND_MISSING or got != stream.end:
                    await relay.store.restore(info, relay.node, "".join(stream.flushed))
            except ParleyError:
                raise
            except Exception as exc:  # the store is best effort; subscribers still get deltas
                log.warning("stream store append failed", stream=stream_id, error=str(exc))
            await relay.emit(
                info,
                "stream.delta",
                {"stream_id": stream_id, "offset": start, "end": stream.end, "text": text},
            )
        return {"stream_id": stream_id, "end": stream.end}

    async def finish(
        self,
        p: Principal,
        conn_id: str,
        session_id: str,
        stream_id: str,
        *,
        cancel: bool,
        metadata: dict[str, Any] | None,
    ) -> dict[str, Any]:
        """Store the streamed text as the bot's message (nothing when no text was written)."""
        stream = self._owned(p, conn_id, session_id, stream_id)
        message, seq, duplicate = await self.conclude(
            stream, "cancelled" if cancel else "stop", metadata=metadata
        )
        return {
            "stream_id": stream_id,
            "message_id": message["id"] if message else None,
            "seq": seq,
            "duplicate": duplicate,
        }

    async def disconnected(self, conn_id: str) -> None:
        """The connection closed: store its open streams as ``interrupted``."""
        for stream in [s for s in self.streams.values() if s.conn_id == conn_id]:
            try:
                await self.conclude(stream, "interrupted")
            except Exception as exc:  # the connection is gone; nobody to tell but the log
                log.warning(
                    "interrupted stream not stored", stream=stream.info.stream_id, error=str(exc)
                )

    def conclude_soon(self, stream: ClientStream, finish: str, *, stopped_by: str | None) -> None:
        """Conclude in the background, tracked by the relay so a shutdown waits for it."""

        async def run() -> None:
            try:
                await self.conclude(stream, finish, stopped_by=stopped_by)
            except Conflict:
                pass  # the bot ended it meanwhile
            except Exception:
                log.exception("stopped stream not stored", stream=stream.info.stream_id)

        key = (stream.info.tenant_id, stream.info.stream_id)
        self.relay.track(key, asyncio.get_running_loop().create_task(run()))

    async def conclude(
        self,
        stream: ClientStream,
        finish: str,
        *,
        metadata: dict[str, Any] | None = None,
        stopped_by: str | None = None,
    ) -> tuple[dict[str, Any] | None, int | None, bool]:
        """End the stream: store the text so far, free the slot, tell everyone."""
        relay, info = self.relay, stream.info
        async with stream.lock:
            self._check_open(stream)
            self.forget(stream, finish)
            text = "".join(stream.flushed)
            message: dict[str, Any] | None = None
            seq: int | None = None
            duplicate = False
            error: dict[str, Any] | None = None
            try:
                if text.strip():
                    meta = {
                        **(metadata or {}),
                        "stream_id": info.stream_id,
                        "finish_reason": finish,
                    }
                    if stopped_by is not None:
                        meta["stopped_by"] = stopped_by
                    result = await relay.service.post_message(
                        stream.author,
                        info.session_id,
                        text=text,
                        parent_id=info.prompt_id,
                        metadata=meta,
                        client_id=stream.client_id or f"stream:{info.stream_id}",
                    )
                    message, seq, duplicate = result.message, result.seq, result.duplicate
            except ParleyError as exc:
                error = {"kind": str(exc.code), "message": exc.message, "status": None}
                raise
            finally:
                try:
                    await relay.store.finish(info, relay.node)
                except Exception as exc:  # the lease lapses and a reaper finishes it
                    log.warning("stream store finish failed", stream=info.stream_id, error=str(exc))
                await relay.emit(
                    info,
                    "stream.finished",
                    {
                        "stream_id": info.stream_id,
                        "finish_reason": finish,
                        "message_id": message["id"] if message else None,
                        "message_seq": seq,
                        "length": stream.end,
                        "error": error,
                        **({"stopped_by": stopped_by} if stopped_by else {}),
                    },
                )
        return message, seq, duplicate

    def forget(self, stream: ClientStream, reason: str) -> None:
        key = (stream.info.tenant_id, stream.info.stream_id)
        stream.ended = reason
        self.streams.pop(key, None)
        self.relay.running.pop(key, None)
        self.ended[key] = reason
        while len(self.ended) > _ENDED_MEMORY:
            self.ended.popitem(last=False)

    def _owned(self, p: Principal, conn_id: str, session_id: str, stream_id: str) -> ClientStream:
        key = (p.tenant_id, stream_id)
        stream = self.streams.get(key)
        if stream is None or stream.conn_id != conn_id or stream.info.session_id != session_id:
            ended = self.ended.get(key)
            if ended is not None and stream is None:
                raise Conflict(
                    f"the stream already ended ({ended})", details={"finish_reason": ended}
                )
            raise NotFound(f"no open stream {stream_id[:80]!r} of this connection in this session")
        return stream

    @staticmethod
    def _check_open(stream: ClientStream) -> None:
        if stream.ended is not None:
            raise Conflict(
                f"the stream already ended ({stream.ended})",
                details={"finish_reason": stream.ended},
            )

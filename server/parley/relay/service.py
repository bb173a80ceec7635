"""The relay: runs assistants' generations and streams them into sessions for everyone.

One generation (a *stream*) goes through these steps (docs/relay.md has the whole story):

1. ``begin`` in the stream store: take the (session, assistant) slot, or queue, interrupt or
   refuse by the assistant's busy policy; count against the tenant's concurrency limit.
2. ``stream.started`` (ephemeral) tells every subscriber; the context is read from storage.
3. The provider is called. Failures before the first token are retried with backoff.
4. Text is appended to the store (the *text so far*, for late joiners) and published as
   ``stream.delta`` ephemeral events, coalesced, each with its byte ``offset`` and ``end``.
5. The answer is stored as a message by the assistant, as a reply to the prompt, with usage,
   cost, latency, tool calls and the finish reason in its metadata; ``client_id`` is
   ``stream:<id>``, so storing it twice (owner and reaper racing) stores it once.
6. The store forgets the stream and hands the slot to the next queued prompt, if any;
   ``stream.finished`` tells everyone.

The owner renews a lease on each running stream. A process that dies leaves its leases to
lapse; the reaper of any process then claims the stream and stores its text so far as
``interrupted``. Stops travel on a broker channel (fast) and in the store (certain).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import secrets
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgpack
import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from parley import metrics
from parley.attachments.service import AttachmentService
from parley.broker.base import Broker
from parley.config import Settings
from parley.errors import Conflict, ErrorCode, NotFound, ParleyError
from parley.governance.auth import Principal, UserKind
from parley.governance.policy import Action
from parley.ids import iso, new_id, utcnow
from parley.relay.assistants import USER_PREFIX, AssistantSpec, AssistantStore, Trigger
from parley.relay.client_streams import CLIENT_PROVIDER, ClientStreams
from parley.relay.context import (
    accepts_images,
    build_request,
    estimate_tokens,
    read_branch,
    wanted_images,
)
from parley.relay.prices import PriceTable
from parley.relay.providers.base import (
    Finish,
    ImageInput,
    Provider,
    ProviderRequest,
    StreamError,
    TextDelta,
    ToolCallDelta,
    Usage,
    scrub,
)
from parley.relay.registry import ProviderRegistry
from parley.relay.state import (
    APPEND_LOST,
    APPEND_MISSING,
    BeginStatus,
    StreamInfo,
    StreamStore,
)
from parley.relay.text import Coalescer, SurrogateJoiner
from parley.sessions.queries import message_row, session_access
from parley.sessions.rules import SessionStatus
from parley.sessions.service import SessionService
from parley.storage import models as m

log = structlog.get_logger("parley.relay")

CONTROL_CHANNEL = "parley:relay:control"
MAX_TOOL_ARGS_IN_METADATA = 2000


class Ephemeral(Protocol):
    """Where stream events go: ``Hub.publish_ephemeral``."""

    async def publish_ephemeral(
        self, tenant_id: str, session_id: str, name: str, data: dict[str, Any]
    ) -> None: ...


class RunningStream(Protocol):
    """What the lease renewal and stops need of a stream this process runs: an assistant's
    :class:`Generation`, or a message a client streams (``relay/client_streams.py``)."""

    info: StreamInfo
    flushed: list[str]

    def stop(self, reason: str) -> None: ...

    def abandon(self) -> None: ...


class GenerationLimit(ParleyError):
    code = ErrorCode.GENERATION_LIMIT
    status = 429


@dataclass(slots=True)
class ToolCall:
    id: str | None = None
    name: str | None = None
    arguments: list[str] = field(default_factory=list)

    def view(self, limit: int | None = None) -> dict[str, Any]:
        args = "".join(self.arguments)
        if limit is not None and len(args) > limit:
            args = args[:limit] + "\u2026"
        return {"id": self.id, "name": self.name, "arguments": args}


@dataclass(slots=True)
class Outcome:
    """What a generation ended with, ready to be stored."""

    text: str
    finish_reason: str
    tool_calls: list[ToolCall] = field(default_factory=list)
    input_tokens: int | None = None
    output_tokens: int | None = None
    estimated: bool = False
    first_token_ms: float | None = None
    total_ms: float | None = None
    attempts: int = 0
    error: dict[str, Any] | None = None
    stopped_by: str | None = None


class Generation:
    """One running stream on this process."""

    def __init__(self, relay: Relay, info: StreamInfo, spec: AssistantSpec | None) -> None:
        self.relay = relay
        self.info = info
        self.spec = spec
        self.stop_reason: str | None = None  # "cancelled[:user]" | "interrupted" | "shutdown"
        self.lost = False  # another process claimed the stream: store nothing
        self.discard = False  # the assistant was removed before this (queued) stream ran
        self.started = time.monotonic()
        self.first_token: float | None = None
        self.flushed: list[str] = []  # what went to the store and to subscribers
        self.end = 0  # bytes flushed
        self.chars = 0
        self.tools: dict[int, ToolCall] = {}
        self.usage = Usage()
        self.finish: str | None = None
        self.error: StreamError | None = None
        self.attempts = 0
        self.truncated = False
        self._reader: asyncio.Task[None] | None = None
        self._joiner = SurrogateJoiner()
        self._coalescer: Coalescer | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.info.tenant_id, self.info.stream_id)

    @property
    def has_output(self) -> bool:
        return bool(self.chars or self.tools)

    def stop(self, reason: str) -> None:
        """End the generation soon; what was received is stored (finish reason by ``reason``)."""
        if self.stop_reason is None:
            self.stop_reason = reason
        if self._reader is not None:
            self._reader.cancel()

    def abandon(self) -> None:
        """Another process took the stream over: end without storing anything."""
        self.lost = True
        self.stop("lost")

    # -- running ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Generate, then store the answer (unless the stream was taken over elsewhere)."""
        relay, info = self.relay, self.info
        self._coalescer = Coalescer(
            self._flush,
            interval=relay.settings.relay_coalesce_ms / 1000,
            max_bytes=relay.settings.relay_coalesce_bytes,
        )
        request: ProviderRequest | None = None
        try:
            if self.spec is None:
                self.spec = await relay.assistants.by_id(info.tenant_id, info.assistant_id)
            await relay.emit(info, "stream.started", info.public())
            if self.spec is None:
                self.discard = True  # removed meanwhile: storing would make it join again
            else:
                request = await relay.context(self.spec, info.prompt_id)
                provider = await relay.registry.provider(self.spec.provider, info.tenant_id)
                if self.stop_reason is None:
                    reader = asyncio.get_running_loop().create_task(
                        self._generate(provider, request)
                    )
                    self._reader = reader
                    await asyncio.wait([reader])
                    failure = None if reader.cancelled() else reader.exception()
                    if failure is not None:
                        raise failure
        except ParleyError as exc:
            self.error = StreamError(exc.message, "bad_request", False)
        except Exception as exc:
            log.exception("generation failed", stream=info.stream_id)
            self.error = StreamError(f"internal error: {type(exc).__name__}", "provider", False)
        finally:
            if self.lost:
                self._coalescer.abort()
            else:
                tail = self._joiner.flush()
                if tail:
                    self._take_text(tail)
                await self._coalescer.close()
        if self.lost:
            log.warning("stream taken over by another process", stream=info.stream_id)
            return
        await relay.conclude(info, self.outcome(request), store=not self.discard)

    async def _generate(self, provider: Provider, request: ProviderRequest) -> None:
        settings = self.relay.settings
        deadline = self.started + settings.relay_max_duration
        while True:
            self.attempts += 1
            err = await self._attempt(provider, request, deadline)
            if err is None:
                return
            if self.has_output or not err.retryable or self.attempts >= settings.relay_max_attempts:
                self.error = err
                return
            delay = min(
                settings.relay_retry_max_delay,
                settings.relay_retry_base_delay * 2 ** (self.attempts - 1),
            ) * random.uniform(0.5, 1.0)
            if err.retry_after is not None:
                delay = max(delay, min(err.retry_after, settings.relay_retry_max_delay))
            metrics.RELAY_RETRIES.labels(kind=err.kind).inc()
            log.info(
                "provider call failed; retrying",
                stream=self.info.stream_id,
                kind=err.kind,
                status=err.status,
                attempt=self.attempts,
                delay=round(delay, 3),
            )
            await self.relay.emit(
                self.info,
                "stream.retry",
                {
                    "stream_id": self.info.stream_id,
                    "attempt": self.attempts,
                    "delay": round(delay, 3),
                    "reason": err.kind,
                    "status": err.status,
                },
            )
            await asyncio.sleep(delay)

    async def _attempt(
        self, provider: Provider, request: ProviderRequest, deadline: float
    ) -> StreamError | None:
        """One provider call. None when it finished (``self.finish`` set)."""
        settings = self.relay.settings
        events = provider.stream(request)
        seen = False
        try:
            while True:
                left = deadline - time.monotonic()
                wait = settings.relay_idle_timeout if seen else settings.relay_first_token_timeout
                try:
                    async with asyncio.timeout(max(0.0, min(wait, left))):
                        event = await anext(events)
                except StopAsyncIteration:
                    return StreamError("the provider's stream ended early", "protocol", True)
                except TimeoutError:
                    if time.monotonic() >= deadline:
                        self.finish = "length"  # PARLEY_RELAY_MAX_DURATION reached
                        return None
                    return StreamError(f"the provider sent nothing for {wait:g} s", "timeout", True)
                seen = True
                if isinstance(event, TextDelta):
                    if self._take_text(self._joiner.feed(event.text)):
                        return None
                elif isinstance(event, ToolCallDelta):
                    call = self.tools.setdefault(event.index, ToolCall())
                    call.id = call.id or event.id
                    call.name = call.name or event.name
                    if event.arguments:
                        call.arguments.append(event.arguments)
                elif isinstance(event, Usage):
                    self.usage = Usage(
                        event.input_tokens
                        if event.input_tokens is not None
                        else self.usage.input_tokens,
                        event.output_tokens
                        if event.output_tokens is not None
                        else self.usage.output_tokens,
                    )
                elif isinstance(event, Finish):
                    self.finish = event.reason
                    return None
                elif isinstance(event, StreamError):
                    return event
        finally:
            await events.aclose()

    def _take_text(self, text: str) -> bool:
        """Record and forward text; True when the message length limit was reached."""
        if not text:
            return False
        limit = self.relay.service.max_text_chars
        if self.chars + len(text) > limit:
            text = text[: max(0, limit - self.chars)]
            self.truncated = True
            self.finish = "length"
        if text:
            first = self.first_token is None
            if first:
                self.first_token = time.monotonic()
                metrics.RELAY_FIRST_TOKEN.observe(self.first_token - self.started)
            self.chars += len(text)
            assert self._coalescer is not None
            self._coalescer.add(text, now=first)  # the first token goes out at once
        return self.truncated

    async def _flush(self, text: str) -> None:
        """Append to the store, then publish the delta (never raises)."""
        relay, info = self.relay, self.info
        start = self.end
        size = len(text.encode())
        self.flushed.append(text)
        self.end = start + size
        try:
            got = await relay.store.append(info.tenant_id, info.stream_id, text)
            if got == APPEND_LOST:
                self.abandon()
                return
            if got == APPEND_MISSING or got != self.end:
                # The store lost or garbled the text (a Redis restart): put the whole of it back.
                await relay.store.restore(info, relay.node, "".join(self.flushed))
        except Exception as exc:  # the store is best effort; subscribers still get deltas
            log.warning("stream store append failed", stream=info.stream_id, error=str(exc))
        metrics.RELAY_DELTAS.inc()
        await relay.emit(
            info,
            "stream.delta",
            {"stream_id": info.stream_id, "offset": start, "end": self.end, "text": text},
        )

    def outcome(self, request: ProviderRequest | None) -> Outcome:
        """What to store: the finish reason by how the generation ended, usage (estimated
        when the provider reported none), latency, tool calls."""
        now = time.monotonic()
        text = "".join(self.flushed)
        reason = self.stop_reason
        stopped_by: str | None = None
        if reason is not None and reason != "lost":
            kind, _, who = reason.partition(":")
            if kind == "shutdown":
                finish = "interrupted"
            else:
                finish = "cancelled"
                stopped_by = who or ("interrupt" if kind == "interrupted" else None)
        elif self.error is not None:
            finish = "interrupted" if self.has_output else "error"
        else:
            finish = self.finish or "stop"
        error = None
        if self.error is not None:
            error = {
                "kind": self.error.kind,
                "message": self.error.message,
                "status": self.error.status,
            }
        elif reason and reason.startswith("shutdown"):
            error = {"kind": "shutdown", "message": "the server stopped", "status": None}
        inp, out = self.usage.input_tokens, self.usage.output_tokens
        estimated = False
        if inp is None and request is not None:
            inp = sum(estimate_tokens(m.content) + 4 for m in request.messages)
            inp += estimate_tokens(request.system)
            estimated = True
        if out is None and (text or self.tools):
            out = estimate_tokens(text) + sum(
                estimate_tokens("".join(c.arguments)) for c in self.tools.values()
            )
            estimated = True
        return Outcome(
            text=text,
            finish_reason=finish,
            tool_calls=[self.tools[i] for i in sorted(self.tools)],
            input_tokens=inp,
            output_tokens=out,
            estimated=estimated,
            first_token_ms=(
                round((self.first_token - self.started) * 1000, 1) if self.first_token else None
            ),
            total_ms=round((now - self.started) * 1000, 1),
            attempts=self.attempts,
            error=error,
            stopped_by=stopped_by,
        )


class Relay:
    """Assistants' generations for one process (see the module docstring)."""

    def __init__(
        self,
        *,
        settings: Settings,
        service: SessionService,
        events: Ephemeral,
        broker: Broker,
        store: StreamStore,
        registry: ProviderRegistry | None = None,
        prices: PriceTable | None = None,
    ) -> None:
        self.settings = settings
        self.service = service
        self.events = events
        self.broker = broker
        self.store = store
        self.registry = registry or ProviderRegistry(settings)
        self.prices = prices or PriceTable(settings.relay_price_file)
        self.assistants = AssistantStore(service)
        # Set by the app: reads image attachments for providers that accept images.
        self.attachments: AttachmentService | None = None
        self.node = f"{os.getpid()}-{secrets.token_hex(4)}"
        self.running: dict[tuple[str, str], RunningStream] = {}
        self._runs: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._loops: list[asyncio.Task[None]] = []
        self._kinds: dict[tuple[str, str], str] = {}
        self._closing = False
        self.client_streams = ClientStreams(self)  # messages bots stream (stream_* frames)

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect the store, listen for stops, start the lease renewal and the reaper."""
        await self.registry.warm()
        await self.store.start()
        await self.broker.subscribe(CONTROL_CHANNEL, self._on_control)
        loop = asyncio.get_running_loop()
        self._loops = [
            loop.create_task(self._renew_loop(), name="parley-relay-leases"),
            loop.create_task(self._reap_loop(), name="parley-relay-reaper"),
        ]

    async def stop(self, grace: float = 10.0) -> None:
        """Stop every local generation (stored as interrupted), then disconnect."""
        self._closing = True
        for task in self._loops:
            task.cancel()
        for gen in list(self.running.values()):
            gen.stop("shutdown")
        runs = list(self._runs.values())
        if runs:
            await asyncio.wait(runs, timeout=grace)
        for task in list(self._background):
            task.cancel()
        try:
            await self.broker.unsubscribe(CONTROL_CHANNEL)
        except Exception as exc:  # the broker may be gone already; nothing to undo
            log.debug("control channel unsubscribe failed", error=str(exc))
        await self.registry.aclose()
        await self.store.stop()

    def track(self, key: tuple[str, str], task: asyncio.Task[None]) -> None:
        """Count ``task`` (a client stream being stored) among the runs a shutdown awaits."""
        self._runs[key] = task
        task.add_done_callback(lambda _: self._runs.pop(key, None))

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- asking -----------------------------------------------------------------------------

    async def ask(
        self,
        p: Principal,
        session_id: str,
        assistant: str,
        *,
        text: str | None = None,
        message_id: str | None = None,
        parent_id: str | None = None,
        client_id: str | None = None,
    ) -> dict[str, Any]:
        """Ask an assistant: post ``text`` as the caller's prompt, or answer ``message_id``
        (or, with neither, the session's latest message). Returns at once with the stream id
        and whether it started or was queued; the answer streams to subscribers."""
        spec = await self.assistants.spec(p, session_id, assistant)
        seq: int | None = None
        if text is not None:
            if message_id is not None:
                raise ParleyError(
                    "give either text or message_id, not both", code=ErrorCode.INVALID_REQUEST
                )
            result = await self.service.post_message(
                p,
                session_id,
                text=text,
                parent_id=parent_id,
                client_id=client_id,
                metadata={"ask": spec.name},
            )
            if result.duplicate:
                return {
                    "stream_id": None,
                    "status": "duplicate",
                    "prompt_id": result.message["id"],
                    "seq": result.seq,
                    "duplicate": True,
                }
            message_id, seq = result.message["id"], result.seq
        else:
            await self.check_writer(p, session_id)
            if message_id is not None:
                await self._check_prompt(p, session_id, message_id)
        answer = await self.begin(spec, message_id, asked_by=p.user_id)
        if seq is not None:
            answer["seq"] = seq
        return answer

    async def begin(
        self, spec: AssistantSpec, prompt_id: str | None, *, asked_by: str
    ) -> dict[str, Any]:
        """Start (or queue) a generation of ``spec`` for ``prompt_id``."""
        info = StreamInfo(
            stream_id=new_id(),
            tenant_id=spec.tenant_id,
            session_id=spec.session_id,
            assistant_id=spec.id,
            assistant_name=spec.name,
            assistant_user=spec.user_id,
            provider=spec.provider,
            model=spec.model,
            prompt_id=prompt_id,
            asked_by=asked_by,
            created_at=time.time(),
        )
        result = await self.store.begin(
            info,
            owner=self.node,
            policy=spec.busy_policy,
            queue_limit=self.settings.relay_queue_limit,
            tenant_limit=self.settings.relay_tenant_concurrency,
        )
        answer: dict[str, Any] = {
            "stream_id": info.stream_id,
            "status": str(result.status),
            "prompt_id": prompt_id,
        }
        if result.status is BeginStatus.STARTED:
            self._launch(info, spec)
        elif result.status is BeginStatus.QUEUED:
            answer["position"] = result.position
            await self.emit(info, "stream.queued", {**info.public(), "position": result.position})
            for dropped in result.dropped:
                await self._finished_without_message(dropped, "cancelled")
            if result.holder is not None:  # interrupt: the holder stops, then this runs
                await self._send_stop(info.tenant_id, result.holder, "interrupted")
        elif result.status is BeginStatus.BUSY:
            raise Conflict(
                f"{spec.name} is answering and its busy policy is {spec.busy_policy}"
                + (" (queue full)" if str(spec.busy_policy) == "queue" else ""),
                code=ErrorCode.ASSISTANT_BUSY,
                details={"stream_id": result.holder},
            )
        else:
            raise GenerationLimit(
                "this tenant runs as many generations as it may at once; try again shortly",
                details={"limit": self.settings.relay_tenant_concurrency},
            )
        return answer

    def _launch(self, info: StreamInfo, spec: AssistantSpec | None) -> None:
        if self._closing:
            return  # the reaper of another process will pick it up
        gen = Generation(self, info, spec)
        self.running[gen.key] = gen
        metrics.RELAY_ACTIVE.set(len(self.running))
        task = asyncio.get_running_loop().create_task(self._run(gen))
        self._runs[gen.key] = task

    async def _run(self, gen: Generation) -> None:
        try:
            await gen.run()
        except Exception:
            log.exception("stream failed", stream=gen.info.stream_id)
        finally:
            self.running.pop(gen.key, None)
            self._runs.pop(gen.key, None)
            metrics.RELAY_ACTIVE.set(len(self.running))

    async def context(self, spec: AssistantSpec, prompt_id: str | None) -> ProviderRequest:
        """The provider request for a prompt: its branch, trimmed to the model's window."""

        def work(s: Session) -> tuple[list[Any], list[str]]:
            return read_branch(s, spec, prompt_id)

        turns, people = await self.service.db.read(work)
        images: dict[str, ImageInput] = {}
        if self.attachments is not None and accepts_images(spec, self.settings.relay_vision_models):
            for sha, kind in wanted_images(turns):
                fitted = await self.attachments.image_for_model(spec.tenant_id, sha, kind)
                if fitted is not None:
                    images[sha] = ImageInput(*fitted)
        built = build_request(
            spec,
            turns,
            people,
            default_window=self.settings.relay_context_window,
            default_max_output=self.settings.relay_max_output_tokens,
            images=images,
        )
        if built.dropped:
            log.info("context trimmed", assistant=spec.id, dropped=built.dropped)
        return built.request

    # -- stopping ---------------------------------------------------------------------------

    async def stop_stream(self, p: Principal, session_id: str, stream_id: str) -> dict[str, Any]:
        """Stop a running or queued generation; any participant who may write may do it."""
        await self.check_writer(p, session_id)
        state, info = await self.store.request_stop(
            p.tenant_id, session_id, stream_id, f"cancelled:{p.user_id}"
        )
        if state == "running":
            await self._send_stop(p.tenant_id, stream_id, f"cancelled:{p.user_id}")
            return {"stream_id": stream_id, "status": "stopping"}
        if state == "dequeued" and info is not None:
            await self._finished_without_message(info, "cancelled", stopped_by=p.user_id)
            return {"stream_id": stream_id, "status": "cancelled"}
        raise NotFound(f"no running or queued stream {stream_id[:80]!r} in this session")

    async def remove_assistant(self, p: Principal, session_id: str, name: str) -> None:
        """Remove an assistant: its definition goes, its running answer stops and is stored
        (cancelled), queued prompts are dropped, and then it leaves the session."""
        spec = await self.assistants.remove(p, session_id, name)
        await self._stop_assistant(spec, wait=5.0)
        with contextlib.suppress(NotFound):  # it may have been removed as a participant already
            await self.service.remove_participant(spec.principal(), session_id, spec.user_id)

    async def _stop_assistant(self, spec: AssistantSpec, *, wait: float) -> None:
        def mine(streams: list[tuple[StreamInfo, str]]) -> list[StreamInfo]:
            return [info for info, _ in streams if info.assistant_id == spec.id]

        for info in mine(await self.store.active(spec.tenant_id, spec.session_id)):
            reason = f"cancelled:{spec.user_id}"
            await self.store.request_stop(info.tenant_id, info.session_id, info.stream_id, reason)
            await self._send_stop(info.tenant_id, info.stream_id, reason)
        # Its answer must be stored before it leaves, or storing it would make it join again;
        # the owner may be another process, so watch the store (bounded).
        for _ in range(max(1, int(wait / 0.05))):
            if not mine(await self.store.active(spec.tenant_id, spec.session_id)):
                break
            await asyncio.sleep(0.05)

    async def _send_stop(self, tenant_id: str, stream_id: str, reason: str) -> None:
        payload = msgpack.packb(
            {"op": "stop", "t": tenant_id, "s": stream_id, "r": reason}, use_bin_type=True
        )
        try:
            await self.broker.publish(CONTROL_CHANNEL, payload)
        except Exception as exc:  # the store's stop flag reaches the owner on its renewal
            log.warning("stop message not sent", error=str(exc))

    def _on_control(self, channel: str, payload: bytes) -> None:
        try:
            msg = msgpack.unpackb(payload, raw=False)
            if msg.get("op") == "stop":
                gen = self.running.get((msg["t"], msg["s"]))
                if gen is not None:
                    gen.stop(str(msg.get("r") or "cancelled"))
        except Exception as exc:  # a broker handler must never raise
            log.warning("bad relay control message", error=str(exc))

    # -- finishing --------------------------------------------------------------------------

    async def conclude(self, info: StreamInfo, outcome: Outcome, *, store: bool = True) -> None:
        """Store the answer, free (or hand on) the slot, and tell everyone."""
        message: dict[str, Any] | None = None
        seq: int | None = None
        if store and outcome.error is not None:
            await self.emit(
                info,
                "stream.error",
                {"stream_id": info.stream_id, **outcome.error, "partial": bool(outcome.text)},
            )
        try:
            if store:
                message, seq = await self._store_answer(info, outcome)
        except Exception as exc:
            log.error(
                "the answer could not be stored",
                stream=info.stream_id,
                error=scrub(str(exc), self.registry.secrets()),
            )
        nxt: StreamInfo | None = None
        try:
            nxt = await self.store.finish(info, self.node)
        except Exception as exc:  # the lease lapses and a reaper finishes it
            log.warning("stream store finish failed", stream=info.stream_id, error=str(exc))
        metrics.RELAY_GENERATIONS.labels(
            provider=info.provider, finish_reason=outcome.finish_reason
        ).inc()
        if outcome.input_tokens:
            metrics.RELAY_TOKENS.labels(provider=info.provider, direction="input").inc(
                outcome.input_tokens
            )
        if outcome.output_tokens:
            metrics.RELAY_TOKENS.labels(provider=info.provider, direction="output").inc(
                outcome.output_tokens
            )
        await self.emit(
            info,
            "stream.finished",
            {
                "stream_id": info.stream_id,
                "finish_reason": outcome.finish_reason,
                "message_id": message["id"] if message else None,
                "message_seq": seq,
                "length": len(outcome.text.encode()),
                "error": outcome.error,
            },
        )
        if nxt is not None:
            self._launch(nxt, None)

    async def _store_answer(self, info: StreamInfo, outcome: Outcome) -> tuple[dict[str, Any], int]:
        usage = {
            "input_tokens": outcome.input_tokens,
            "output_tokens": outcome.output_tokens,
            "estimated": outcome.estimated,
        }
        metadata: dict[str, Any] = {
            "stream_id": info.stream_id,
            "provider": info.provider,
            "model": info.model,
            "assistant": info.assistant_id,
            "finish_reason": outcome.finish_reason,
            "usage": usage,
            "cost": self.prices.cost(
                info.provider, info.model, outcome.input_tokens, outcome.output_tokens
            ),
            "latency": {"first_token_ms": outcome.first_token_ms, "total_ms": outcome.total_ms},
            "tool_calls": [c.view(MAX_TOOL_ARGS_IN_METADATA) for c in outcome.tool_calls],
            "attempts": outcome.attempts,
        }
        if outcome.error is not None:
            metadata["error"] = outcome.error
        if outcome.stopped_by is not None:
            metadata["stopped_by"] = outcome.stopped_by
        parts: list[dict[str, Any]] | None = [
            {"type": "tool_call", **c.view()} for c in outcome.tool_calls
        ] or None
        if not outcome.text.strip() and not parts:
            # A message needs text or parts; an answer that never started still leaves a
            # record of what happened, so the conversation shows it.
            parts = [{"type": "notice", "finish_reason": outcome.finish_reason}]
        kind = UserKind.ASSISTANT
        if info.provider == CLIENT_PROVIDER:  # a bot's stream, reaped: keep the bot's kind
            kind = UserKind(await self._kind_of(info.tenant_id, info.assistant_user))
        author = Principal(info.tenant_id, info.assistant_user, info.assistant_name, kind)
        delay = 0.2
        for attempt in range(4):
            try:
                result = await self.service.post_message(
                    author,
                    info.session_id,
                    text=outcome.text,
                    parts=parts,
                    parent_id=info.prompt_id,
                    metadata=metadata,
                    client_id=f"stream:{info.stream_id}",
                )
                return result.message, result.seq
            except ParleyError:
                raise  # refused (archived, removed, deleted): retrying will not help
            except Exception:
                if attempt == 3:
                    raise
                await asyncio.sleep(delay)  # storage hiccup: the answer is worth a retry
                delay *= 2
        raise AssertionError("unreachable")

    async def _finished_without_message(
        self, info: StreamInfo, reason: str, *, stopped_by: str | None = None
    ) -> None:
        """A queued stream that never ran ends (stopped, or replaced by an interrupt)."""
        await self.emit(
            info,
            "stream.finished",
            {
                "stream_id": info.stream_id,
                "finish_reason": reason,
                "message_id": None,
                "message_seq": None,
                "length": 0,
                "error": None,
                **({"stopped_by": stopped_by} if stopped_by else {}),
            },
        )

    # -- leases and the reaper --------------------------------------------------------------

    async def _renew_loop(self) -> None:
        while True:
            await asyncio.sleep(self.store.ttl / 3)
            if not self.running:
                continue
            try:
                gens = dict(self.running)
                for r in await self.store.renew(self.node, list(gens)):
                    gen = gens.get((r.tenant_id, r.stream_id))
                    if gen is None:
                        continue
                    if r.lost:
                        gen.abandon()
                    elif r.missing:
                        await self.store.restore(gen.info, self.node, "".join(gen.flushed))
                    elif r.stop:
                        gen.stop(r.stop)
            except Exception as exc:
                log.warning("lease renewal failed", error=str(exc))

    async def _reap_loop(self) -> None:
        while True:
            await asyncio.sleep(self.store.ttl / 2 * random.uniform(0.8, 1.2))
            try:
                await self.reap()
            except Exception as exc:
                log.warning("reaper failed", error=str(exc))

    async def reap(self) -> int:
        """Store as interrupted every stream whose owner stopped renewing it; return how many."""
        count = 0
        for tenant_id, stream_id in await self.store.expired():
            if (tenant_id, stream_id) in self.running:
                continue  # ours: the next renewal extends it
            info = await self.store.claim(tenant_id, stream_id, self.node)
            if info is None:
                continue
            got = await self.store.get(tenant_id, stream_id)
            text = got[1] if got is not None else ""
            log.warning("reaping a stream whose process stopped", stream=stream_id)
            metrics.RELAY_REAPED.inc()
            outcome = Outcome(
                text=text,
                finish_reason="interrupted",
                output_tokens=estimate_tokens(text) if text else None,
                estimated=True,
                total_ms=round((time.time() - info.created_at) * 1000, 1),
                error={
                    "kind": "owner_lost",
                    "message": "the process running this answer stopped",
                    "status": None,
                },
            )
            await self.conclude(info, outcome)
            count += 1
        return count

    # -- triggers ---------------------------------------------------------------------------

    def observe(self, tenant_id: str, session_id: str, frames: Sequence[dict[str, Any]]) -> None:
        """Look at committed events (from the session service's publisher) for messages that
        should make an assistant answer. Runs in the background; never raises."""
        if self._closing:
            return
        for frame in frames:
            if frame.get("event") != "message.created":
                continue
            message = (frame.get("data") or {}).get("message") or {}
            meta = message.get("metadata") or {}
            author = message.get("author") or ""
            if "stream_id" in meta or author.startswith(USER_PREFIX):
                continue  # an assistant's answer never triggers another
            self._spawn(self._triggered(tenant_id, session_id, message))

    async def _triggered(self, tenant_id: str, session_id: str, message: dict[str, Any]) -> None:
        try:
            specs = [
                s
                for s in await self.assistants.of_session(tenant_id, session_id)
                if s.trigger is not Trigger.MANUAL
            ]
            if not specs:
                return
            author = message["author"]
            kind = await self._kind_of(tenant_id, author)
            if kind == "assistant":
                return
            asked = str((message.get("metadata") or {}).get("ask") or "").lower()
            text = message.get("text") or ""
            for spec in specs:
                if spec.name.lower() == asked:
                    continue  # the ask itself starts this one
                wanted = (spec.trigger is Trigger.MESSAGE and kind == "human") or (
                    spec.trigger is Trigger.MENTION and spec.mentioned_in(text)
                )
                if not wanted:
                    continue
                try:
                    await self.begin(spec, message["id"], asked_by=author)
                except ParleyError as exc:
                    await self.events.publish_ephemeral(
                        tenant_id,
                        session_id,
                        "stream.rejected",
                        {
                            "assistant": {"id": spec.id, "name": spec.name},
                            "prompt_id": message["id"],
                            "code": str(exc.code),
                            "message": exc.message,
                        },
                    )
        except Exception:
            log.exception("assistant trigger failed", session=session_id)

    async def _kind_of(self, tenant_id: str, user_id: str) -> str:
        key = (tenant_id, user_id)
        kind = self._kinds.get(key)
        if kind is None:

            def work(s: Session) -> str:
                value = s.scalar(
                    select(m.User.kind).where(m.User.tenant_id == tenant_id, m.User.id == user_id)
                )
                return str(value or "human")

            kind = await self.service.db.read(work)
            if len(self._kinds) > 100_000:
                self._kinds.clear()
            self._kinds[key] = kind
        return kind

    # -- reading ----------------------------------------------------------------------------

    async def snapshot(self, tenant_id: str, session_id: str, seq: int = 0) -> dict[str, Any]:
        """A ``stream.snapshot`` event: every running stream of the session, text so far."""
        streams = [
            {**info.public(), "text": text, "length": len(text.encode())}
            for info, text in await self.store.active(tenant_id, session_id)
        ]
        return {
            "type": "event",
            "session": session_id,
            "seq": seq,
            "event": "stream.snapshot",
            "data": {"streams": streams},
            "ephemeral": True,
            "ts": iso(utcnow()),
        }

    async def active(self, p: Principal, session_id: str) -> list[dict[str, Any]]:
        """The running streams of a session the caller can read (REST)."""
        await self.service.last_seq(p, session_id)  # not found for other tenants
        frame = await self.snapshot(p.tenant_id, session_id)
        streams: list[dict[str, Any]] = frame["data"]["streams"]
        return streams

    # -- helpers ----------------------------------------------------------------------------

    async def emit(self, info: StreamInfo, name: str, data: dict[str, Any]) -> None:
        """Publish an ephemeral stream event to the session (never raises)."""
        try:
            await self.events.publish_ephemeral(info.tenant_id, info.session_id, name, data)
        except Exception as exc:  # at most once, like every ephemeral event
            log.warning("stream event not published", event_name=name, error=str(exc))

    async def check_writer(self, p: Principal, session_id: str) -> None:
        """The caller may write in the session (as ``send`` requires), and it is active."""

        def work(s: Session) -> None:
            row, access = session_access(s, p, session_id)
            if row.status != SessionStatus.ACTIVE.value:
                raise Conflict("the session is archived", code=ErrorCode.SESSION_ARCHIVED)
            if not access.may_self_join:  # open sessions: writing would make them editors
                access.check(Action.POST, session_id, what="ask or stop assistants")

        await self.service.db.read(work)

    async def _check_prompt(self, p: Principal, session_id: str, message_id: str) -> None:
        def work(s: Session) -> None:
            msg = message_row(s, session_id, message_id, p.tenant_id)
            if msg.deleted_at is not None:
                raise Conflict("the prompt message was deleted")

        await self.service.db.read(work)

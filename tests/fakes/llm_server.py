"""A fake LLM provider: a real HTTP server on loopback speaking the exact streaming wire formats
of OpenAI Chat Completions, OpenAI Responses and Anthropic Messages, so the official SDKs can
talk to it unchanged.

Each request takes the next scripted :class:`Reply` (or the default one): text chunks, pauses,
a gate to hold the stream until the test opens it, an HTTP error status first, an error event in
the middle of the stream, UTF-8 characters split across network writes, JSON surrogate escapes.
Every request is recorded (path, headers, body) so tests can check what the relay sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections import deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


@dataclass
class Reply:
    """What the fake provider answers to one request."""

    chunks: list[str] = field(default_factory=lambda: ["Hello", " from", " the", " fake."])
    status: int = 200  # anything else: an error response with ``error`` as its body
    error: str = "rate_limited"  # rate_limited | overloaded | server | auth
    message: str | None = None  # the error message, instead of the usual one
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # pause between chunks (pacing on the server side)
    gate: asyncio.Event | None = None  # hold the stream after ``gate_after`` chunks until set
    gate_after: int = 0
    error_after: int | None = None  # an error event in the stream after this many chunks
    split_utf8: bool = False  # write every event in two pieces, splitting a character
    ascii_json: bool = False  # escape non-ASCII in JSON (surrogate pairs for emoji)
    usage: tuple[int, int] | None = None  # (input, output); default (len(prompt), chunks)
    tool_call: tuple[str, list[str]] | None = None  # (name, argument fragments)
    finish: str | None = None  # the API's own finish/stop reason
    written: int = 0  # chunks written so far
    progress: asyncio.Event = field(default_factory=asyncio.Event)  # set after each chunk

    def text(self) -> str:
        return "".join(self.chunks)


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


_ERRORS = {
    # kind: (openai type/code, anthropic type, message)
    "rate_limited": ("rate_limit_exceeded", "rate_limit_error", "Rate limit reached"),
    "overloaded": ("server_error", "overloaded_error", "Overloaded"),
    "server": ("server_error", "api_error", "Internal server error"),
    "auth": ("invalid_api_key", "authentication_error", "Incorrect API key provided"),
}


def _json(value: Any, ascii_only: bool) -> bytes:
    return json.dumps(value, ensure_ascii=ascii_only, separators=(",", ":")).encode()


def _sse(data: Any, event: str | None = None, *, ascii_only: bool = False) -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    payload = data if isinstance(data, bytes) else _json(data, ascii_only)
    return head + b"data: " + payload + b"\n\n"


def _split(blob: bytes) -> Iterator[bytes]:
    """Two pieces, cut inside the first multi-byte UTF-8 character if there is one."""
    for i, byte in enumerate(blob):
        if byte >= 0xC0:  # the lead byte of a multi-byte sequence
            yield blob[: i + 1]
            yield blob[i + 1 :]
            return
    yield blob


class FakeLLM:
    """The fake provider server. ``async with FakeLLM() as llm: llm.script(Reply(...))``."""

    def __init__(self) -> None:
        self.replies: deque[Reply] = deque()
        self.requests: list[Recorded] = []
        self.port = 0
        self._ids = itertools.count(1)
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
                Route("/v1/responses", self._responses, methods=["POST"]),
                Route("/v1/messages", self._messages, methods=["POST"]),
            ]
        )

    # -- control ----------------------------------------------------------------------------

    def script(self, *replies: Reply) -> None:
        """Answer the next requests with ``replies``, in order."""
        self.replies.extend(replies)

    @property
    def openai_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def anthropic_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> FakeLLM:
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=0, log_level="warning", lifespan="off", loop="none"
        )
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.005)  # uvicorn offers no start-up event to await
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        assert self._task is not None
        for reply in self.replies:
            if reply.gate is not None:
                reply.gate.set()
        self._server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(self._task, 10)

    # -- plumbing ---------------------------------------------------------------------------

    async def _take(self, request: Request) -> tuple[Reply, dict[str, Any]]:
        body = await request.json()
        headers = {k.lower(): v for k, v in request.headers.items()}
        self.requests.append(Recorded(request.url.path, headers, body))
        reply = self.replies.popleft() if self.replies else Reply()
        return reply, body

    async def _paced(self, reply: Reply, events: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """Write each event, split if asked; the pauses are the server's own pacing."""
        async for blob in events:
            pieces = list(_split(blob)) if reply.split_utf8 else [blob]
            for i, piece in enumerate(pieces):
                if i:
                    await asyncio.sleep(0.01)  # let the first piece leave as its own write
                yield piece

    async def _chunk_points(self, reply: Reply, index: int) -> bool:
        """Before chunk ``index``: pause, honour the gate; False when an error must come now."""
        if index and reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.gate is not None and index == reply.gate_after:
            await reply.gate.wait()
        return reply.error_after is None or index < reply.error_after

    def _after_chunk(self, reply: Reply) -> None:
        reply.written += 1
        reply.progress.set()

    def _error_status(self, reply: Reply, anthropic: bool) -> Response:
        otype, atype, message = _ERRORS[reply.error]
        message = reply.message or message
        if anthropic:
            body: dict[str, Any] = {"type": "error", "error": {"type": atype, "message": message}}
        else:
            body = {"error": {"message": message, "type": otype, "param": None, "code": otype}}
        return JSONResponse(body, status_code=reply.status, headers=reply.headers)

    @staticmethod
    def _prompt_tokens(body: dict[str, Any]) -> int:
        return max(1, len(json.dumps(body.get("messages") or body.get("input") or "")) // 4)

    # -- OpenAI Chat Completions ------------------------------------------------------------

    async def _chat(self, request: Request) -> Response:
        reply, body = await self._take(request)
        if reply.status != 200:
            return self._error_status(reply, anthropic=False)
        rid, model = f"chatcmpl-{next(self._ids)}", body.get("model", "")
        usage_wanted = bool((body.get("stream_options") or {}).get("include_usage"))
        a = reply.ascii_json

        def chunk(delta: dict[str, Any] | None, finish: str | None = None, **extra: Any) -> bytes:
            choices = (
                [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
                if delta is not None
                else []
            )
            data = {
                "id": rid,
                "object": "chat.completion.chunk",
                "created": 1_700_000_000,
                "model": model,
                "system_fingerprint": "fp_fake",
                "choices": choices,
                **extra,
            }
            if usage_wanted and "usage" not in extra:
                data["usage"] = None
            return _sse(data, ascii_only=a)

        async def events() -> AsyncIterator[bytes]:
            yield chunk({"role": "assistant", "content": "", "refusal": None})
            for i, text in enumerate(reply.chunks):
                if not await self._chunk_points(reply, i):
                    yield _sse(
                        {
                            "error": {
                                "message": "The server had an error while processing your request.",
                                "type": "server_error",
                                "param": None,
                                "code": None,
                            }
                        }
                    )
                    return
                yield chunk({"content": text})
                self._after_chunk(reply)
            finish = reply.finish or "stop"
            if reply.tool_call is not None:
                name, fragments = reply.tool_call
                call = {
                    "index": 0,
                    "id": "call_fake1",
                    "type": "function",
                    "function": {"name": name, "arguments": ""},
                }
                yield chunk({"tool_calls": [call]})
                for frag in fragments:
                    yield chunk({"tool_calls": [{"index": 0, "function": {"arguments": frag}}]})
                finish = reply.finish or "tool_calls"
            yield chunk({}, finish)
            if usage_wanted:
                inp, out = reply.usage or (self._prompt_tokens(body), len(reply.chunks))
                usage = {"prompt_tokens": inp, "completion_tokens": out, "total_tokens": inp + out}
                yield chunk(None, usage=usage)
            yield b"data: [DONE]\n\n"

        return StreamingResponse(self._paced(reply, events()), media_type="text/event-stream")

    # -- OpenAI Responses -------------------------------------------------------------------

    async def _responses(self, request: Request) -> Response:
        reply, body = await self._take(request)
        if reply.status != 200:
            return self._error_status(reply, anthropic=False)
        n = next(self._ids)
        rid, mid, model = f"resp_{n}", f"msg_{n}", body.get("model", "")
        seq = itertools.count()
        a = reply.ascii_json

        def response(status: str, output: list[Any], usage: Any = None) -> dict[str, Any]:
            return {
                "id": rid,
                "object": "response",
                "created_at": 1_700_000_000,
                "status": status,
                "error": None,
                "incomplete_details": None,
                "instructions": body.get("instructions"),
                "max_output_tokens": body.get("max_output_tokens"),
                "model": model,
                "output": output,
                "parallel_tool_calls": True,
                "temperature": 1.0,
                "tool_choice": "auto",
                "tools": [],
                "top_p": 1.0,
                "usage": usage,
            }

        def ev(kind: str, **data: Any) -> bytes:
            return _sse({"type": kind, "sequence_number": next(seq), **data}, kind, ascii_only=a)

        async def events() -> AsyncIterator[bytes]:
            yield ev("response.created", response=response("in_progress", []))
            yield ev("response.in_progress", response=response("in_progress", []))
            item = {
                "id": mid,
                "type": "message",
                "status": "in_progress",
                "role": "assistant",
                "content": [],
            }
            yield ev("response.output_item.added", output_index=0, item=item)
            part = {"type": "output_text", "text": "", "annotations": []}
            yield ev(
                "response.content_part.added",
                item_id=mid,
                output_index=0,
                content_index=0,
                part=part,
            )
            for i, text in enumerate(reply.chunks):
                if not await self._chunk_points(reply, i):
                    yield ev(
                        "error", code="server_error", message="The server had an error.", param=None
                    )
                    return
                yield ev(
                    "response.output_text.delta",
                    item_id=mid,
                    output_index=0,
                    content_index=0,
                    delta=text,
                    logprobs=[],
                )
                self._after_chunk(reply)
            full = reply.text()
            yield ev(
                "response.output_text.done",
                item_id=mid,
                output_index=0,
                content_index=0,
                text=full,
                logprobs=[],
            )
            done_part = {"type": "output_text", "text": full, "annotations": []}
            yield ev(
                "response.content_part.done",
                item_id=mid,
                output_index=0,
                content_index=0,
                part=done_part,
            )
            done_item = {**item, "status": "completed", "content": [done_part]}
            yield ev("response.output_item.done", output_index=0, item=done_item)
            output: list[Any] = [done_item]
            if reply.tool_call is not None:
                name, fragments = reply.tool_call
                call = {
                    "id": "fc_1",
                    "type": "function_call",
                    "status": "in_progress",
                    "call_id": "call_fake1",
                    "name": name,
                    "arguments": "",
                }
                yield ev("response.output_item.added", output_index=1, item=call)
                for frag in fragments:
                    yield ev(
                        "response.function_call_arguments.delta",
                        item_id="fc_1",
                        output_index=1,
                        delta=frag,
                    )
                done_call = {**call, "status": "completed", "arguments": "".join(fragments)}
                yield ev(
                    "response.function_call_arguments.done",
                    item_id="fc_1",
                    output_index=1,
                    arguments=done_call["arguments"],
                )
                yield ev("response.output_item.done", output_index=1, item=done_call)
                output.append(done_call)
            inp, out = reply.usage or (self._prompt_tokens(body), len(reply.chunks))
            usage = {
                "input_tokens": inp,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": out,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": inp + out,
            }
            yield ev("response.completed", response=response("completed", output, usage))

        return StreamingResponse(self._paced(reply, events()), media_type="text/event-stream")

    # -- Anthropic Messages -----------------------------------------------------------------

    async def _messages(self, request: Request) -> Response:
        reply, body = await self._take(request)
        if reply.status != 200:
            return self._error_status(reply, anthropic=True)
        mid, model = f"msg_fake{next(self._ids)}", body.get("model", "")
        inp, out = reply.usage or (self._prompt_tokens(body), len(reply.chunks))
        a = reply.ascii_json

        def ev(kind: str, **data: Any) -> bytes:
            return _sse({"type": kind, **data}, kind, ascii_only=a)

        async def events() -> AsyncIterator[bytes]:
            message = {
                "id": mid,
                "type": "message",
                "role": "assistant",
                "content": [],
                "model": model,
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": inp, "output_tokens": 1},
            }
            yield ev("message_start", message=message)
            yield ev("content_block_start", index=0, content_block={"type": "text", "text": ""})
            yield ev("ping")
            for i, text in enumerate(reply.chunks):
                if not await self._chunk_points(reply, i):
                    yield ev("error", error={"type": "overloaded_error", "message": "Overloaded"})
                    return
                yield ev("content_block_delta", index=0, delta={"type": "text_delta", "text": text})
                self._after_chunk(reply)
                if i == 1:
                    yield ev("ping")  # pings may come at any point
            yield ev("content_block_stop", index=0)
            stop = reply.finish or "end_turn"
            if reply.tool_call is not None:
                name, fragments = reply.tool_call
                block = {"type": "tool_use", "id": "toolu_fake1", "name": name, "input": {}}
                yield ev("content_block_start", index=1, content_block=block)
                for frag in fragments:
                    yield ev(
                        "content_block_delta",
                        index=1,
                        delta={"type": "input_json_delta", "partial_json": frag},
                    )
                yield ev("content_block_stop", index=1)
                stop = reply.finish or "tool_use"
            yield ev(
                "message_delta",
                delta={"stop_reason": stop, "stop_sequence": None},
                usage={"output_tokens": out},
            )
            yield ev("message_stop")

        return StreamingResponse(self._paced(reply, events()), media_type="text/event-stream")

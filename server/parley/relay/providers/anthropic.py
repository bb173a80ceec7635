"""Anthropic Messages, streamed (``POST /v1/messages`` with ``stream: true``).

The stream is ``message_start`` (input tokens), then per content block ``content_block_start``,
``content_block_delta``... ``content_block_stop``, then ``message_delta`` (stop reason, output
tokens) and ``message_stop``; ``ping`` may come at any time and an ``error`` event (for example
``overloaded_error``) may replace the rest of the stream.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from parley.relay.providers.base import (
    ChatMessage,
    Finish,
    FinishReason,
    ProviderRequest,
    StreamError,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    Usage,
    chat_params,
    scrub,
    sdk_call,
    status_error,
)

PARAMS = ("temperature", "top_p", "top_k", "stop_sequences", "tools", "tool_choice", "thinking")

_FINISH: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def anthropic_error(exc: BaseException, secrets: tuple[str | None, ...]) -> StreamError:
    """Map an exception of the ``anthropic`` SDK to a ``StreamError``. An ``error`` event in
    the middle of a stream arrives as a status error of the (200) streaming response, so its
    kind comes from the body's ``error.type``."""
    import anthropic  # imported by ProviderRegistry.provider before any client exists

    if isinstance(exc, anthropic.APITimeoutError):
        return StreamError("the provider did not answer in time", "timeout", True)
    if isinstance(exc, anthropic.APIConnectionError):
        return StreamError("could not reach the provider", "connection", True)
    if isinstance(exc, anthropic.APIStatusError):
        status = exc.status_code if exc.status_code >= 400 else None
        message = getattr(exc, "api_message", None) or exc.message  # newer SDKs parse it
        return status_error(
            status, message, body=exc.body, headers=exc.response.headers, secrets=secrets
        )
    return StreamError(
        scrub(f"unreadable provider stream: {type(exc).__name__}: {exc}", secrets)[:500],
        "protocol",
        False,
    )


def alternate(messages: list[ChatMessage]) -> list[dict[str, Any]]:
    """Messages as the API requires them: starting with a user turn, roles alternating.
    Consecutive turns of one role are joined (several people may speak in a row). A turn with
    images becomes content blocks: its text, then one base64 ``image`` block per image."""
    out: list[dict[str, Any]] = []
    for m in messages:
        if out and out[-1]["role"] == m.role:
            prev = out[-1]
            if isinstance(prev["content"], str) and not m.images:
                prev["content"] += "\n\n" + m.content
                continue
            if isinstance(prev["content"], str):
                prev["content"] = [{"type": "text", "text": prev["content"]}]
            prev["content"] += _blocks(m)
        else:
            out.append({"role": m.role, "content": _blocks(m) if m.images else m.content})
    if out and out[0]["role"] == "assistant":
        out.insert(0, {"role": "user", "content": "(The conversation so far:)"})
    return out


def _blocks(m: ChatMessage) -> list[dict[str, Any]]:
    return [
        {"type": "text", "text": m.content},
        *(
            {
                "type": "image",
                "source": {"type": "base64", "media_type": img.media_type, "data": img.base64()},
            }
            for img in m.images
        ),
    ]


class AnthropicProvider:
    """Messages API streaming with the official SDK (no SDK retries)."""

    def __init__(
        self,
        *,
        kind: str = "anthropic",
        api_key: str | None,
        base_url: str | None,
        timeout: float = 60.0,
        connect_timeout: float = 10.0,
    ) -> None:
        import anthropic  # see SDK_MODULES in relay/registry.py

        self.kind = kind
        self._secrets = (api_key,)
        # A placeholder key keeps the SDK from reading ANTHROPIC_API_KEY by itself.
        self.client = anthropic.AsyncAnthropic(
            api_key=api_key or "not-set",
            base_url=base_url,
            max_retries=0,
            timeout=anthropic.Timeout(timeout, connect=connect_timeout),
        )

    async def aclose(self) -> None:
        await self.client.close()

    def _body(self, req: ProviderRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": req.model,
            "messages": alternate(req.messages),
            "max_tokens": req.max_output_tokens,
            "stream": True,
            **chat_params(req.params, PARAMS),
        }
        if req.system:
            body["system"] = req.system
        return body

    async def stream(self, request: ProviderRequest) -> AsyncGenerator[StreamEvent, None]:
        """Stream one answer; see ``providers.base`` for the contract."""
        create: Any = self.client.messages.create
        try:
            events = await create(**sdk_call(create, self._body(request)))
        except Exception as exc:
            yield anthropic_error(exc, self._secrets)
            return
        finish: FinishReason = "stop"
        stopped = False
        try:
            async for event in events:
                etype = getattr(event, "type", "")
                if etype == "content_block_delta":
                    delta = event.delta
                    dtype = getattr(delta, "type", "")
                    if dtype == "text_delta":
                        if delta.text:
                            yield TextDelta(delta.text)
                    elif dtype == "input_json_delta":
                        yield ToolCallDelta(event.index, None, None, delta.partial_json or "")
                elif etype == "content_block_start":
                    block = event.content_block
                    if getattr(block, "type", "") == "tool_use":
                        yield ToolCallDelta(event.index, block.id, block.name, "")
                elif etype == "message_start":
                    usage = getattr(event.message, "usage", None)
                    if usage is not None:
                        yield Usage(input_tokens=usage.input_tokens)
                elif etype == "message_delta":
                    reason = getattr(event.delta, "stop_reason", None)
                    if reason:
                        finish = _FINISH.get(reason, "stop")
                    usage = getattr(event, "usage", None)
                    if usage is not None:
                        yield Usage(output_tokens=usage.output_tokens)
                elif etype == "message_stop":
                    stopped = True
                    break
        except Exception as exc:
            yield anthropic_error(exc, self._secrets)
            return
        finally:
            await events.close()
        if not stopped:
            yield StreamError("the provider's stream ended before message_stop", "protocol", True)
            return
        yield Finish(finish)

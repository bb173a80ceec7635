"""OpenAI Responses, streamed (``POST /responses`` with ``stream: true``).

The stream is a sequence of typed events (``response.created``, ``response.output_item.added``,
``response.output_text.delta``, ``response.function_call_arguments.delta``,
``response.completed``...). Only the ones that carry the answer are mapped; the rest are
progress notices the relay does not need.
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
)
from parley.relay.providers.openai_chat import client_for, openai_error

PARAMS = ("temperature", "top_p", "tools", "tool_choice", "reasoning", "truncation")


def _content(m: ChatMessage) -> str | list[dict[str, Any]]:
    """Plain text, or ``input_text`` and ``input_image`` items when the turn has images."""
    if not m.images:
        return m.content
    return [
        {"type": "input_text", "text": m.content},
        *({"type": "input_image", "image_url": img.data_url()} for img in m.images),
    ]


class OpenAIResponsesProvider:
    """Responses API streaming with the official SDK (no SDK retries)."""

    def __init__(
        self,
        *,
        kind: str = "openai_responses",
        api_key: str | None,
        base_url: str | None,
        timeout: float = 60.0,
        connect_timeout: float = 10.0,
    ) -> None:
        self.kind = kind
        self._secrets = (api_key,)
        self.client = client_for(
            api_key=api_key, base_url=base_url, timeout=timeout, connect_timeout=connect_timeout
        )

    async def aclose(self) -> None:
        await self.client.close()

    def _body(self, req: ProviderRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": req.model,
            "input": [{"role": m.role, "content": _content(m)} for m in req.messages],
            "stream": True,
            # Parley keeps the conversation; nothing needs to be stored at the provider.
            "store": False,
            "max_output_tokens": req.max_output_tokens,
            **chat_params(req.params, PARAMS),
        }
        if req.system:
            body["instructions"] = req.system
        return body

    async def stream(self, request: ProviderRequest) -> AsyncGenerator[StreamEvent, None]:
        """Stream one answer; see ``providers.base`` for the contract."""
        create: Any = self.client.responses.create
        try:
            events = await create(**sdk_call(create, self._body(request)))
        except Exception as exc:
            yield openai_error(exc, self._secrets)
            return
        finish: FinishReason | None = None
        calls = False
        try:
            async for event in events:
                etype = getattr(event, "type", "")
                if etype == "response.output_text.delta":
                    if event.delta:
                        yield TextDelta(event.delta)
                elif etype == "response.output_item.added":
                    item = event.item
                    if getattr(item, "type", "") == "function_call":
                        calls = True
                        yield ToolCallDelta(
                            event.output_index, getattr(item, "call_id", None), item.name, ""
                        )
                elif etype == "response.function_call_arguments.delta":
                    yield ToolCallDelta(event.output_index, None, None, event.delta or "")
                elif etype in ("response.completed", "response.incomplete"):
                    usage = getattr(event.response, "usage", None)
                    if usage is not None:
                        yield Usage(usage.input_tokens, usage.output_tokens)
                    finish = "tool_calls" if calls else "stop"
                    if etype == "response.incomplete":
                        details = getattr(event.response, "incomplete_details", None)
                        reason = getattr(details, "reason", None)
                        finish = "content_filter" if reason == "content_filter" else "length"
                    break
                elif etype == "response.failed":
                    err = getattr(event.response, "error", None)
                    message = getattr(err, "message", None) or "the response failed"
                    code = getattr(err, "code", None) or ""
                    retryable = code in ("server_error", "rate_limit_exceeded")
                    yield StreamError(
                        scrub(message, self._secrets)[:500],
                        "server" if retryable else "provider",
                        retryable,
                    )
                    return
                elif etype == "error":
                    code = getattr(event, "code", None) or ""
                    retryable = code in ("server_error", "rate_limit_exceeded", "overloaded")
                    yield StreamError(
                        scrub(event.message or "provider error", self._secrets)[:500],
                        "server" if retryable else "provider",
                        retryable,
                    )
                    return
        except Exception as exc:
            yield openai_error(exc, self._secrets)
            return
        finally:
            await events.close()
        if finish is None:
            yield StreamError(
                "the provider's stream ended before the response completed", "protocol", True
            )
            return
        yield Finish(finish)

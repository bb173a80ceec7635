"""OpenAI Chat Completions, streamed (``POST /chat/completions`` with ``stream: true``).

Also serves any OpenAI-compatible server (Ollama, vLLM, LM Studio, llama.cpp) through its base
URL: those speak the same chunk format. The official ``openai`` SDK does the HTTP and SSE work;
its own retries are off because the relay retries itself (only before the first token, with
backoff, and it must count and report attempts).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Any

from parley.relay.providers.base import (
    ChatMessage,
    ErrorKind,
    Finish,
    FinishReason,
    ProviderRequest,
    StreamError,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    Usage,
    chat_params,
    error_body_type,
    scrub,
    sdk_call,
    status_error,
)

if TYPE_CHECKING:
    import openai

# Parameters an assistant may set for this API (validated when it is saved).
PARAMS = (
    "temperature",
    "top_p",
    "stop",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "tools",
    "tool_choice",
    "reasoning_effort",
)

_FINISH: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}


def openai_error(exc: BaseException, secrets: tuple[str | None, ...]) -> StreamError:
    """Map an exception of the ``openai`` SDK (or its transport) to a ``StreamError``."""
    import openai  # imported by ProviderRegistry.provider before any client exists

    if isinstance(exc, openai.APITimeoutError):
        return StreamError("the provider did not answer in time", "timeout", True)
    if isinstance(exc, openai.APIConnectionError):
        return StreamError("could not reach the provider", "connection", True)
    if isinstance(exc, openai.APIStatusError):
        return status_error(
            exc.status_code,
            exc.message,
            body=exc.body,
            headers=exc.response.headers,
            secrets=secrets,
        )
    if isinstance(exc, openai.APIError):
        # An error object inside the stream (``data: {"error": {...}}``) after a 200.
        etype = error_body_type(exc.body) or ""
        kind: ErrorKind = "provider"
        if etype == "rate_limit_exceeded":
            kind = "rate_limited"
        elif etype in ("server_error", "overloaded_error"):
            kind = "server"
        return StreamError(scrub(exc.message, secrets)[:500], kind, kind != "provider")
    return StreamError(
        scrub(f"unreadable provider stream: {type(exc).__name__}: {exc}", secrets)[:500],
        "protocol",
        False,
    )


def _content(m: ChatMessage) -> str | list[dict[str, Any]]:
    """Plain text, or text and ``image_url`` parts (data URLs) when the turn has images."""
    if not m.images:
        return m.content
    return [
        {"type": "text", "text": m.content},
        *({"type": "image_url", "image_url": {"url": img.data_url()}} for img in m.images),
    ]


def client_for(
    *, api_key: str | None, base_url: str | None, timeout: float, connect_timeout: float
) -> openai.AsyncOpenAI:
    """An SDK client without SDK retries. A missing key is sent as a placeholder so the SDK
    never falls back to reading ``OPENAI_API_KEY`` itself: which key goes to which server is
    decided in one place (``relay.providers.registry``)."""
    import openai  # see SDK_MODULES in relay/registry.py

    return openai.AsyncOpenAI(
        api_key=api_key or "not-set",
        base_url=base_url,
        max_retries=0,
        timeout=openai.Timeout(timeout, connect=connect_timeout),
    )


class OpenAIChatProvider:
    """Chat Completions streaming. ``compatible`` uses ``max_tokens`` (what compatible servers
    understand) instead of OpenAI's ``max_completion_tokens``."""

    def __init__(
        self,
        *,
        kind: str = "openai",
        api_key: str | None,
        base_url: str | None,
        timeout: float = 60.0,
        connect_timeout: float = 10.0,
        compatible: bool = False,
    ) -> None:
        self.kind = kind
        self.compatible = compatible
        self._secrets = (api_key,)
        self.client = client_for(
            api_key=api_key, base_url=base_url, timeout=timeout, connect_timeout=connect_timeout
        )

    async def aclose(self) -> None:
        await self.client.close()

    def _body(self, req: ProviderRequest) -> dict[str, Any]:
        messages: list[dict[str, Any]] = []
        if req.system:
            messages.append({"role": "system", "content": req.system})
        messages += [{"role": m.role, "content": _content(m)} for m in req.messages]
        body: dict[str, Any] = {
            "model": req.model,
            "messages": messages,
            "stream": True,
            # The last chunk then carries token usage (its choices list is empty).
            "stream_options": {"include_usage": True},
            **chat_params(req.params, PARAMS),
        }
        limit_key = "max_tokens" if self.compatible else "max_completion_tokens"
        body[limit_key] = req.max_output_tokens
        return body

    async def stream(self, request: ProviderRequest) -> AsyncGenerator[StreamEvent, None]:
        """Stream one answer; see ``providers.base`` for the contract."""
        create: Any = self.client.chat.completions.create
        try:
            chunks = await create(**sdk_call(create, self._body(request)))
        except Exception as exc:
            yield openai_error(exc, self._secrets)
            return
        finish: FinishReason | None = None
        try:
            async for chunk in chunks:
                if chunk.usage is not None:
                    yield Usage(chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
                for choice in chunk.choices:
                    if choice.index != 0:
                        continue  # n > 1 is not offered: one answer per generation
                    delta = choice.delta
                    if delta is not None:
                        if delta.content:
                            yield TextDelta(delta.content)
                        for call in delta.tool_calls or ():
                            fn = call.function
                            yield ToolCallDelta(
                                call.index,
                                call.id,
                                fn.name if fn is not None else None,
                                (fn.arguments or "") if fn is not None else "",
                            )
                    if choice.finish_reason:
                        finish = _FINISH.get(choice.finish_reason, "stop")
        except Exception as exc:
            yield openai_error(exc, self._secrets)
            return
        finally:
            await chunks.close()
        if finish is None:
            yield StreamError(
                "the provider's stream ended without a finish reason", "protocol", True
            )
            return
        yield Finish(finish)

"""LLM providers behind one interface, and the registry that decides which key goes where.

Kinds: ``scripted`` (offline, the default), ``openai`` (Chat Completions), ``openai_responses``
(Responses), ``anthropic`` (Messages) and ``openai_compatible`` (Chat Completions against any
compatible server: Ollama, vLLM, LM Studio).
"""

from __future__ import annotations

from parley.relay.providers.base import (
    ChatMessage,
    Finish,
    Provider,
    ProviderRequest,
    StreamError,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    Usage,
)

__all__ = [
    "KINDS",
    "ChatMessage",
    "Finish",
    "Provider",
    "ProviderRequest",
    "StreamError",
    "StreamEvent",
    "TextDelta",
    "ToolCallDelta",
    "Usage",
    "params_for",
]

KINDS = ("scripted", "openai", "openai_responses", "anthropic", "openai_compatible")


def params_for(kind: str) -> tuple[str, ...]:
    """The assistant parameters the provider ``kind`` accepts (besides max_output_tokens)."""
    from parley.relay.providers import anthropic, openai_chat, openai_responses, scripted

    return {
        "scripted": scripted.PARAMS,
        "openai": openai_chat.PARAMS,
        "openai_compatible": openai_chat.PARAMS,
        "openai_responses": openai_responses.PARAMS,
        "anthropic": anthropic.PARAMS,
    }[kind]

"""The optional LLM for summaries and query parsing, through the relay's providers.

Configured by ``PARLEY_INTELLIGENCE_LLM_PROVIDER`` and ``..._MODEL``; keys and base URLs are the
relay's (``relay/registry.py``), per tenant. Every caller has an offline fallback, so a failing
or absent provider only means the offline method answers.
"""

from __future__ import annotations

import asyncio

import structlog

from parley.config import Settings
from parley.relay.providers.base import (
    ChatMessage,
    Finish,
    ProviderRequest,
    StreamError,
    TextDelta,
)
from parley.relay.registry import ProviderRegistry

log = structlog.get_logger("parley.intelligence")


class Llm:
    """One completion at a time per call; None whenever no usable answer came back."""

    def __init__(self, settings: Settings, registry: ProviderRegistry) -> None:
        self.provider = settings.intelligence_llm_provider
        self.model = settings.intelligence_llm_model
        self.registry = registry
        self.timeout = settings.relay_first_token_timeout + settings.relay_idle_timeout

    @property
    def configured(self) -> bool:
        return self.provider is not None

    @property
    def label(self) -> str:
        return f"{self.provider}/{self.model}"

    async def complete(
        self, tenant_id: str, system: str, prompt: str, *, max_tokens: int = 600
    ) -> str | None:
        """The model's whole answer to ``prompt``, or None (not configured, error, timeout)."""
        if self.provider is None:
            return None
        request = ProviderRequest(
            model=self.model,
            system=system,
            messages=[ChatMessage("user", prompt)],
            max_output_tokens=max_tokens,
            params={"temperature": 0},
        )
        provider = await self.registry.provider(self.provider, tenant_id)
        parts: list[str] = []
        try:
            async with asyncio.timeout(self.timeout):
                async for event in provider.stream(request):
                    if isinstance(event, TextDelta):
                        parts.append(event.text)
                    elif isinstance(event, StreamError):
                        log.warning("intelligence llm failed", kind=event.kind, error=event.message)
                        return None
                    elif isinstance(event, Finish):
                        break
        except TimeoutError:
            log.warning("intelligence llm timed out", provider=self.provider)
            return None
        text = "".join(parts).strip()
        return text or None

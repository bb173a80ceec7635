"""The LLM relay with the tenant's governance applied: monthly LLM quotas and ``redact_llm``.

Before an answer starts, the tenant's month must have tokens and cost left; after it ends, its
usage is recorded. In ``redact_llm`` mode the stored conversation keeps its content, and the
context sent to the provider has every finding replaced by its placeholder.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import structlog

from parley.governance.pii.policy import ContentPolicy
from parley.governance.policies import PiiMode, Policies
from parley.governance.quotas.enforcer import Quotas
from parley.relay.assistants import AssistantSpec
from parley.relay.providers.base import ChatMessage, ProviderRequest
from parley.relay.service import Outcome, Relay
from parley.relay.state import StreamInfo

log = structlog.get_logger("parley.governance")


class GovernedRelay(Relay):
    """:class:`Relay` plus LLM quotas and redaction of the provider context."""

    def __init__(
        self, *, policies: Policies, quotas: Quotas, content: ContentPolicy, **kw: Any
    ) -> None:
        super().__init__(**kw)
        self.policies = policies
        self.quotas = quotas
        self.content = content

    async def begin(
        self, spec: AssistantSpec, prompt_id: str | None, *, asked_by: str
    ) -> dict[str, Any]:
        await self.quotas.check_llm(spec.tenant_id)
        return await super().begin(spec, prompt_id, asked_by=asked_by)

    async def context(self, spec: AssistantSpec, prompt_id: str | None) -> ProviderRequest:
        request = await super().context(spec, prompt_id)
        if (await self.policies.get(spec.tenant_id)).pii_mode is not PiiMode.REDACT_LLM:
            return request

        def redacted() -> list[ChatMessage]:
            return [
                ChatMessage(msg.role, self.content.redact_text(msg.content))
                for msg in request.messages
            ]

        # A whole context can be long: scan it in a worker thread, not on the event loop.
        return replace(request, messages=await asyncio.to_thread(redacted))

    async def conclude(self, info: StreamInfo, outcome: Outcome, *, store: bool = True) -> None:
        await super().conclude(info, outcome, store=store)
        if not store:
            return  # the process that stores the answer records its usage
        tokens = (outcome.input_tokens or 0) + (outcome.output_tokens or 0)
        cost = self.prices.cost(info.provider, info.model, outcome.input_tokens,
                                outcome.output_tokens)  # fmt: skip
        try:
            await self.quotas.record_llm(info.tenant_id, tokens, cost["total"] if cost else None)
        except Exception as exc:  # usage is bookkeeping: the answer is already stored
            log.error("LLM usage not recorded", stream=info.stream_id, error=str(exc))

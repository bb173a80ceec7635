"""The session service with the tenant's governance applied: quotas and the PII mode.

REST and the socket share the session service, so wrapping it here covers both: a send over
either path is counted against the message quota and passes through the PII policy before the
row and its event are written (so in ``redact`` mode the original never reaches storage, the
event log or any subscriber).
"""

from __future__ import annotations

import asyncio
from typing import Any

from parley import metrics
from parley.governance.auth import Principal, UserKind
from parley.governance.pii.policy import ContentPolicy, Prepared
from parley.governance.policies import PiiMode, Policies
from parley.governance.policy import Visibility
from parley.governance.quotas.enforcer import Quotas
from parley.sessions.queries import message_row, session_row
from parley.sessions.service import PostResult, Publisher, SessionService
from parley.storage.database import Database

INLINE_SCAN_CHARS = 2000  # longer texts are scanned in a worker thread


class GovernedSessionService(SessionService):
    """:class:`SessionService` plus quotas and PII handling (see the module docstring)."""

    def __init__(
        self,
        db: Database,
        publisher: Publisher,
        *,
        max_text_chars: int = 32_000,
        policies: Policies,
        quotas: Quotas,
        content: ContentPolicy,
        default_visibility: Visibility = Visibility.OPEN,
    ) -> None:
        super().__init__(
            db, publisher, max_text_chars=max_text_chars, default_visibility=default_visibility
        )
        self.policies = policies
        self.quotas = quotas
        self.content = content

    async def create_session(
        self,
        p: Principal,
        *,
        title: str = "",
        metadata: dict[str, Any] | None = None,
        tags: list[str] | None = None,
        visibility: Visibility | None = None,
    ) -> dict[str, Any]:
        await self.ensure_principal(p)
        await self.quotas.check_session(p)
        return await super().create_session(
            p, title=title, metadata=metadata, tags=tags, visibility=visibility
        )

    async def _prepare(
        self,
        p: Principal,
        text: str | None,
        parts: list[dict[str, Any]] | None,
        metadata: dict[str, Any] | None,
    ) -> Prepared:
        mode = (await self.policies.get(p.tenant_id)).pii_mode
        if mode in (PiiMode.FLAG, PiiMode.REDACT) and (
            len(text or "") > INLINE_SCAN_CHARS or parts is not None
        ):
            # A long text takes the detector up to a few hundred ms: not on the event loop.
            prepared = await asyncio.to_thread(self.content.prepare, mode, text, parts, metadata)
        else:
            prepared = self.content.prepare(mode, text, parts, metadata)
        for kind, count in prepared.found.items():
            metrics.PII_FINDINGS.labels(type=kind.value, mode=str(mode)).inc(count)
        return prepared

    async def post_message(
        self,
        p: Principal,
        session_id: str,
        *,
        text: str = "",
        parts: list[dict[str, Any]] | None = None,
        parent_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        client_id: str | None = None,
    ) -> PostResult:
        if p.kind is not UserKind.ASSISTANT:
            await self.quotas.check_message(p)
        prepared = await self._prepare(p, text, parts, metadata)
        return await super().post_message(
            p,
            session_id,
            text=prepared.text,
            parts=prepared.parts,
            parent_id=parent_id,
            metadata=prepared.metadata,
            client_id=client_id,
        )

    async def edit_message(
        self,
        p: Principal,
        session_id: str,
        message_id: str,
        *,
        text: str | None = None,
        parts: list[dict[str, Any]] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> tuple[dict[str, Any], int]:
        mode = (await self.policies.get(p.tenant_id)).pii_mode
        if mode in (PiiMode.FLAG, PiiMode.REDACT) and (text is not None or parts is not None):
            if metadata is None:
                # The flag describes the content after the edit, so start from what is stored.
                def current(s: Any) -> dict[str, Any]:
                    session_row(s, p, session_id)
                    return dict(message_row(s, session_id, message_id, p.tenant_id).meta or {})

                metadata = await self.db.read(current)
            prepared = await self._prepare(p, text, parts, metadata)
            text = prepared.text if text is not None else None
            parts, metadata = prepared.parts, prepared.metadata
        return await super().edit_message(
            p, session_id, message_id, text=text, parts=parts, metadata=metadata
        )

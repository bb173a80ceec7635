"""The tenant's PII mode applied to imported messages, on every path that imports (REST
uploads, ``parley import``, templates): the importer calls it for each conversation before
anything is checked or written, so in ``redact`` mode the original text never reaches storage,
the event log or a subscriber, exactly as for messages sent live (governance/sessions.py)."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from parley import metrics
from parley.config import Settings
from parley.governance.pii.detector import Detector, PiiType
from parley.governance.pii.policy import ContentPolicy
from parley.governance.policies import PiiMode, Policies
from parley.imports.model import ImportedConversation, ImportedMessage

# Fields of an attachment part that the server wrote (ids, hashes, URLs, sizes): never text a
# person typed, and rewriting one would break the reference. Only the file name is scanned.
_MACHINE_FIELDS = ("attachment_id", "sha256", "url", "thumbnail_url", "content_type")


class ImportContent:
    """Applies the tenant's PII mode (see the module docstring)."""

    def __init__(self, policies: Policies, content: ContentPolicy) -> None:
        self.policies = policies
        self.content = content

    async def apply(self, tenant_id: str, conv: ImportedConversation) -> Counter[PiiType]:
        """Rewrite (``redact``) or flag (``flag``) the conversation's messages in place."""
        mode = (await self.policies.get(tenant_id)).pii_mode
        if mode not in (PiiMode.FLAG, PiiMode.REDACT) or not conv.messages:
            return Counter()
        # The detector takes milliseconds per message: a whole conversation goes to a thread.
        found = await asyncio.to_thread(self._apply_all, mode, conv.messages)
        for kind, count in found.items():
            metrics.PII_FINDINGS.labels(type=kind.value, mode=str(mode)).inc(count)
        return found

    def _apply_all(self, mode: PiiMode, messages: list[ImportedMessage]) -> Counter[PiiType]:
        found: Counter[PiiType] = Counter()
        for msg in messages:
            parts = [*(msg.parts or []), *({"type": "attachment", **a} for a in msg.attachments)]
            scanned = [_scannable(part) for part in parts]
            prepared = self.content.prepare(
                mode, msg.text, scanned if parts else None, msg.metadata
            )
            msg.text = prepared.text
            if parts and prepared.parts is not None:
                msg.parts = [_restore(o, n) for o, n in zip(parts, prepared.parts, strict=True)]
                msg.attachments = []
            msg.metadata = prepared.metadata if prepared.metadata is not None else {}
            found.update(prepared.found)
        return found


def _scannable(part: dict[str, Any]) -> dict[str, Any]:
    if part.get("type") != "attachment":
        return part
    return {k: v for k, v in part.items() if k not in _MACHINE_FIELDS}


def _restore(original: dict[str, Any], prepared: dict[str, Any]) -> dict[str, Any]:
    if original.get("type") != "attachment":
        return prepared
    return {**prepared, **{k: original[k] for k in _MACHINE_FIELDS if k in original}}


def content_for(policies: Policies, settings: Settings) -> ImportContent:
    """The import content policy of a process without a running server (``parley import``):
    the same detector the server builds from ``PARLEY_PII_PHONE_REGIONS``."""
    regions = [r.strip().upper() for r in settings.pii_phone_regions.split(",") if r.strip()]
    return ImportContent(policies, ContentPolicy(Detector(regions)))

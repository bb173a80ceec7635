"""What every resolver of one request gets: the caller, the services, and batch loaders.

Loaders are per request (they cache): a query over 50 sessions asking for participants and
the first messages of each makes one query for all participants and one for all first pages.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from strawberry.dataloader import DataLoader

from parley.attachments.service import AttachmentService
from parley.crdt.manager import DocManager
from parley.governance.auth import Principal
from parley.relay.service import Relay
from parley.sessions.batch import BatchReads
from parley.sessions.service import SessionService
from parley.sessions.usage import UsageQueries

PageKey = tuple[str, int, int]  # (session id, after seq, limit)


@dataclass
class Context:
    principal: Principal
    service: SessionService
    docs: DocManager
    relay: Relay
    attachments: AttachmentService
    batch: BatchReads
    usage: UsageQueries
    max_page: int
    participants: DataLoader[str, list[dict[str, Any]]] = field(init=False)
    message_pages: DataLoader[PageKey, list[dict[str, Any]]] = field(init=False)
    messages: DataLoader[str, dict[str, Any] | None] = field(init=False)
    session_usage: DataLoader[str, dict[str, Any]] = field(init=False)

    def __post_init__(self) -> None:
        self.participants = DataLoader(self._participants)
        self.message_pages = DataLoader(self._message_pages)
        self.messages = DataLoader(self._messages)
        self.session_usage = DataLoader(self._usage)

    async def _participants(self, keys: Sequence[str]) -> list[list[dict[str, Any]]]:
        found = await self.batch.participants(self.principal, list(keys))
        return [found.get(k, []) for k in keys]

    async def _message_pages(self, keys: Sequence[PageKey]) -> list[list[dict[str, Any]]]:
        # One query per distinct (after, limit): usually a single one for the whole request.
        groups: dict[tuple[int, int], list[str]] = {}
        for sid, after, limit in keys:
            groups.setdefault((after, limit), []).append(sid)
        found: dict[PageKey, list[dict[str, Any]]] = {}
        for (after, limit), sids in groups.items():
            pages = await self.batch.message_pages(
                self.principal, sids, after_seq=after, limit=limit
            )
            for sid in sids:
                found[(sid, after, limit)] = pages.get(sid, [])
        return [found[k] for k in keys]

    async def _messages(self, keys: Sequence[str]) -> list[dict[str, Any] | None]:
        found = await self.batch.messages(self.principal, list(keys))
        return [found.get(k) for k in keys]

    async def _usage(self, keys: Sequence[str]) -> list[dict[str, Any]]:
        found = await self.usage.of_sessions(self.principal, list(keys))
        return [found[k] for k in keys]

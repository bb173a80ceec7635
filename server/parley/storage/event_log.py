"""Reads of the durable event log that replay and gap filling need (no permission checks:
callers have checked access already).

The hub reads by session id only: its feeds are keyed by tenant-named channels and were opened
after a tenant-scoped access check, and session ids are unique across tenants. These reads
are therefore exempt from the tenant guard (``governance.scoping``), by name.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from parley.governance.scoping import all_tenants
from parley.sessions.views import event_view
from parley.storage import models as m
from parley.storage.database import Database

MAX_PAGE = 500
_WHY = "the hub reads sessions it reached through a tenant-scoped check"


class EventLog:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def events_after(
        self, session_id: str, after_seq: int, limit: int = MAX_PAGE
    ) -> list[dict[str, Any]]:
        """Event frames with ``seq > after_seq`` in ``seq`` order, at most ``limit``."""

        def read(s: Session) -> list[dict[str, Any]]:
            rows = s.scalars(
                select(m.Event)
                .where(m.Event.session_id == session_id, m.Event.seq > after_seq)
                .order_by(m.Event.seq)
                .limit(max(1, min(limit, MAX_PAGE)))
            ).all()
            return [event_view(r) for r in rows]

        return await self.db.read(all_tenants(_WHY, read))

    async def last_seqs(self, session_ids: list[str]) -> dict[str, int]:
        """The newest committed ``seq`` of each of these sessions, in one query."""
        if not session_ids:
            return {}

        def read(s: Session) -> dict[str, int]:
            rows = s.execute(
                select(m.Session.id, m.Session.last_seq).where(m.Session.id.in_(session_ids))
            )
            return {sid: int(seq) for sid, seq in rows}

        return await self.db.read(all_tenants(_WHY, read))

    async def last_seq(self, session_id: str) -> int:
        """The newest committed ``seq`` of a session (0 when it does not exist)."""

        def read(s: Session) -> int:
            value = s.scalar(select(m.Session.last_seq).where(m.Session.id == session_id))
            return int(value or 0)

        return await self.db.read(all_tenants(_WHY, read))

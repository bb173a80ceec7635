"""Annotation events: durable session events (with ``seq``) for changes made in the session's
collaborative document, so replay, webhooks and subscribers see them like any other event.

The document itself lives in ``parley.crdt``; this module only appends the events, in the same
unit-of-work pattern as :class:`~parley.sessions.service.SessionService`: lock the session row,
allocate ``last_seq + 1 ...``, commit, then publish.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import structlog
from sqlalchemy.orm import Session

from parley.governance.auth import Principal
from parley.ids import utcnow
from parley.sessions.queries import new_event, session_row
from parley.sessions.service import Publisher, SessionService
from parley.sessions.views import event_view
from parley.storage.database import Database

log = structlog.get_logger("parley.sessions")

ANNOTATION_EVENTS = frozenset({"annotation.created", "annotation.resolved"})


class AnnotationEvents:
    """Appends ``annotation.*`` events to a session's event log."""

    def __init__(self, db: Database, publisher: Publisher) -> None:
        self.db = db
        self.publisher = publisher

    @classmethod
    def of(cls, service: SessionService) -> AnnotationEvents:
        """Share the session service's database and publisher."""
        return cls(service.db, service.publisher)

    async def record(
        self, p: Principal, session_id: str, events: Sequence[tuple[str, dict[str, Any]]]
    ) -> list[int]:
        """Commit ``events`` (name, data) as durable events by ``p``; return their seqs.

        Raises ``NotFound`` when the session is gone or in another tenant.
        """
        for name, _ in events:
            if name not in ANNOTATION_EVENTS:
                raise ValueError(f"not an annotation event: {name}")
        if not events:
            return []
        now = utcnow()

        def work(s: Session) -> list[dict[str, Any]]:
            row = session_row(s, p, session_id, lock=True)
            rows = []
            for name, data in events:
                row.last_seq += 1
                rows.append(new_event(p, session_id, row.last_seq, name, data, now))
            row.updated_at = now
            s.add_all(rows)
            return [event_view(r) for r in rows]

        frames = await self.db.write(work)
        try:
            await self.publisher.publish(p.tenant_id, session_id, frames)
        except Exception:  # committed: subscribers recover the events by gap fill or replay
            log.exception("publishing annotation events failed", session=session_id)
        return [f["seq"] for f in frames]

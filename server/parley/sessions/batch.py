"""Reads of many sessions at once, for callers that would otherwise query once per session
(GraphQL's batch loaders). Same tenant scoping and the same views as ``SessionService``: a
session of another tenant, or one that does not exist, simply has no entry."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from parley.governance.auth import Principal
from parley.sessions.queries import plausible_id
from parley.sessions.views import message_view, participant_view
from parley.storage import models as m
from parley.storage.database import Database


def _readable(s: Session, p: Principal, session_ids: list[str]) -> list[str]:
    ids = [i for i in dict.fromkeys(session_ids) if plausible_id(i)]
    if not ids:
        return []
    return list(
        s.scalars(
            select(m.Session.id).where(m.Session.id.in_(ids), m.Session.tenant_id == p.tenant_id)
        )
    )


class BatchReads:
    """Participants, message pages and messages by id for many sessions in one query each."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def participants(
        self, p: Principal, session_ids: list[str]
    ) -> dict[str, list[dict[str, Any]]]:
        """Each readable session's participants, oldest first (as ``list_participants``)."""

        def work(s: Session) -> dict[str, list[dict[str, Any]]]:
            ids = _readable(s, p, session_ids)
            out: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
            if not ids:
                return out
            rows = s.execute(
                select(m.Participant, m.User)
                .outerjoin(
                    m.User,
                    (m.User.tenant_id == m.Participant.tenant_id)
                    & (m.User.id == m.Participant.user_id),
                )
                .where(m.Participant.tenant_id == p.tenant_id, m.Participant.session_id.in_(ids))
                .order_by(m.Participant.joined_at, m.Participant.user_id)
            ).all()
            for part, user in rows:
                out[part.session_id].append(participant_view(part, user))
            return out

        return await self.db.read(work)

    async def message_pages(
        self, p: Principal, session_ids: list[str], *, after_seq: int, limit: int
    ) -> dict[str, list[dict[str, Any]]]:
        """Up to ``limit`` messages with ``seq > after_seq`` of each readable session, oldest
        first (one window-function query for all sessions)."""

        def work(s: Session) -> dict[str, list[dict[str, Any]]]:
            ids = _readable(s, p, session_ids)
            out: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
            if not ids:
                return out
            ranked = (
                select(
                    m.Message.id,
                    func.row_number()
                    .over(partition_by=m.Message.session_id, order_by=m.Message.seq)
                    .label("n"),
                )
                .where(
                    m.Message.tenant_id == p.tenant_id,
                    m.Message.session_id.in_(ids),
                    m.Message.seq > after_seq,
                )
                .subquery()
            )
            rows = s.scalars(
                select(m.Message)
                .join(ranked, ranked.c.id == m.Message.id)
                .where(ranked.c.n <= limit)
                .order_by(m.Message.session_id, m.Message.seq)
            ).all()
            for row in rows:
                out[row.session_id].append(message_view(row))
            return out

        return await self.db.read(work)

    async def messages(self, p: Principal, message_ids: list[str]) -> dict[str, dict[str, Any]]:
        """Messages by id, in the caller's tenant."""

        def work(s: Session) -> dict[str, dict[str, Any]]:
            ids = [i for i in dict.fromkeys(message_ids) if plausible_id(i)]
            if not ids:
                return {}
            rows = s.scalars(
                select(m.Message).where(m.Message.id.in_(ids), m.Message.tenant_id == p.tenant_id)
            ).all()
            return {r.id: message_view(r) for r in rows}

        return await self.db.read(work)

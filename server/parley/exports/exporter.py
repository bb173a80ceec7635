"""Reads a session for export (tenant-scoped, like every read) and lists a tenant's sessions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from parley.attachments.listing import session_attachments
from parley.exports.session_json import export_document
from parley.governance.auth import Principal
from parley.ids import iso, utcnow
from parley.relay.assistants import assistant_view
from parley.sessions.queries import session_row, tags_of
from parley.sessions.service import SessionService
from parley.sessions.views import message_view, session_view
from parley.storage import models as m

PAGE = 200


class DocumentReader(Protocol):
    async def document(self, p: Principal, session_id: str) -> dict[str, Any]:
        """The session document as JSON (see ``DocManager.document``)."""


class Exporter:
    def __init__(self, service: SessionService, documents: DocumentReader) -> None:
        self.service = service
        self.db = service.db
        self.documents = documents

    async def session(self, p: Principal, session_id: str) -> dict[str, Any]:
        """The ``parley.session`` export of one session. Raises ``NotFound`` like every read."""

        def work(
            s: Session,
        ) -> tuple[
            dict[str, Any],
            list[dict[str, Any]],
            list[dict[str, Any]],
            list[dict[str, Any]],
            list[dict[str, Any]],
        ]:
            row = session_row(s, p, session_id)
            view = session_view(row, tags_of(s, [session_id], p.tenant_id)[session_id])
            rows = s.scalars(
                select(m.Message)
                .where(m.Message.tenant_id == p.tenant_id, m.Message.session_id == session_id)
                .order_by(m.Message.seq)
            )
            messages = [message_view(r) for r in rows]
            assistants = [
                assistant_view(a)
                for a in s.scalars(
                    select(m.Assistant)
                    .where(
                        m.Assistant.tenant_id == p.tenant_id, m.Assistant.session_id == session_id
                    )
                    .order_by(m.Assistant.created_at, m.Assistant.name)
                )
            ]
            edits = [
                {
                    "message_id": e.data["message"]["id"],
                    "seq": e.seq,
                    "event": e.name,
                    "by": e.actor_id,
                    "at": iso(e.created_at),
                    "text": e.data["message"]["text"],
                }
                for e in s.scalars(
                    select(m.Event)
                    .where(
                        m.Event.tenant_id == p.tenant_id,
                        m.Event.session_id == session_id,
                        m.Event.name.in_(("message.edited", "message.deleted")),
                    )
                    .order_by(m.Event.seq)
                )
            ]
            files = session_attachments(s, p.tenant_id, session_id, linked_only=True)
            return view, messages, assistants, edits, files

        view, messages, assistants, edits, files = await self.db.read(work)
        participants = await self.service.list_participants(p, session_id)
        document = await self.documents.document(p, session_id)
        return export_document(
            view,
            participants,
            messages,
            assistants,
            document,
            edits,
            iso(utcnow()) or "",
            attachments=files,
        )

    async def session_ids(self, p: Principal) -> AsyncIterator[str]:
        """Every session id of the caller's tenant, oldest first, read a page at a time."""
        after = ""
        while True:

            def page(s: Session, after: str = after) -> list[str]:
                return list(
                    s.scalars(
                        select(m.Session.id)
                        .where(m.Session.tenant_id == p.tenant_id, m.Session.id > after)
                        .order_by(m.Session.id)
                        .limit(PAGE)
                    )
                )

            ids = await self.db.read(page)
            for sid in ids:
                yield sid
            if len(ids) < PAGE:
                return
            after = ids[-1]

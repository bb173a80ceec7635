"""Which attachments a session holds and which messages reference each: what an export of the
session carries (and the manifest of ``AttachmentService.manifest``)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from parley.attachments.views import attachment_view
from parley.storage import models as m


def session_attachments(
    s: Session, tenant_id: str, session_id: str, *, linked_only: bool = False
) -> list[dict[str, Any]]:
    """Every attachment of a session, oldest first, as its view plus ``message_ids`` (the
    messages referencing it). ``linked_only`` leaves out uploads no message references (they
    are garbage waiting for the sweep). The caller has checked the session's read access."""
    rows = s.scalars(
        select(m.Attachment)
        .where(m.Attachment.tenant_id == tenant_id, m.Attachment.session_id == session_id)
        .order_by(m.Attachment.created_at, m.Attachment.id)
    ).all()
    links: dict[str, list[str]] = {}
    for aid, mid in s.execute(
        select(m.MessageAttachment.attachment_id, m.MessageAttachment.message_id)
        .where(m.MessageAttachment.session_id == session_id)
        .order_by(m.MessageAttachment.message_id)
    ):
        links.setdefault(aid, []).append(mid)
    return [
        {**attachment_view(r), "message_ids": links.get(r.id, [])}
        for r in rows
        if links.get(r.id) or not linked_only
    ]

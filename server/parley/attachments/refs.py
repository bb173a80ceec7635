"""Messages' references to attachments, inside the session service's units of work.

A message part ``{"type": "attachment", "attachment_id": "<id>"}`` names an attachment of the
same session. Resolving it replaces the part with the attachment's metadata
(``views.attachment_part``) and records the reference in ``message_attachments``. An id of
another session or tenant, or one that does not exist, is refused with the same error.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from parley.attachments.views import attachment_part
from parley.errors import InvalidRequest
from parley.sessions.queries import plausible_id
from parley.storage import models as m

PART_TYPE = "attachment"
MAX_PER_MESSAGE = 16


def attachment_ids(parts: list[dict[str, Any]] | None) -> list[str]:
    """The attachment ids named by ``parts``, in order, each once (pure)."""
    ids: list[str] = []
    for i, part in enumerate(parts or ()):
        if part.get("type") != PART_TYPE:
            continue
        aid = part.get("attachment_id")
        if not isinstance(aid, str) or not aid:
            raise InvalidRequest(f"parts.{i}: an attachment part needs an attachment_id string")
        if aid not in ids:
            ids.append(aid)
    if len(ids) > MAX_PER_MESSAGE:
        raise InvalidRequest(f"at most {MAX_PER_MESSAGE} attachments per message")
    return ids


def resolve(
    s: Session, tenant_id: str, session_id: str, parts: list[dict[str, Any]] | None
) -> tuple[list[dict[str, Any]] | None, list[str]]:
    """``parts`` with each attachment part filled in from storage, and the ids referenced."""
    ids = attachment_ids(parts)
    if not ids or parts is None:
        return parts, ids
    rows = {
        r.id: r
        for r in s.scalars(
            select(m.Attachment).where(
                m.Attachment.id.in_([i for i in ids if plausible_id(i)]),
                m.Attachment.tenant_id == tenant_id,
                m.Attachment.session_id == session_id,
            )
        )
    }
    for aid in ids:
        if aid not in rows:
            raise InvalidRequest(f"attachment {aid[:80]!r} is not in this session")
    out = [
        attachment_part(rows[p["attachment_id"]]) if p.get("type") == PART_TYPE else p
        for p in parts
    ]
    return out, ids


def link(s: Session, session_id: str, message_id: str, ids: list[str]) -> None:
    """Make the message reference exactly ``ids`` (replacing what it referenced before)."""
    s.execute(delete(m.MessageAttachment).where(m.MessageAttachment.message_id == message_id))
    s.add_all(
        m.MessageAttachment(message_id=message_id, attachment_id=aid, session_id=session_id)
        for aid in ids
    )

"""The wire shape of an attachment, built in one place (REST, message parts, GraphQL)."""

from __future__ import annotations

from typing import Any

from parley.ids import iso
from parley.storage import models as m

API_PREFIX = "/api/v1"


def attachment_url(attachment_id: str) -> str:
    return f"{API_PREFIX}/attachments/{attachment_id}"


def attachment_view(row: m.Attachment) -> dict[str, Any]:
    """Metadata of an attachment (never its bytes); URLs are relative to the server."""
    return {
        "id": row.id,
        "session": row.session_id,
        "name": row.filename,
        "content_type": row.content_type,
        "size": row.size,
        "sha256": row.sha256,
        "width": row.width,
        "height": row.height,
        "url": attachment_url(row.id),
        "thumbnail_url": (
            attachment_url(row.id) + "/thumbnail" if row.thumbnail_sha256 is not None else None
        ),
        "uploaded_by": row.uploader_id,
        "created_at": iso(row.created_at),
    }


def attachment_part(row: m.Attachment) -> dict[str, Any]:
    """The part a message stores for an attachment: the client sends only the id; the server
    fills in the rest, so every reader of the message (events, replay, exports) has the
    metadata without another query. Attachments never change, so the copy never goes stale."""
    view = attachment_view(row)
    return {
        "type": "attachment",
        "attachment_id": row.id,
        **{k: view[k] for k in ("name", "content_type", "size", "sha256", "width", "height")},
        "url": view["url"],
        "thumbnail_url": view["thumbnail_url"],
    }

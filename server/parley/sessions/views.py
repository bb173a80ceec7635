"""What the domain hands out: plain dictionaries in the wire shape, built in one place."""

from __future__ import annotations

from typing import Any

from parley.ids import iso
from parley.storage import models as m


def session_view(row: m.Session, tags: list[str]) -> dict[str, Any]:
    return {
        "id": row.id,
        "title": row.title,
        "metadata": row.meta,
        "tags": sorted(tags),
        "status": row.status,
        "visibility": row.visibility,
        "created_by": row.created_by,
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
        "last_seq": row.last_seq,
    }


def message_view(row: m.Message) -> dict[str, Any]:
    return {
        "id": row.id,
        "session": row.session_id,
        "seq": row.seq,
        "author": row.author_id,
        "parent_id": row.parent_id,
        "text": row.text,
        "parts": row.parts,
        "metadata": row.meta,
        "client_id": row.client_id,
        "created_at": iso(row.created_at),
        "edited_at": iso(row.edited_at),
        "deleted_at": iso(row.deleted_at),
    }


def new_message_view(row: dict[str, Any]) -> dict[str, Any]:
    """The view of a message just inserted from ``row`` (its columns by table key)."""
    return {
        "id": row["id"],
        "session": row["session_id"],
        "seq": row["seq"],
        "author": row["author_id"],
        "parent_id": row["parent_id"],
        "text": row["text"],
        "parts": row["parts"],
        "metadata": row["metadata"],
        "client_id": row["client_id"],
        "created_at": iso(row["created_at"]),
        "edited_at": None,
        "deleted_at": None,
    }


def participant_view(row: m.Participant, user: m.User | None) -> dict[str, Any]:
    return {
        "user_id": row.user_id,
        "role": row.role,
        "name": user.display_name if user else row.user_id,
        "kind": user.kind if user else "human",
        "joined_at": iso(row.joined_at),
    }


def event_row_view(row: dict[str, Any]) -> dict[str, Any]:
    """The ``event`` frame of an event row (its columns by table key), as ``event_view``."""
    return {
        "type": "event",
        "session": row["session_id"],
        "seq": row["seq"],
        "event": row["name"],
        "data": row["data"],
        "actor": row["actor_id"],
        "ts": iso(row["created_at"]),
    }


def event_view(row: m.Event) -> dict[str, Any]:
    """A stored event as the ``event`` frame clients receive."""
    return {
        "type": "event",
        "session": row.session_id,
        "seq": row.seq,
        "event": row.name,
        "data": row.data,
        "actor": row.actor_id,
        "ts": iso(row.created_at),
    }

"""The session export format (``parley.session``, version 1), built from plain views. No I/O.

Everything a session holds: the session, participants, every message with its place in the
tree (``parent_id``; ``branches`` lists where the tree forks), tombstones and the history of
edits and deletions (``edits``, from the event log), the
collaborative document (notes, annotations, labels, pins), assistants and their usage, and the
attachments messages reference (metadata, and where an archive holds their bytes).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

FORMAT = "parley.session"
VERSION = 1
FILES_DIR = "files/"


def branches(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages with more than one reply, and their replies in seq order."""
    children: dict[str, list[str]] = defaultdict(list)
    for msg in messages:
        if msg["parent_id"] is not None:
            children[msg["parent_id"]].append(msg["id"])
    return [{"message_id": k, "children": v} for k, v in children.items() if len(v) > 1]


def usage(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """Token usage and cost of assistant answers, per author and in total."""
    per: dict[str, dict[str, Any]] = {}
    total = {"messages": 0, "input_tokens": 0, "output_tokens": 0, "cost": 0.0}
    for msg in messages:
        meta = msg.get("metadata") or {}
        used = meta.get("usage")
        if not isinstance(used, dict):
            continue
        entry = per.setdefault(
            msg["author"], {"messages": 0, "input_tokens": 0, "output_tokens": 0, "cost": 0.0}
        )
        for bucket in (entry, total):
            bucket["messages"] += 1
            bucket["input_tokens"] += int(used.get("input_tokens") or 0)
            bucket["output_tokens"] += int(used.get("output_tokens") or 0)
            cost = meta.get("cost")
            bucket["cost"] += float(cost) if isinstance(cost, int | float) else 0.0
    return {"by_author": per, "total": total}


def export_document(
    session: dict[str, Any],
    participants: list[dict[str, Any]],
    messages: list[dict[str, Any]],
    assistants: list[dict[str, Any]],
    document: dict[str, Any],
    edits: list[dict[str, Any]],
    exported_at: str,
    *,
    attachments: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The export of one session from its REST views (messages in seq order; ``edits`` the
    history of edits and deletions from the event log, in seq order; ``attachments`` the
    session's files that messages reference, each with ``message_ids``)."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "exported_at": exported_at,
        "session": {k: session[k] for k in SESSION_FIELDS},
        "participants": participants,
        "messages": [{k: msg[k] for k in MESSAGE_FIELDS} for msg in messages],
        "branches": branches(messages),
        "edits": edits,
        "document": {k: document.get(k) for k in ("notes", "annotations", "labels", "pins")},
        "assistants": [{k: a[k] for k in ASSISTANT_FIELDS} for a in assistants],
        "usage": usage(messages),
        "attachments": [
            {**{k: a[k] for k in ATTACHMENT_FIELDS}, "file": file_name(a["sha256"])}
            for a in attachments or []
        ],
    }


def file_name(sha256: str) -> str:
    """Where an archive (tenant or session zip) holds the bytes of a file: once per content."""
    return f"{FILES_DIR}{sha256}"


SESSION_FIELDS = (
    "id",
    "title",
    "metadata",
    "tags",
    "status",
    "created_by",
    "created_at",
    "updated_at",
    "last_seq",
)
MESSAGE_FIELDS = (
    "id",
    "seq",
    "author",
    "parent_id",
    "text",
    "parts",
    "metadata",
    "created_at",
    "edited_at",
    "deleted_at",
)
ASSISTANT_FIELDS = (
    "id",
    "name",
    "user_id",
    "provider",
    "model",
    "system_prompt",
    "params",
    "trigger",
    "busy_policy",
    "context_window",
    "max_output_tokens",
)
ATTACHMENT_FIELDS = (
    "id",
    "name",
    "content_type",
    "size",
    "sha256",
    "width",
    "height",
    "uploaded_by",
    "created_at",
    "message_ids",
)

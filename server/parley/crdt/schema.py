"""The session document's schema, who may write which part of it, and its JSON views. No I/O.

Root types (see docs/documents.md for the full description)::

    annotations  Y.Map   annotation id -> Y.Map {id, message_id, range, kind, body, author,
                                                 created, resolved, resolved_by, resolved_at,
                                                 replies: Y.Array of {id, author, body, created}}
    notes        Y.Text  the session's shared notes
    labels       Y.Map   label name -> {color, description}: the vocabulary of label annotations
    pins         Y.Array message ids pinned by the team, in display order

The schema is closed: an update that names another root type is refused, so every root the
server holds has a known type and permission checks can see every change (``guard.py``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from enum import Enum
from typing import Any

import orjson
from pycrdt import Array, Doc, Map, Text

from parley.governance.auth import Principal
from parley.sessions.rules import Role

ANNOTATIONS = "annotations"
NOTES = "notes"
LABELS = "labels"
PINS = "pins"

ROOTS: dict[str, type[Map[Any] | Text | Array[Any]]] = {
    ANNOTATIONS: Map,
    NOTES: Text,
    LABELS: Map,
    PINS: Array,
}

ANNOTATION_KINDS = ("comment", "highlight", "label")
# Fields of someone else's annotation a commenter may set: resolving is part of commenting.
RESOLVE_FIELDS = frozenset({"resolved", "resolved_by", "resolved_at"})


class Scope(Enum):
    """What a client may change in the document."""

    NOTHING = "nothing"  # viewers, and everyone in an archived session
    ANNOTATIONS = "annotations"  # commenters: add, answer and resolve annotations
    EVERYTHING = "everything"  # owners and editors


def scope_for(role: Role, *, archived: bool) -> Scope:
    """The write scope of a role. Non-participants are given ``Role.VIEWER`` by the caller."""
    if archived or role is Role.VIEWER:
        return Scope.NOTHING
    if role is Role.COMMENTER:
        return Scope.ANNOTATIONS
    return Scope.EVERYTHING


def define_roots(doc: Doc[Any]) -> dict[str, Any]:
    """Give the document its typed roots (no update is produced: roots exist implicitly)."""
    return {name: doc.get(name, type=kind) for name, kind in ROOTS.items()}


def plain(value: Any) -> Any:
    """A shared type or a plain value as plain Python data."""
    to_py = getattr(value, "to_py", None)
    return to_py() if callable(to_py) else value


# -- awareness ---------------------------------------------------------------------------------


def color_for(user_id: str) -> str:
    """A stable colour per user, for clients that do not pick one."""
    digest = hashlib.sha256(user_id.encode()).digest()
    hue = int.from_bytes(digest[:2], "big") % 360
    return f"hsl({hue}, 70%, 45%)"


def stamp_awareness(state_json: str, principal: Principal) -> str:
    """Check a client's awareness state and stamp who it is.

    The state must be a JSON object. ``user.id`` and ``user.name`` are overwritten with the
    authenticated identity, so presence cannot be spoofed; ``user.color`` is filled in when
    missing. Everything else (``viewing``, ``selection``, ``typing``...) is kept as sent.
    Raises ``ValueError`` for anything that is not a JSON object.
    """
    state = orjson.loads(state_json)
    if not isinstance(state, dict):
        raise ValueError("an awareness state must be a JSON object")
    user = state.get("user")
    user = dict(user) if isinstance(user, dict) else {}
    user["id"] = principal.user_id
    user["name"] = principal.name
    if not isinstance(user.get("color"), str):
        user["color"] = color_for(principal.user_id)
    state["user"] = user
    return orjson.dumps(state).decode()


# -- views -------------------------------------------------------------------------------------


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _int(value: Any) -> int | None:
    # Yjs numbers are doubles: 3 arrives as 3.0
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value) if float(value).is_integer() else None


def _range(value: Any) -> dict[str, int] | None:
    if not isinstance(value, Mapping):
        return None
    start, end = _int(value.get("start")), _int(value.get("end"))
    if start is None or end is None:
        return None
    return {"start": start, "end": end}


def reply_view(raw: Any) -> dict[str, Any] | None:
    raw = plain(raw)
    if not isinstance(raw, Mapping):
        return None
    return {
        "id": _str(raw.get("id")),
        "author": _str(raw.get("author")),
        "body": _str(raw.get("body")) or "",
        "created": _str(raw.get("created")),
    }


def annotation_view(key: str, raw: Any) -> dict[str, Any] | None:
    """One annotation as plain JSON, tolerant of what clients put there (None if unusable)."""
    raw = plain(raw)
    if not isinstance(raw, Mapping):
        return None
    replies = raw.get("replies")
    return {
        "id": _str(raw.get("id")) or key,
        "message_id": _str(raw.get("message_id")),
        "range": _range(raw.get("range")),
        "kind": _str(raw.get("kind")) or "comment",
        "body": _str(raw.get("body")) or "",
        "author": _str(raw.get("author")),
        "created": _str(raw.get("created")),
        "resolved": raw.get("resolved") is True,
        "resolved_by": _str(raw.get("resolved_by")),
        "resolved_at": _str(raw.get("resolved_at")),
        "replies": [
            r for r in (reply_view(x) for x in (replies if isinstance(replies, list) else [])) if r
        ],
    }


def annotations_view(doc: Doc[Any], *, message_id: str | None = None) -> list[dict[str, Any]]:
    """Every usable annotation, oldest first (by ``created``, then id)."""
    root = doc.get(ANNOTATIONS, type=Map)
    items = []
    for key, raw in root.items():
        view = annotation_view(key, raw)
        if view is None or (message_id is not None and view["message_id"] != message_id):
            continue
        items.append(view)
    items.sort(key=lambda a: (a["created"] or "", a["id"]))
    return items


def document_view(doc: Doc[Any]) -> dict[str, Any]:
    """The whole document as plain JSON (the read-only REST view)."""
    labels = plain(doc.get(LABELS, type=Map))
    pins = plain(doc.get(PINS, type=Array))
    return {
        "notes": str(doc.get(NOTES, type=Text)),
        "annotations": annotations_view(doc),
        "labels": labels if isinstance(labels, dict) else {},
        "pins": [p for p in pins if isinstance(p, str)] if isinstance(pins, list) else [],
    }


def annotation_status(view: dict[str, Any] | None) -> tuple[bool, bool]:
    """(announced, resolved): an annotation counts as created once it names its message."""
    if view is None:
        return False, False
    return bool(view["message_id"]), bool(view["resolved"])

"""Domain rules with no I/O: what is valid and who may do what in a session."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import orjson

from parley.errors import ErrorCode, InvalidRequest

MAX_TITLE = 500
MAX_TAGS = 32
MAX_TAG_LEN = 64
MAX_METADATA_BYTES = 16 * 1024
MAX_PARTS_BYTES = 256 * 1024


class SessionStatus(StrEnum):
    ACTIVE = "active"
    ARCHIVED = "archived"


class Role(StrEnum):
    """Session roles, strongest first."""

    OWNER = "owner"
    EDITOR = "editor"
    COMMENTER = "commenter"
    VIEWER = "viewer"


# Who may do what with these roles is decided in ``parley.governance.policy``.


def check_storable(label: str, value: Any) -> None:
    """Refuse NUL (U+0000) anywhere in a string, a key or a nested value: JSON allows it, but
    PostgreSQL text and jsonb cannot hold it, and every backend must behave the same."""
    if isinstance(value, str):
        if "\x00" in value:
            raise InvalidRequest(f"{label} contains a NUL character (U+0000), which is not allowed")
    elif isinstance(value, dict):
        for key, item in value.items():
            check_storable(label, key)
            check_storable(label, item)
    elif isinstance(value, list | tuple):
        for item in value:
            check_storable(label, item)


def clean_title(title: str) -> str:
    check_storable("title", title)
    title = title.strip()
    if len(title) > MAX_TITLE:
        raise InvalidRequest(f"title is longer than {MAX_TITLE} characters")
    return title


def clean_tags(tags: list[str]) -> list[str]:
    """Tags are trimmed, lower-cased, unique, and 1-64 characters each."""
    out: list[str] = []
    check_storable("tags", tags)
    for tag in tags:
        norm = tag.strip().lower()
        if not norm or len(norm) > MAX_TAG_LEN:
            raise InvalidRequest(f"tag {tag[:80]!r} must be 1-{MAX_TAG_LEN} characters")
        if norm not in out:
            out.append(norm)
    if len(out) > MAX_TAGS:
        raise InvalidRequest(f"at most {MAX_TAGS} tags per session")
    return out


def check_json_size(label: str, value: Any, limit: int) -> None:
    """Refuse values that are not storable JSON or larger than ``limit`` bytes encoded."""
    check_storable(label, value)
    try:
        size = len(orjson.dumps(value))
    except TypeError as exc:
        raise InvalidRequest(f"{label} is not JSON-serializable: {exc}") from None
    if size > limit:
        raise InvalidRequest(f"{label} is {size} bytes encoded; the limit is {limit}")


def check_text(text: str, limit: int) -> None:
    check_storable("text", text)
    if len(text) > limit:
        raise InvalidRequest(
            f"text is {len(text)} characters; the limit is {limit}",
            code=ErrorCode.TEXT_TOO_LONG,
        )


def check_client_id(client_id: str | None) -> None:
    """An idempotency key: 1-128 characters, no NUL (the socket schema checks the same)."""
    if client_id is None:
        return
    if not 1 <= len(client_id) <= 128:
        raise InvalidRequest("client_id (or Idempotency-Key) must be 1-128 characters")
    check_storable("client_id", client_id)

"""Typed views of what the server sends: messages, sessions, participants, events.

Each keeps the frame or body it came from in ``raw``, so fields added by newer servers are
still reachable without an SDK upgrade.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


@dataclass(frozen=True, slots=True)
class User:
    """Who the connection is: the ``user`` of the ``welcome`` frame (or ``GET /me``)."""

    id: str
    name: str
    kind: str

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> User:
        return cls(
            id=str(data["id"]), name=str(data.get("name") or data["id"]), kind=str(data["kind"])
        )


@dataclass(frozen=True, slots=True)
class Message:
    """One message of a session (the ``Message`` shape of docs/protocol.md)."""

    id: str
    session: str
    seq: int
    author: str
    text: str
    parent_id: str | None
    parts: list[dict[str, Any]] | None
    metadata: dict[str, Any]
    client_id: str | None
    created_at: str
    edited_at: str | None
    deleted_at: str | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Message:
        return cls(
            id=str(data["id"]),
            session=str(data["session"]),
            seq=int(data["seq"]),
            author=str(data["author"]),
            text=str(data.get("text") or ""),
            parent_id=_str(data.get("parent_id")),
            parts=data.get("parts"),
            metadata=dict(data.get("metadata") or {}),
            client_id=_str(data.get("client_id")),
            created_at=str(data.get("created_at") or ""),
            edited_at=_str(data.get("edited_at")),
            deleted_at=_str(data.get("deleted_at")),
            raw=data,
        )

    def mentions(self, *names: str) -> bool:
        """True when the text contains ``@name`` as a word (any case) for one of ``names``."""
        return any(mention_pattern(name).search(self.text) for name in names if name)

    def without_mentions(self, *names: str) -> str:
        """The text with the ``@name`` mentions of ``names`` removed and spaces tidied."""
        text = self.text
        for name in names:
            if name:
                text = mention_pattern(name).sub("", text)
        return " ".join(text.split())


def mention_pattern(name: str) -> re.Pattern[str]:
    """``@name`` as a whole word, any case: the rule the relay uses for assistants' mentions."""
    return re.compile(r"(?<![\w@])@" + re.escape(name) + r"(?![\w-])", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Session:
    """A session as REST and ``session.*`` events describe it."""

    id: str
    title: str | None
    status: str
    tags: list[str]
    metadata: dict[str, Any]
    created_by: str
    last_seq: int
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Session:
        return cls(
            id=str(data["id"]),
            title=_str(data.get("title")),
            status=str(data.get("status") or "active"),
            tags=list(data.get("tags") or []),
            metadata=dict(data.get("metadata") or {}),
            created_by=str(data.get("created_by") or ""),
            last_seq=int(data.get("last_seq") or 0),
            raw=data,
        )


@dataclass(frozen=True, slots=True)
class Participant:
    """A member of a session with a role."""

    user_id: str
    role: str
    name: str
    kind: str

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Participant:
        return cls(
            user_id=str(data["user_id"]),
            role=str(data.get("role") or ""),
            name=str(data.get("name") or data["user_id"]),
            kind=str(data.get("kind") or "human"),
        )


@dataclass(frozen=True, slots=True)
class Presence:
    """A user connected to a session right now (on any server process)."""

    user_id: str
    name: str
    kind: str

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Presence:
        return cls(
            user_id=str(data["user_id"]),
            name=str(data.get("name") or data["user_id"]),
            kind=str(data.get("kind") or "human"),
        )


@dataclass(frozen=True, slots=True)
class Event:
    """One ``event`` frame: durable (``seq`` is its position) or ephemeral (typing, presence,
    stream deltas; ``seq`` only places it roughly)."""

    session: str
    name: str
    seq: int
    data: dict[str, Any]
    ephemeral: bool
    actor: str | None
    ts: str | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_frame(cls, frame: dict[str, Any]) -> Event:
        return cls(
            session=str(frame["session"]),
            name=str(frame["event"]),
            seq=int(frame.get("seq") or 0),
            data=dict(frame.get("data") or {}),
            ephemeral=bool(frame.get("ephemeral")),
            actor=_str(frame.get("actor")),
            ts=_str(frame.get("ts")),
            raw=frame,
        )


@dataclass(frozen=True, slots=True)
class SendResult:
    """The acknowledgement of a message write: it is committed."""

    session: str
    message_id: str
    seq: int
    client_id: str | None
    duplicate: bool


@dataclass(frozen=True, slots=True)
class JoinResult:
    """The acknowledgement of a join: the position reached and who is present."""

    session: str
    seq: int
    replayed: int
    presence: list[Presence]

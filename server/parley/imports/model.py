"""The normalized shape every parser yields, and the per-record error report. No I/O."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any

_UNSAFE = re.compile(r"[^A-Za-z0-9._@+-]+")


def imported_user_id(source: str, raw: str) -> str:
    """A Parley user id for an author of an outside source: ``source.raw`` when ``raw`` is a
    plain identifier, else a readable slug plus a short hash (names with spaces, emoji...)."""
    slug = _UNSAFE.sub("-", raw).strip("-.")[:60]
    if slug == raw and slug and slug[0].isalnum():
        return f"{source}.{raw}"[:128]
    digest = hashlib.sha256(raw.encode()).hexdigest()[:10]
    return f"{source}.{slug or 'user'}-{digest}"[:128]


def aware(ts: datetime) -> datetime:
    """Naive times in exports are taken as UTC."""
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


@dataclass(slots=True)
class ImportedAuthor:
    """Someone who wrote in the conversation. ``user_id`` None means the importing user."""

    user_id: str | None
    name: str
    kind: str = "human"  # human | bot | assistant
    role: str = "editor"


@dataclass(slots=True)
class ImportedMessage:
    """One message. ``parent`` is the external id of the message it answers or branches from."""

    external_id: str
    author: str | None  # an ImportedAuthor.user_id (None: the importing user)
    created_at: datetime
    text: str
    parent: str | None = None
    attachments: list[dict[str, Any]] = field(default_factory=list)  # references only
    metadata: dict[str, Any] = field(default_factory=dict)
    parts: list[dict[str, Any]] | None = None
    edited_at: datetime | None = None
    deleted_at: datetime | None = None
    where: str = ""  # file:line of the record, for errors found while writing it


@dataclass(slots=True)
class ImportedAssistant:
    """An assistant definition (Parley's own exports carry them)."""

    name: str
    user_id: str
    provider: str
    model: str
    system_prompt: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    trigger: str = "mention"
    busy_policy: str = "queue"
    context_window: int | None = None
    max_output_tokens: int | None = None
    old_id: str | None = None


@dataclass(slots=True)
class ImportedFile:
    """The bytes of an attachment inside an archive being imported: how to read them, and
    what the archive's directory says about them (checked before anything is read)."""

    where: str  # "<archive>!files/<sha256>", for errors
    open: Callable[[], IO[bytes]]
    unpacked_size: int
    packed_size: int


@dataclass(slots=True)
class ImportedAttachment:
    """An attachment of a Parley export: its metadata, the (exported) messages referencing
    it, and its bytes when the export is an archive that holds them."""

    old_id: str
    sha256: str
    name: str
    content_type: str
    size: int
    message_ids: list[str]
    uploaded_by: str | None = None
    created_at: datetime | None = None
    file: ImportedFile | None = None


@dataclass(slots=True)
class ImportedConversation:
    """One conversation of an export; it becomes one session."""

    source: str
    external_id: str
    title: str
    messages: list[ImportedMessage]
    authors: list[ImportedAuthor] = field(default_factory=list)
    created_at: datetime | None = None
    tags: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    status: str = "active"
    assistants: list[ImportedAssistant] = field(default_factory=list)
    document: dict[str, Any] | None = None  # notes, annotations, labels, pins (Parley exports)
    files: list[ImportedAttachment] = field(default_factory=list)  # Parley exports' attachments
    where: str = ""  # where the record starts, for errors found while writing it


@dataclass(frozen=True, slots=True)
class RecordError:
    """A record that was skipped: where it is (``file:line`` or a record path) and why."""

    where: str
    problem: str

    def __str__(self) -> str:
        return f"{self.where}: {self.problem}"


@dataclass(frozen=True, slots=True)
class RecordNote:
    """Something skipped on purpose (joins, edits notices, system lines), counted not failed."""

    where: str
    note: str


ParsedItem = ImportedConversation | RecordError | RecordNote


def parse_iso(value: Any) -> datetime | None:
    """An ISO 8601 time (with Z or an offset) or None when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return aware(datetime.fromisoformat(value.replace("Z", "+00:00")))
    except ValueError:
        return None


def from_epoch(value: Any) -> datetime | None:
    """Seconds since the epoch (int, float or numeric string) or None."""
    try:
        return datetime.fromtimestamp(float(value), UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def in_time_order(messages: list[ImportedMessage]) -> list[ImportedMessage]:
    """Original time order, with every parent before its replies (ties keep file order)."""
    by_id = {msg.external_id: msg for msg in messages}
    timed = sorted(range(len(messages)), key=lambda i: (messages[i].created_at, i))
    out: list[ImportedMessage] = []
    done: set[str] = set()
    for index in timed:
        chain: list[ImportedMessage] = []
        msg: ImportedMessage | None = messages[index]
        while msg is not None and msg.external_id not in done:
            done.add(msg.external_id)
            chain.append(msg)
            msg = by_id.get(msg.parent) if msg.parent is not None else None
        out.extend(reversed(chain))
    return out

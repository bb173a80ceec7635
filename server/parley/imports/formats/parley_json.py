"""Parley's own session export (``parley.session`` v1), one file or an archive (a tenant's or
one session's zip: ``sessions/*.json`` and ``files/<sha256>``). Importing it gives back the
same session: messages with their tree, edits and tombstones, participants and roles, tags,
assistants, the document, and (from an archive) the attachment files."""

from __future__ import annotations

import re
import zipfile
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import orjson

from parley.exports.session_json import FILES_DIR, FORMAT, VERSION, file_name
from parley.imports.archives import ArchiveError, open_zip
from parley.imports.model import (
    ImportedAssistant,
    ImportedAttachment,
    ImportedAuthor,
    ImportedConversation,
    ImportedFile,
    ImportedMessage,
    ParsedItem,
    RecordError,
    parse_iso,
)

SOURCE = "parley"
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")


def parse(name: str, data: bytes) -> Iterator[ParsedItem]:
    if data[:4] == b"PK\x03\x04":
        yield from _archive(name, data)
        return
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        yield RecordError(name, f"not valid JSON: {exc}")
        return
    yield from _session(name, doc)


def parse_file(path: Path) -> Iterator[ParsedItem]:
    """Like :func:`parse`, but an archive is read from disk entry by entry, so its attachment
    files are never all in memory (``parley import`` of large tenant archives)."""
    with path.open("rb") as fh:
        zipped = fh.read(4) == b"PK\x03\x04"
    if not zipped:
        yield from parse(path.name, path.read_bytes())
        return
    yield from _archive(path.name, path)


def _archive(name: str, data: bytes | Path) -> Iterator[ParsedItem]:
    try:
        archive = open_zip(data, separate=FILES_DIR)
    except ArchiveError as exc:
        yield RecordError(name, str(exc))
        return
    for entry in sorted(n for n in archive.namelist() if n.endswith(".json")):
        if entry == "manifest.json" or entry.startswith(FILES_DIR):
            continue
        where = f"{name}!{entry}"
        try:
            doc = orjson.loads(archive.read(entry))
        except orjson.JSONDecodeError as exc:
            yield RecordError(where, f"not valid JSON: {exc}")
            continue
        yield from _session(where, doc, _Files(name, archive))


class _Files:
    """The ``files/`` entries of an archive, found by the name an export gives them."""

    def __init__(self, name: str, archive: zipfile.ZipFile) -> None:
        self.name = name
        self.archive = archive

    def get(self, entry: str) -> ImportedFile | None:
        try:
            info = self.archive.getinfo(entry)
        except KeyError:
            return None
        return ImportedFile(
            where=f"{self.name}!{entry}",
            open=partial(self.archive.open, info),
            unpacked_size=info.file_size,
            packed_size=info.compress_size,
        )


def _session(where: str, doc: Any, files: _Files | None = None) -> Iterator[ParsedItem]:
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        yield RecordError(where, f'not a Parley session export (expected "format": "{FORMAT}")')
        return
    if doc.get("version") != VERSION:
        yield RecordError(where, f"export version {doc.get('version')!r} is not supported")
        return
    try:
        yield _conversation(where, doc, files)
    except (KeyError, TypeError, ValueError) as exc:
        yield RecordError(where, f"malformed export: {type(exc).__name__}: {exc}")


def _time(value: Any, label: str) -> Any:
    ts = parse_iso(value)
    if ts is None:
        raise ValueError(f"{label} is not an ISO 8601 time: {value!r}")
    return ts


def _attachments(doc: dict[str, Any], files: _Files | None) -> list[ImportedAttachment]:
    out = []
    for a in doc.get("attachments") or []:
        sha = str(a["sha256"])
        if not _SHA_RE.match(sha):
            raise ValueError(f"attachment {a.get('id')!r}: sha256 {sha[:80]!r} is not a SHA-256")
        entry = a.get("file")
        if entry is not None and entry != file_name(sha):
            raise ValueError(
                f"attachment {a.get('id')!r}: file {str(entry)[:80]!r} is not {file_name(sha)!r}"
            )
        out.append(
            ImportedAttachment(
                old_id=str(a["id"]),
                sha256=sha,
                name=str(a.get("name") or "file"),
                content_type=str(a.get("content_type") or "application/octet-stream"),
                size=int(a["size"]),
                message_ids=[str(i) for i in a.get("message_ids") or []],
                uploaded_by=a.get("uploaded_by"),
                created_at=parse_iso(a.get("created_at")),
                file=files.get(entry) if files is not None and entry is not None else None,
            )
        )
    return out


def _conversation(
    where: str, doc: dict[str, Any], files: _Files | None = None
) -> ImportedConversation:
    session = doc["session"]
    messages = [
        ImportedMessage(
            external_id=str(msg["id"]),
            author=str(msg["author"]),
            created_at=_time(msg["created_at"], f"message {msg['id']} created_at"),
            text=str(msg.get("text") or ""),
            parent=msg.get("parent_id"),
            metadata=dict(msg.get("metadata") or {}),
            parts=msg.get("parts"),
            edited_at=parse_iso(msg.get("edited_at")),
            deleted_at=parse_iso(msg.get("deleted_at")),
        )
        for msg in doc["messages"]
    ]
    authors = [
        ImportedAuthor(
            user_id=str(part["user_id"]),
            name=str(part.get("name") or part["user_id"]),
            kind=str(part.get("kind") or "human"),
            role=str(part.get("role") or "editor"),
        )
        for part in doc.get("participants") or []
    ]
    assistants = [
        ImportedAssistant(
            name=a["name"],
            user_id=a["user_id"],
            provider=a["provider"],
            model=a["model"],
            system_prompt=a.get("system_prompt") or "",
            params=dict(a.get("params") or {}),
            trigger=a.get("trigger") or "mention",
            busy_policy=a.get("busy_policy") or "queue",
            context_window=a.get("context_window"),
            max_output_tokens=a.get("max_output_tokens"),
            old_id=a.get("id"),
        )
        for a in doc.get("assistants") or []
    ]
    return ImportedConversation(
        source=SOURCE,
        external_id=str(session["id"]),
        title=str(session.get("title") or ""),
        messages=messages,
        authors=authors,
        created_at=_time(session["created_at"], "session created_at"),
        tags=list(session.get("tags") or []),
        metadata=dict(session.get("metadata") or {}),
        status=str(session.get("status") or "active"),
        assistants=assistants,
        document=doc.get("document"),
        files=_attachments(doc, files),
        where=where,
    )

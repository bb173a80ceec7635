"""DiscordChatExporter JSON: one channel per file (``guild``, ``channel``, ``messages``).

Each file is one session, named ``#channel (guild)``. Replies (``reference.messageId``) keep
their parent; edits keep ``timestampEdited``; attachments become references. Messages of
types other than ``Default`` and ``Reply`` (joins, pins, thread notices, calls) are skipped
as notes. Errors name ``file:line`` of the message's record."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import orjson

from parley.imports.lines import array_item_lines
from parley.imports.model import (
    ImportedAuthor,
    ImportedConversation,
    ImportedMessage,
    ParsedItem,
    RecordError,
    RecordNote,
    imported_user_id,
    parse_iso,
)

SOURCE = "discord"
KEPT_TYPES = {"Default", "Reply"}
_MESSAGES = re.compile(r'"messages"\s*:\s*\[')


def parse(name: str, data: bytes) -> Iterator[ParsedItem]:
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        yield RecordError(name, f"not valid JSON: {exc}")
        return
    if (
        not isinstance(doc, dict)
        or not isinstance(doc.get("channel"), dict)
        or not isinstance(doc.get("messages"), list)
    ):
        yield RecordError(name, "not a DiscordChatExporter JSON export (channel, messages)")
        return
    text = data.decode("utf-8", "replace")
    found = _MESSAGES.search(text)
    lines = array_item_lines(text, found.start()) if found else []
    guild = doc.get("guild") or {}
    channel = doc["channel"]
    messages: list[ImportedMessage] = []
    authors: dict[str, ImportedAuthor] = {}
    for index, rec in enumerate(doc["messages"]):
        where = f"{name}:{lines[index]}" if index < len(lines) else f"{name}: message {index}"
        if not isinstance(rec, dict) or not rec.get("id"):
            yield RecordError(where, "a message needs an id")
            continue
        if rec.get("type", "Default") not in KEPT_TYPES:
            yield RecordNote(where, f"skipped {rec.get('type')}")
            continue
        when = parse_iso(rec.get("timestamp"))
        if when is None:
            yield RecordError(where, f"timestamp {rec.get('timestamp')!r} is not an ISO 8601 time")
            continue
        author = rec.get("author") or {}
        if not author.get("id"):
            yield RecordError(where, "a message needs an author with an id")
            continue
        person = ImportedAuthor(
            imported_user_id(SOURCE, str(author["id"])),
            str(author.get("nickname") or author.get("name") or author["id"]),
            "bot" if author.get("isBot") else "human",
        )
        authors[person.user_id or ""] = person
        reference = rec.get("reference") or {}
        attachments: list[dict[str, Any]] = [
            {"name": a.get("fileName"), "url": a.get("url"), "size": a.get("fileSizeBytes")}
            for a in rec.get("attachments") or []
            if isinstance(a, dict)
        ]
        messages.append(
            ImportedMessage(
                external_id=str(rec["id"]),
                author=person.user_id,
                created_at=when,
                text=str(rec.get("content") or ""),
                parent=str(reference["messageId"]) if reference.get("messageId") else None,
                attachments=attachments,
                edited_at=parse_iso(rec.get("timestampEdited")),
                metadata={"pinned": True} if rec.get("isPinned") else {},
                where=where,
            )
        )
    channel_name = str(channel.get("name") or channel.get("id"))
    title = f"#{channel_name}" + (f" ({guild['name']})" if guild.get("name") else "")
    yield ImportedConversation(
        source=SOURCE,
        external_id=str(channel.get("id") or channel_name),
        title=title,
        messages=messages,
        authors=list(authors.values()),
        tags=["discord"],
        metadata={
            "source": "discord",
            "guild": guild.get("name"),
            "channel": channel_name,
            **({"topic": channel["topic"]} if channel.get("topic") else {}),
        },
        where=name,
    )

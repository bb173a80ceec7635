"""ChatGPT's data export: ``conversations.json`` (or the export zip holding it).

Each conversation is a tree: ``mapping`` holds nodes ``{id, message, parent, children}``, and
every regenerated answer or edited prompt starts another branch. Every branch is kept: a
message's parent is its nearest ancestor that holds a message we keep. Roles map to authors:
``user`` is the importing user, ``assistant`` is ChatGPT, ``system`` and ``tool`` are bots.
Empty system messages (the hidden default prompt) and the empty root are skipped as notes.
JSON has no lines worth naming, so errors name the record: ``conversations.json: record 12
(id=...)``."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import orjson

from parley.imports.archives import ArchiveError, open_zip
from parley.imports.model import (
    ImportedAuthor,
    ImportedConversation,
    ImportedMessage,
    ParsedItem,
    RecordError,
    RecordNote,
    from_epoch,
)

SOURCE = "chatgpt"
ASSISTANT = ImportedAuthor("chatgpt.assistant", "ChatGPT", "assistant")
SYSTEM = ImportedAuthor("chatgpt.system", "System", "bot")
TOOL = ImportedAuthor("chatgpt.tool", "ChatGPT tool", "bot")


def parse(name: str, data: bytes) -> Iterator[ParsedItem]:
    if data[:4] == b"PK\x03\x04":
        try:
            archive = open_zip(data)
            inner = next(n for n in archive.namelist() if n.endswith("conversations.json"))
        except ArchiveError as exc:
            yield RecordError(name, str(exc))
            return
        except StopIteration:
            yield RecordError(name, "a zip without conversations.json")
            return
        name, data = f"{name}!{inner}", archive.read(inner)
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        yield RecordError(name, f"not valid JSON: {exc}")
        return
    if not isinstance(doc, list):
        yield RecordError(name, "expected a list of conversations")
        return
    for index, record in enumerate(doc):
        where = f"{name}: record {index}"
        if isinstance(record, dict):
            where += f" (id={record.get('conversation_id') or record.get('id')})"
        try:
            yield from _conversation(where, record)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            yield RecordError(where, f"unreadable conversation: {type(exc).__name__}: {exc}")


def _text(content: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """Text and attachment references of a message's content (ValueError if unknown)."""
    kind = content.get("content_type")
    attachments: list[dict[str, Any]] = []
    if kind in ("text", "multimodal_text"):
        texts = []
        for part in content.get("parts") or []:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, dict):
                attachments.append(
                    {
                        "name": part.get("asset_pointer") or part.get("name") or "attachment",
                        "content_type": part.get("content_type"),
                    }
                )
        return "\n".join(t for t in texts if t), attachments
    if kind == "code":
        return "```\n" + str(content.get("text") or "") + "\n```", attachments
    if kind in ("tether_quote", "tether_browsing_display", "execution_output"):
        return str(content.get("text") or content.get("result") or ""), attachments
    raise ValueError(f"content type {kind!r} is not supported")


def _conversation(where: str, record: Any) -> Iterator[ParsedItem]:
    if not isinstance(record, dict) or not isinstance(record.get("mapping"), dict):
        yield RecordError(where, "a conversation needs a 'mapping' object of nodes")
        return
    cid = str(record.get("conversation_id") or record.get("id") or "")
    if not cid:
        yield RecordError(where, "a conversation needs an 'id'")
        return
    started = from_epoch(record.get("create_time"))
    mapping: dict[str, Any] = record["mapping"]
    kept: dict[str, ImportedMessage] = {}
    authors: dict[str, ImportedAuthor] = {}
    skipped: set[str] = set()
    errors: list[ParsedItem] = []

    def keep(node_id: str, node: dict[str, Any]) -> None:
        msg = node.get("message")
        if not isinstance(msg, dict):
            skipped.add(node_id)
            return
        role = (msg.get("author") or {}).get("role")
        try:
            text, attachments = _text(msg.get("content") or {})
        except ValueError as exc:
            errors.append(RecordError(f"{where} node {node_id}", str(exc)))
            skipped.add(node_id)
            return
        if not text.strip() and not attachments:
            errors.append(RecordNote(f"{where} node {node_id}", f"empty {role} message"))
            skipped.add(node_id)
            return
        author: ImportedAuthor | None
        if role == "user":
            author = None
        elif role == "assistant":
            author = ASSISTANT
        elif role == "system":
            author = SYSTEM
        elif role == "tool":
            author = TOOL
        else:
            errors.append(RecordError(f"{where} node {node_id}", f"unknown role {role!r}"))
            skipped.add(node_id)
            return
        if author is not None:
            authors[author.user_id or ""] = author
        meta: dict[str, Any] = {"role": role}
        model = (msg.get("metadata") or {}).get("model_slug")
        if model:
            meta["model"] = model
        created: datetime | None = from_epoch(msg.get("create_time")) or started
        if created is None:
            errors.append(RecordError(f"{where} node {node_id}", "no time on the message"))
            skipped.add(node_id)
            return
        kept[node_id] = ImportedMessage(
            external_id=node_id,
            author=author.user_id if author else None,
            created_at=created,
            text=text,
            parent=node.get("parent"),
            attachments=attachments,
            metadata=meta,
            where=f"{where} node {node_id}",
        )

    for node_id, node in mapping.items():
        if isinstance(node, dict):
            keep(str(node_id), node)
    # Point each message at its nearest kept ancestor (skipped nodes are bridged, not lost).
    for msg in kept.values():
        parent, hops = msg.parent, 0
        while parent is not None and parent not in kept and hops <= len(mapping):
            node = mapping.get(parent)
            parent = node.get("parent") if isinstance(node, dict) else None
            hops += 1
        msg.parent = parent if parent in kept else None
    yield from errors
    if not kept:
        yield RecordError(where, "the conversation has no messages")
        return
    yield ImportedConversation(
        source=SOURCE,
        external_id=cid,
        title=str(record.get("title") or "ChatGPT conversation"),
        messages=sorted(kept.values(), key=lambda m: m.created_at),
        authors=list(authors.values()),
        created_at=started,
        tags=["chatgpt"],
        metadata={"source": "chatgpt"},
        where=where,
    )

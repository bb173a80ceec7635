"""Slack workspace export (zip): ``users.json``, ``channels.json`` (and ``groups.json``,
``mpims.json``, ``dms.json`` when present) and one folder per conversation with one JSON
file per day. One session per channel; thread replies (``thread_ts``) become replies to the
thread's first message. Joins, leaves, topic changes and other notices are skipped as notes;
edited messages keep their last text and ``edited_at``. Errors name ``file:line``."""

from __future__ import annotations

import re
import zipfile
from collections.abc import Iterator
from typing import Any

import orjson

from parley.imports.archives import ArchiveError, open_zip
from parley.imports.lines import array_item_lines
from parley.imports.model import (
    ImportedAuthor,
    ImportedConversation,
    ImportedMessage,
    ParsedItem,
    RecordError,
    RecordNote,
    from_epoch,
    imported_user_id,
)

SOURCE = "slack"
KEPT_SUBTYPES = {None, "bot_message", "thread_broadcast", "file_share", "me_message"}
_MENTION = re.compile(r"<@([A-Z0-9]+)(?:\|[^>]*)?>")
_CHANNEL = re.compile(r"<#[A-Z0-9]+\|([^>]*)>")
_LINK = re.compile(r"<((?:https?|mailto):[^>|]+)\|([^>]+)>")
_BARE = re.compile(r"<((?:https?|mailto):[^>]+)>")


def _read_json(archive: zipfile.ZipFile, path: str) -> Any:
    try:
        return orjson.loads(archive.read(path))
    except KeyError:
        return None


def _plain(text: str, names: dict[str, str]) -> str:
    """Slack markup as plain text: mentions by name, channel names, links with their URL."""
    text = _MENTION.sub(lambda m: "@" + names.get(m.group(1), m.group(1)), text)
    text = _CHANNEL.sub(lambda m: "#" + m.group(1), text)
    text = _LINK.sub(lambda m: f"{m.group(2)} ({m.group(1)})", text)
    text = _BARE.sub(lambda m: m.group(1), text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def parse(name: str, data: bytes) -> Iterator[ParsedItem]:
    try:
        archive = open_zip(data)
    except ArchiveError as exc:
        yield RecordError(name, f"not a Slack export zip: {exc}")
        return
    prefix = f"{name}!"
    try:
        users = _read_json(archive, "users.json") or []
    except orjson.JSONDecodeError as exc:
        yield RecordError(prefix + "users.json", f"not valid JSON: {exc}")
        users = []
    people: dict[str, ImportedAuthor] = {}
    for user in users if isinstance(users, list) else []:
        if isinstance(user, dict) and user.get("id"):
            profile = user.get("profile") or {}
            display = (
                user.get("real_name")
                or profile.get("real_name")
                or profile.get("display_name")
                or user.get("name")
                or user["id"]
            )
            people[user["id"]] = ImportedAuthor(
                imported_user_id(SOURCE, user["id"]),
                str(display),
                "bot" if user.get("is_bot") else "human",
            )
    names = {uid: a.name for uid, a in people.items()}
    listed = False
    for listing in ("channels.json", "groups.json", "mpims.json", "dms.json"):
        try:
            channels = _read_json(archive, listing)
        except orjson.JSONDecodeError as exc:
            yield RecordError(prefix + listing, f"not valid JSON: {exc}")
            continue
        if channels is None:
            continue
        listed = True
        for index, channel in enumerate(channels if isinstance(channels, list) else []):
            if not isinstance(channel, dict) or not channel.get("id"):
                yield RecordError(f"{prefix}{listing}: record {index}", "a channel needs an id")
                continue
            folder = str(channel.get("name") or channel["id"])
            yield from _channel(archive, prefix, folder, channel, people, names)
    if not listed:
        yield RecordError(name, "no channels.json: not a Slack export")


def _channel(
    archive: zipfile.ZipFile,
    prefix: str,
    folder: str,
    channel: dict[str, Any],
    people: dict[str, ImportedAuthor],
    names: dict[str, str],
) -> Iterator[ParsedItem]:
    days = sorted(
        n for n in archive.namelist() if n.startswith(folder + "/") and n.endswith(".json")
    )
    messages: list[ImportedMessage] = []
    authors: dict[str, ImportedAuthor] = {}
    for day in days:
        where_file = prefix + day
        raw = archive.read(day)
        try:
            records = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            yield RecordError(where_file, f"not valid JSON: {exc}")
            continue
        if not isinstance(records, list):
            yield RecordError(where_file, "expected a list of messages")
            continue
        lines = array_item_lines(raw.decode("utf-8", "replace"))
        for index, rec in enumerate(records):
            where = f"{where_file}:{lines[index]}" if index < len(lines) else where_file
            ts = str(rec.get("ts") or "") if isinstance(rec, dict) else ""
            created = from_epoch(ts) if ts else None
            if not isinstance(rec, dict) or created is None:
                yield RecordError(where, "a message needs a numeric 'ts'")
                continue
            subtype = rec.get("subtype")
            if subtype not in KEPT_SUBTYPES:
                yield RecordNote(where, f"skipped {subtype}")
                continue
            uid = rec.get("user") or rec.get("bot_id")
            if not uid:
                yield RecordError(where, "a message needs a 'user' or 'bot_id'")
                continue
            author = people.get(uid) or ImportedAuthor(
                imported_user_id(SOURCE, uid),
                str(rec.get("username") or (rec.get("user_profile") or {}).get("real_name") or uid),
                "bot" if rec.get("bot_id") else "human",
            )
            authors[uid] = author
            files = [
                {
                    "name": f.get("name") or f.get("title") or f.get("id"),
                    "url": f.get("url_private") or f.get("permalink"),
                    "content_type": f.get("mimetype"),
                }
                for f in rec.get("files") or []
                if isinstance(f, dict)
            ]
            thread = rec.get("thread_ts")
            edited = rec.get("edited") or {}
            messages.append(
                ImportedMessage(
                    external_id=ts,
                    author=author.user_id,
                    created_at=created,
                    text=_plain(str(rec.get("text") or ""), names),
                    parent=str(thread) if thread and thread != ts else None,
                    attachments=files,
                    edited_at=from_epoch(edited.get("ts")) if isinstance(edited, dict) else None,
                    where=where,
                )
            )
    purpose = (
        (channel.get("purpose") or {}).get("value")
        if isinstance(channel.get("purpose"), dict)
        else None
    )
    yield ImportedConversation(
        source=SOURCE,
        external_id=str(channel["id"]),
        title="#" + folder,
        messages=messages,
        authors=list(authors.values()),
        created_at=from_epoch(channel.get("created")),
        tags=["slack"],
        metadata={
            "source": "slack",
            "channel": folder,
            **({"purpose": purpose} if purpose else {}),
        },
        where=prefix + folder,
    )

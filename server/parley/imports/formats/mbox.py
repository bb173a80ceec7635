"""E-mail in an mbox file: one session per thread.

Messages are split on ``From `` separator lines (so errors say ``file:line`` of the message
they are about) and read with the standard ``email`` package. Threads are built from
``Message-ID``, ``In-Reply-To`` and ``References``: every id a message names joins its
thread, and a reply's parent is the message it answers, so quoted replies stay where they
were. The body is the ``text/plain`` part (HTML reduced to text when there is no plain part),
decoded from its charset; attached files become references. Authors are their addresses."""

from __future__ import annotations

import hashlib
import html
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import getaddresses, parsedate_to_datetime
from typing import Any

from parley.imports.model import (
    ImportedAuthor,
    ImportedConversation,
    ImportedMessage,
    ParsedItem,
    RecordError,
    aware,
    imported_user_id,
)

SOURCE = "email"
_ID = re.compile(r"<([^<>\s]+)>")
_SUBJECT_PREFIX = re.compile(r"^\s*((re|fwd?|aw|sv|wg)\s*(\[\d+\])?\s*:\s*)+", re.IGNORECASE)
_TAG = re.compile(r"<[^>]+>")


@dataclass
class _Mail:
    line: int
    message_id: str
    parent: str | None
    refs: list[str]
    when: datetime
    author: ImportedAuthor
    subject: str
    text: str
    attachments: list[dict[str, Any]]


def _split(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(line number of the ``From `` line, raw message) for each message of the mbox."""
    lines = data.splitlines(keepends=True)
    start: int | None = None
    previous_blank = True
    for number, line in enumerate(lines, 1):
        if line.startswith(b"From ") and previous_blank:
            if start is not None:
                yield start, b"".join(lines[start : number - 1])
            start = number
        previous_blank = not line.strip()
    if start is not None:
        yield start, b"".join(lines[start:])


def _unquote_from(raw: bytes) -> bytes:
    return re.sub(rb"(?m)^>(>*From )", rb"\1", raw)


def _body(msg: EmailMessage) -> tuple[str, list[dict[str, Any]]]:
    attachments: list[dict[str, Any]] = []
    for part in msg.walk():
        if part.is_multipart():
            continue
        if part.get_content_disposition() == "attachment" or (
            part.get_filename() and part.get_content_maintype() != "text"
        ):
            payload = part.get_payload(decode=True)
            attachments.append(
                {
                    "name": part.get_filename() or "attachment",
                    "content_type": part.get_content_type(),
                    "size": len(payload) if isinstance(payload, bytes) else None,
                }
            )
    for kind in ("plain", "html"):
        chosen = msg.get_body(preferencelist=(kind,))
        if chosen is None:
            continue
        try:
            text = str(chosen.get_content())
        except (LookupError, UnicodeDecodeError):
            raw = chosen.get_payload(decode=True)
            text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        if kind == "html":
            text = html.unescape(_TAG.sub("", re.sub(r"(?i)<br\s*/?>|</p>", "\n", text)))
        return text.strip(), attachments
    return "", attachments


def _read(line: int, raw: bytes) -> _Mail:
    """One message (ValueError with the reason when it cannot be used)."""
    body = raw.split(b"\n", 1)[1] if raw.startswith(b"From ") else raw
    msg = BytesParser(policy=policy.default).parsebytes(_unquote_from(body))
    if not isinstance(msg, EmailMessage):
        raise ValueError("not an e-mail message")
    date = msg.get("Date")
    if date is None:
        raise ValueError("no Date header")
    try:
        when = aware(parsedate_to_datetime(str(date)))
    except (TypeError, ValueError):
        raise ValueError(f"unreadable Date header {str(date)[:60]!r}") from None
    senders = getaddresses([str(msg.get("From", ""))])
    name, address = senders[0] if senders else ("", "")
    if not address:
        raise ValueError("no From address")
    subject = str(msg.get("Subject", "")).strip()
    ids = _ID.findall(str(msg.get("Message-ID", "")))
    message_id = (
        ids[0]
        if ids
        else "generated-" + hashlib.sha256(f"{address}|{date}|{subject}".encode()).hexdigest()
    )
    refs = _ID.findall(str(msg.get("References", "")))
    reply_to = _ID.findall(str(msg.get("In-Reply-To", "")))
    parent = reply_to[0] if reply_to else (refs[-1] if refs else None)
    text, attachments = _body(msg)
    author = ImportedAuthor(imported_user_id(SOURCE, address.lower()), name or address, "human")
    return _Mail(line, message_id, parent, refs, when, author, subject, text, attachments)


def parse(name: str, data: bytes) -> Iterator[ParsedItem]:
    mails: list[_Mail] = []
    for line, raw in _split(data):
        try:
            mails.append(_read(line, raw))
        except (ValueError, IndexError) as exc:
            yield RecordError(f"{name}:{line}", str(exc))
    if not mails and not data.startswith(b"From "):
        yield RecordError(name, "no 'From ' separator line: not an mbox file")
        return
    # Threads: union of every id a message names.
    boss: dict[str, str] = {}

    def find(x: str) -> str:
        boss.setdefault(x, x)
        while boss[x] != x:
            boss[x] = boss[boss[x]]
            x = boss[x]
        return x

    for mail in mails:
        for other in [*mail.refs, *([mail.parent] if mail.parent else [])]:
            boss[find(other)] = find(mail.message_id)
        find(mail.message_id)
    threads: dict[str, list[_Mail]] = {}
    for mail in mails:
        threads.setdefault(find(mail.message_id), []).append(mail)
    for members in threads.values():
        members.sort(key=lambda m: m.when)
        first = members[0]
        key = first.refs[0] if first.refs else (first.parent or first.message_id)
        authors = {m.author.user_id: m.author for m in members}
        yield ImportedConversation(
            source=SOURCE,
            external_id=key,
            title=_SUBJECT_PREFIX.sub("", first.subject) or "(no subject)",
            messages=[
                ImportedMessage(
                    external_id=m.message_id,
                    author=m.author.user_id,
                    created_at=m.when,
                    text=m.text,
                    parent=m.parent,
                    attachments=m.attachments,
                    metadata={"subject": m.subject, "message_id": m.message_id},
                    where=f"{name}:{m.line}",
                )
                for m in members
            ],
            authors=list(authors.values()),
            tags=["email"],
            metadata={"source": "email"},
            where=f"{name}:{first.line}",
        )

"""WhatsApp chat export: the ``.txt`` file (or the zip "with media" holding it).

Lines start with a date and time in the phone's format; three families are read::

    12/31/23, 9:41 PM - Name: text         Android, month first, 12-hour clock
    31/12/2023, 21:41 - Name: text         Android, day first
    [31.12.23, 21:41:05] Name: text        iOS
    2023-12-31 21:41 - Name: text          ISO-like

Whether a slashed date is day or month first is decided for the whole file (a first field
over 12 means day first; otherwise month first with a 12-hour clock, day first without).
Lines without a timestamp continue the message above. System lines ("Messages and calls are
end-to-end encrypted", "Bob added Carol") are skipped as notes. ``<Media omitted>`` and
attached files become attachment references. WhatsApp has no message ids, so a message is
named by its time, author and rank among messages with the same both: a grown export of the
same chat re-imports only what is new. The chat is one session named after the file."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any

from parley.imports.archives import ArchiveError, open_zip
from parley.imports.model import (
    ImportedAuthor,
    ImportedConversation,
    ImportedMessage,
    ParsedItem,
    RecordError,
    RecordNote,
    aware,
    imported_user_id,
)

SOURCE = "whatsapp"
_LINE = re.compile(
    r"^\[?(?P<date>\d{1,4}[./-]\d{1,2}[./-]\d{1,4}),?\s+"
    r"(?P<time>\d{1,2}[:.]\d{2}(?:[:.]\d{2})?(?:[\s\u202f]?[AaPp]\.?\s?[Mm]\.?)?)\]?"
    r"(?:\s+-\s+|\s+)(?P<rest>.*)$"
)
_INVISIBLE = str.maketrans("", "", "\u200e\u200f\ufeff")
_MEDIA = {"<media omitted>", "<médias omis>", "<medien ausgeschlossen>", "<multimedia omitido>"}
_ATTACHED = re.compile(r"^<attached: (?P<name>[^>]+)>$|^(?P<file>\S+\.\w{2,5}) \(file attached\)")


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def parse(name: str, data: bytes) -> Iterator[ParsedItem]:
    if data[:4] == b"PK\x03\x04":
        try:
            archive = open_zip(data)
            inner = next(n for n in archive.namelist() if n.endswith(".txt"))
        except ArchiveError as exc:
            yield RecordError(name, str(exc))
            return
        except StopIteration:
            yield RecordError(name, "a zip without a chat .txt file")
            return
        data = archive.read(inner)
        label = f"{name}!{inner}"
        title = PurePosixPath(name).stem
    else:
        label, title = name, PurePosixPath(name).stem
    yield from _chat(label, title, _decode(data).translate(_INVISIBLE).splitlines())


def _day_first(dates: list[str], twelve_hour: bool) -> bool:
    for date in dates:
        parts = re.split(r"[./-]", date)
        if len(parts[0]) == 4:
            continue
        if int(parts[0]) > 12:
            return True
        if int(parts[1]) > 12:
            return False
    return not twelve_hour


def _when(date: str, time: str, day_first: bool) -> datetime:
    parts = [int(p) for p in re.split(r"[./-]", date)]
    if len(str(re.split(r"[./-]", date)[0])) == 4:
        year, month, day = parts
    elif day_first:
        day, month, year = parts
    else:
        month, day, year = parts
    if year < 100:
        year += 2000
    clock = time.replace("\u202f", " ").replace(".", ":").strip()
    meridiem = re.search(r"([AaPp])\s*:?\s*[Mm]:?$", clock)
    numbers = [int(x) for x in re.findall(r"\d+", clock)]
    hour, minute = numbers[0], numbers[1]
    second = numbers[2] if len(numbers) > 2 else 0
    if meridiem:
        hour = hour % 12 + (12 if meridiem.group(1).lower() == "p" else 0)
    return aware(datetime(year, month, day, hour, minute, second))


def _chat(label: str, title: str, lines: list[str]) -> Iterator[ParsedItem]:
    heads = [(i, m) for i, line in enumerate(lines, 1) if (m := _LINE.match(line))]
    if not heads:
        yield RecordError(label, "no line starts with a date and time: not a WhatsApp chat")
        return
    twelve = any(re.search(r"[AaPp]\.?\s?[Mm]", m.group("time")) for _, m in heads)
    day_first = _day_first([m.group("date") for _, m in heads], twelve)
    messages: list[ImportedMessage] = []
    authors: dict[str, ImportedAuthor] = {}
    seen: Counter[tuple[str, str]] = Counter()
    current: ImportedMessage | None = None
    for number, line in enumerate(lines, 1):
        where = f"{label}:{number}"
        match = _LINE.match(line)
        if match is None:
            if current is not None:
                current.text += "\n" + line
            elif line.strip():
                yield RecordError(where, "text before the first dated line")
            continue
        current = None
        try:
            when = _when(match.group("date"), match.group("time"), day_first)
        except (ValueError, IndexError) as exc:
            yield RecordError(where, f"unreadable date or time: {exc}")
            continue
        rest = match.group("rest")
        speaker, sep, text = rest.partition(": ")
        if not sep or len(speaker) > 80:
            yield RecordNote(where, "system line")
            continue
        user_id = imported_user_id(SOURCE, speaker)
        authors.setdefault(speaker, ImportedAuthor(user_id, speaker))
        stamp = when.isoformat()
        seen[(stamp, speaker)] += 1
        attachments: list[dict[str, Any]] = []
        stripped = text.strip()
        attached = _ATTACHED.match(stripped)
        if stripped.lower() in _MEDIA:
            attachments.append({"name": "media omitted from the export"})
            text = ""
        elif attached:
            attachments.append({"name": attached.group("name") or attached.group("file")})
            text = ""
        current = ImportedMessage(
            external_id=f"{stamp}|{speaker}|{seen[(stamp, speaker)]}",
            author=user_id,
            created_at=when,
            text=text,
            attachments=attachments,
            metadata={"line": number},
            where=where,
        )
        messages.append(current)
    yield ImportedConversation(
        source=SOURCE,
        external_id=title,
        title=title,
        messages=messages,
        authors=list(authors.values()),
        tags=["whatsapp"],
        metadata={"source": "whatsapp"},
        where=label,
    )

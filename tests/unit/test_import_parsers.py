"""The import parsers, the JSON line finder, message ordering and template rendering: pure
functions, no database."""

from __future__ import annotations

import io
import zipfile
from datetime import UTC, datetime

import orjson
import pytest

from parley.errors import InvalidRequest
from parley.imports.formats import PARSERS, whatsapp
from parley.imports.keys import message_key
from parley.imports.lines import array_item_lines
from parley.imports.model import (
    ImportedConversation,
    ImportedMessage,
    RecordError,
    RecordNote,
    imported_user_id,
    in_time_order,
)
from parley.templates.library import builtin_templates, validate
from parley.templates.render import render


def conversations(items: list[object]) -> list[ImportedConversation]:
    return [i for i in items if isinstance(i, ImportedConversation)]


def errors(items: list[object]) -> list[str]:
    return [str(i) for i in items if isinstance(i, RecordError)]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("12/31/23, 9:41 PM - Ann: hi", datetime(2023, 12, 31, 21, 41, tzinfo=UTC)),
        ("1/2/24, 12:05 AM - Ann: hi", datetime(2024, 1, 2, 0, 5, tzinfo=UTC)),
        ("1/2/24, 12:05\u202fpm - Ann: hi", datetime(2024, 1, 2, 12, 5, tzinfo=UTC)),
        ("[31.12.23, 21:41:05] Ann: hi", datetime(2023, 12, 31, 21, 41, 5, tzinfo=UTC)),
        ("31/12/2023, 21:41 - Ann: hi", datetime(2023, 12, 31, 21, 41, tzinfo=UTC)),
        ("2023-12-31 21:41 - Ann: hi", datetime(2023, 12, 31, 21, 41, tzinfo=UTC)),
    ],
)
def test_whatsapp_date_styles(line: str, expected: datetime) -> None:
    (conv,) = conversations(list(whatsapp.parse("chat.txt", line.encode())))
    (msg,) = conv.messages
    assert (msg.created_at, msg.text) == (expected, "hi")


def test_whatsapp_day_or_month_first_is_decided_per_file() -> None:
    text = "03/04/24, 10:00 - Ann: first\n13/04/24, 10:00 - Ann: second\n"
    conv = conversations(list(whatsapp.parse("chat.txt", text.encode())))[0]
    assert [m.created_at.month for m in conv.messages] == [4, 4]  # day first: 13 > 12
    text = "03/04/24, 10:00 AM - Ann: first\n"
    conv = conversations(list(whatsapp.parse("chat.txt", text.encode())))[0]
    assert conv.messages[0].created_at.month == 3  # 12-hour clock: month first


def test_whatsapp_zip_with_media_and_text_before_the_first_line() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("_chat.txt", "stray\n[01.02.24, 10:00:00] Ann: IMG-1.jpg (file attached)\n")
        z.writestr("IMG-1.jpg", b"\xff\xd8")
    items = list(whatsapp.parse("WhatsApp Chat - Ann.zip", buf.getvalue()))
    assert errors(items) == [
        "WhatsApp Chat - Ann.zip!_chat.txt:1: text before the first dated line"
    ]
    (conv,) = conversations(items)
    assert conv.title == "WhatsApp Chat - Ann"
    assert conv.messages[0].attachments == [{"name": "IMG-1.jpg"}]


def test_array_item_lines_knows_strings_and_nesting() -> None:
    text = '{"a": "[", "messages": [\n  {"x": "},{"},\n  [1, 2],\n  "s"\n]}'
    assert array_item_lines(text, text.index('"messages"')) == [2, 3, 4]
    assert array_item_lines("no array") == []
    assert array_item_lines("[]") == []


def test_parents_come_before_their_replies_whatever_their_times() -> None:
    t = datetime(2024, 1, 1, tzinfo=UTC)
    late_parent = ImportedMessage("p", None, t.replace(hour=5), "parent")
    early_child = ImportedMessage("c", None, t.replace(hour=1), "child", parent="p")
    other = ImportedMessage("o", None, t.replace(hour=3), "other")
    assert [m.external_id for m in in_time_order([late_parent, early_child, other])] == [
        "p",
        "c",
        "o",
    ]


def test_keys_and_user_ids_are_stable_and_valid() -> None:
    assert message_key("slack", "C1", "1.2") == message_key("slack", "C1", "1.2")
    assert message_key("slack", "C1", "1.2") != message_key("slack", "C2", "1.2")
    assert len(message_key("mbox", "x" * 900, "y" * 900)) <= 128
    assert imported_user_id("slack", "U123") == "slack.U123"
    odd = imported_user_id("whatsapp", "Zoë 🌻")
    assert odd.startswith("whatsapp.Zo-")
    assert odd == imported_user_id("whatsapp", "Zoë 🌻")


def test_chatgpt_bridges_skipped_nodes_and_reports_unknown_roles() -> None:
    doc = [
        {
            "id": "c1",
            "title": "t",
            "create_time": 1700000000,
            "mapping": {
                "r": {"message": None, "parent": None},
                "u": {
                    "parent": "r",
                    "message": {
                        "author": {"role": "user"},
                        "create_time": 1700000001,
                        "content": {"content_type": "text", "parts": ["q"]},
                    },
                },
                "h": {
                    "parent": "u",
                    "message": {
                        "author": {"role": "system"},
                        "content": {"content_type": "text", "parts": [""]},
                    },
                },
                "a": {
                    "parent": "h",
                    "message": {
                        "author": {"role": "assistant"},
                        "create_time": 1700000002,
                        "content": {"content_type": "text", "parts": ["a"]},
                    },
                },
                "z": {
                    "parent": "a",
                    "message": {
                        "author": {"role": "critic"},
                        "content": {"content_type": "text", "parts": ["z"]},
                    },
                },
            },
        }
    ]
    items = list(PARSERS["chatgpt"]("conversations.json", orjson.dumps(doc)))
    assert errors(items) == ["conversations.json: record 0 (id=c1) node z: unknown role 'critic'"]
    assert sum(isinstance(i, RecordNote) for i in items) == 1
    (conv,) = conversations(items)
    by_id = {m.external_id: m for m in conv.messages}
    assert by_id["a"].parent == "u"  # the hidden system node in between is bridged
    assert by_id["u"].author is None


def test_builtin_templates_are_valid_and_render() -> None:
    library = builtin_templates()
    assert set(library) == {
        "brainstorm",
        "code-review",
        "customer-support",
        "retrospective",
        "research",
    }
    out = render(library["research"], {"question": "Why $5?"})
    assert out.title == "Research: Why $5?"
    assert out.notes[0][0].startswith("Question: Why $5?\nNeeded by: \n")


def test_template_rendering_never_evaluates() -> None:
    d = validate({"name": "t", "title": "${x}", "variables": {"x": {}}})
    assert render(d, {"x": "${__import__('os')}"}).title == "${__import__('os')}"
    with pytest.raises(InvalidRequest, match="malformed placeholder"):
        validate({"name": "t", "title": "${x"})
    with pytest.raises(InvalidRequest, match=r"assistants.0.name"):
        validate({"name": "t", "assistants": [{"name": "bad name"}]})


def test_zip_bombs_are_refused_before_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    from parley.imports import archives

    monkeypatch.setattr(archives, "MAX_UNPACKED_BYTES", 10_000)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("channels.json", b"[]")
        z.writestr("general/2024-01-01.json", b" " * 20_000)
    for fmt in ("slack", "chatgpt", "parley-json", "whatsapp"):
        (problem,) = errors(list(PARSERS[fmt]("export.zip", buf.getvalue())))
        assert "would unpack to 20002 bytes" in problem

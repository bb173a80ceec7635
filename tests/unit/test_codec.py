"""Frame decoding: every malformed input maps to one precise error code."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest

from parley.errors import ErrorCode, ProtocolError
from parley.protocol import frames as f
from parley.protocol.codec import decode_raw, frame_ref, parse_frame


def code_of(data: bytes | str) -> ErrorCode:
    with pytest.raises(ProtocolError) as exc:
        parse_frame(decode_raw(data))
    return exc.value.code


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"\xc1", ErrorCode.BAD_ENCODING),  # reserved msgpack byte
        (b"\x92\x01", ErrorCode.BAD_ENCODING),  # truncated array
        (msgpack.packb({"type": "ping"}) + b"\x00", ErrorCode.BAD_ENCODING),  # trailing data
        (msgpack.packb(msgpack.ExtType(5, b"x")), ErrorCode.BAD_ENCODING),
        (msgpack.packb({1: "x"}), ErrorCode.BAD_ENCODING),  # non-string map key
        ("{not json", ErrorCode.BAD_ENCODING),
        ("[1, 2]", ErrorCode.BAD_FRAME),
        ("42", ErrorCode.BAD_FRAME),
        ('{"id": 1}', ErrorCode.BAD_FRAME),
        ('{"type": 7}', ErrorCode.BAD_FRAME),
        ('{"type": "launch"}', ErrorCode.UNKNOWN_TYPE),
        ('{"type": "subscribe"}', ErrorCode.INVALID_FRAME),
        ('{"type": "subscribe", "session": 5}', ErrorCode.INVALID_FRAME),
        ('{"type": "subscribe", "session": "s", "since_seq": "3"}', ErrorCode.INVALID_FRAME),
        ('{"type": "subscribe", "session": "s", "since_seq": -1}', ErrorCode.INVALID_FRAME),
        ('{"type": "send", "session": "s", "text": ["a"]}', ErrorCode.INVALID_FRAME),
        ('{"type": "send", "session": "s", "text": "a", "colour": "red"}', ErrorCode.INVALID_FRAME),
        ('{"type": "send", "session": "s", "parts": [{"no_type": 1}]}', ErrorCode.INVALID_FRAME),
        ('{"type": "ping", "id": true}', ErrorCode.INVALID_FRAME),
        ('{"type": "subscribe", "session": ""}', ErrorCode.INVALID_FRAME),
    ],
)
def test_malformed_frames_get_precise_codes(data: bytes | str, code: ErrorCode) -> None:
    assert code_of(data) is code


def test_invalid_frame_errors_name_the_field() -> None:
    with pytest.raises(ProtocolError) as exc:
        parse_frame(decode_raw('{"type": "subscribe", "session": "s", "since_seq": "x"}'))
    assert exc.value.details[0]["field"] == "since_seq"
    assert "since_seq" in exc.value.message


def test_same_schema_in_both_encodings() -> None:
    raw: dict[str, Any] = {
        "type": "send",
        "id": "a1",
        "session": "s",
        "text": "hi",
        "client_id": "c",
    }
    from_json = parse_frame(
        decode_raw('{"type": "send", "id": "a1", "session": "s", "text": "hi", "client_id": "c"}')
    )
    from_msgpack = parse_frame(decode_raw(msgpack.packb(raw)))
    assert from_json == from_msgpack
    assert isinstance(from_json, f.Send)


@pytest.mark.parametrize(
    ("raw", "ref"),
    [
        ({"id": "x"}, "x"),
        ({"id": 7}, 7),
        ({"id": True}, None),
        ({"id": "y" * 200}, None),
        ([1], None),
    ],
)
def test_frame_ref_only_echoes_usable_ids(raw: Any, ref: Any) -> None:
    assert frame_ref(raw) == ref

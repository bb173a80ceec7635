"""The y-protocol codec against pycrdt's own encoders (the server's code must agree with Yjs)."""

from __future__ import annotations

import pytest
from pycrdt import (
    Awareness,
    Doc,
    Text,
    create_awareness_message,
    create_sync_message,
    create_update_message,
)

from parley.crdt import yprotocol as y


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 2**32, 2**53 - 1])
def test_varuint_round_trip(value: int) -> None:
    assert y.Reader(y.write_varuint(value)).varuint() == value


@pytest.mark.parametrize(("data", "value"), [(b"\x05", 5), (b"\x45", -5), (b"\x80\x01", 64)])
def test_signed_varint(data: bytes, value: int) -> None:
    assert y.Reader(data).varint() == value


def test_messages_match_pycrdt() -> None:
    doc: Doc = Doc()
    doc.get("notes", type=Text).insert(0, "hi")
    step1 = y.parse_message(create_sync_message(doc))
    assert step1 == y.SyncStep1(doc.get_state())
    update = doc.get_update()
    assert y.parse_message(create_update_message(update)) == y.SyncUpdate(update)
    assert y.sync_update(update) == create_update_message(update)
    assert y.sync_step1(doc.get_state()) == create_sync_message(doc)


def test_awareness_round_trip_with_pycrdt() -> None:
    doc: Doc = Doc()
    awareness = Awareness(doc)
    awareness.set_local_state({"user": {"name": "Ann"}, "typing": True})
    message = create_awareness_message(awareness.encode_awareness_update([awareness.client_id]))
    parsed = y.parse_message(message)
    assert isinstance(parsed, y.AwarenessMessage)
    (entry,) = y.decode_awareness(parsed.update)
    assert entry.client_id == awareness.client_id
    assert entry.clock == 1
    assert entry.state == '{"user":{"name":"Ann"},"typing":true}'
    # and back: pycrdt applies what we encode
    other = Awareness(Doc())
    gone = y.AwarenessEntry(entry.client_id, entry.clock + 1, None)
    other.apply_awareness_update(y.encode_awareness([entry]), "test")
    assert other.states[entry.client_id]["typing"] is True
    other.apply_awareness_update(y.encode_awareness([gone]), "test")
    assert entry.client_id not in other.states


def test_small_messages() -> None:
    assert y.parse_message(y.query_awareness()) == y.QueryAwareness()
    assert y.parse_message(y.permission_denied("no")) == y.AuthMessage(True, "no")


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00",
        b"\x00\x00\x05ab",
        b"\x00\x07\x00",
        b"\x09",
        b"\x01\xff\xff\xff\xff\xff\xff\xff\xff",
    ],
)
def test_malformed_messages_raise(data: bytes) -> None:
    with pytest.raises(y.YProtocolError):
        y.parse_message(data)


def test_awareness_with_absurd_count_raises() -> None:
    with pytest.raises(y.YProtocolError):
        y.decode_awareness(y.write_varuint(10_000) + b"\x01\x01")

"""Reading Yjs updates before applying them: root names, structs, malformed input."""

from __future__ import annotations

from typing import Any

import pytest
from pycrdt import Array, Doc, Map, Text, XmlElement, XmlFragment, XmlText

from parley.crdt.updates import (
    EMPTY_UPDATE,
    decode_state_vector,
    has_structs,
    inspect_update,
    novel_part,
)
from parley.crdt.yprotocol import YProtocolError


def recorded(doc: Doc[Any]) -> list[bytes]:
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    return updates


def test_roots_named_by_items_without_neighbours() -> None:
    doc: Doc[Any] = Doc()
    updates = recorded(doc)
    annotations = doc.get("annotations", type=Map)
    annotations["a1"] = Map({"n": 1, "f": 1.5, "o": {"k": [1, None, True, b"\x01"]}, "big": 2**40})
    notes = doc.get("notes", type=Text)
    notes.insert(0, "hello")
    notes.insert(5, "!")  # has a left neighbour: names no root
    notes.format(0, 2, {"bold": True})
    del notes[1:3]
    doc.get("x", type=XmlFragment).children.append(XmlElement("p", {"a": "1"}, [XmlText("t")]))
    doc.get("pins", type=Array).append("m1")
    roots = [inspect_update(u).roots for u in updates]
    assert roots == [
        {"annotations"},
        {"notes"},
        set(),
        set(),
        set(),
        {"x"},
        {"pins"},
    ]
    whole = inspect_update(doc.get_update())
    assert whole.roots == {"annotations", "notes", "x", "pins"}
    assert whole.deleted_ranges >= 1


def test_novel_part_and_empty_updates() -> None:
    doc: Doc[Any] = Doc()
    doc.get("notes", type=Text).insert(0, "abc")
    full = doc.get_update()
    assert novel_part(full, doc.get_state()) == EMPTY_UPDATE
    assert has_structs(novel_part(full, Doc().get_state()))
    assert not has_structs(EMPTY_UPDATE)


@pytest.mark.parametrize("data", [b"\x01", b"\x01\x01\x05\x00\x99", b"\x01\x05"])
def test_malformed_updates_raise(data: bytes) -> None:
    with pytest.raises(YProtocolError):
        inspect_update(data)


def test_garbage_is_not_a_novel_part() -> None:
    with pytest.raises(YProtocolError):
        novel_part(b"\x01\x02garbage", Doc().get_state())


def test_state_vectors_decode_as_yrs_encodes_them() -> None:
    docs: list[Doc[Any]] = [Doc() for _ in range(5)]
    target: Doc[Any] = Doc()
    for n, doc in enumerate(docs):
        doc.get("notes", type=Text).insert(0, "x" * (n * 70 + 1))  # clocks of 1 and 2 bytes
        target.apply_update(doc.get_update())
    expected = {doc.client_id: n * 70 + 1 for n, doc in enumerate(docs)}
    state = target.get_state()
    assert decode_state_vector(state) == expected
    assert decode_state_vector(b"\x00") == {}
    for cut in (0, 1, len(state) - 1):
        with pytest.raises(YProtocolError):
            decode_state_vector(state[:cut])
    with pytest.raises(YProtocolError):
        decode_state_vector(b"\x01" + b"\xff" * 9 + b"\x01\x01")  # an overlong client id

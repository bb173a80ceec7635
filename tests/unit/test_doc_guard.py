"""Write permissions of viewers and commenters, decided on a throw-away copy."""

from __future__ import annotations

from typing import Any

import pytest
from pycrdt import Array, Doc, Map, Text

from parley.crdt.guard import check_write
from parley.crdt.schema import Scope
from parley.crdt.updates import novel_part
from parley.errors import Forbidden


def server_with_annotation(author: str = "ann") -> Doc[Any]:
    doc: Doc[Any] = Doc()
    doc.get("annotations", type=Map)["a1"] = Map(
        {"id": "a1", "message_id": "m1", "author": author, "body": "hm", "resolved": False}
    )
    doc.get("notes", type=Text).insert(0, "notes")
    return doc


def client_of(server: Doc[Any]) -> tuple[Doc[Any], list[bytes]]:
    client: Doc[Any] = Doc()
    client.apply_update(server.get_update())
    updates: list[bytes] = []
    client.observe(lambda event: updates.append(event.update))
    return client, updates


def decide(server: Doc[Any], update: bytes, scope: Scope, user: str = "cat") -> bool:
    return check_write(server, novel_part(update, server.get_state()), scope, user)


def test_a_viewers_sync_step_2_with_nothing_new_is_no_change() -> None:
    server = server_with_annotation()
    del server.get("notes", type=Text)[0:2]  # deletions travel in every step 2
    client, _ = client_of(server)
    step2 = client.get_update(server.get_state())
    assert decide(server, step2, Scope.NOTHING) is False


@pytest.mark.parametrize("scope", [Scope.NOTHING, Scope.ANNOTATIONS])
def test_notes_are_for_editors(scope: Scope) -> None:
    server = server_with_annotation()
    client, updates = client_of(server)
    client.get("notes", type=Text).insert(0, "x")
    with pytest.raises(Forbidden):
        decide(server, updates[-1], scope)
    del client.get("notes", type=Text)[0:3]  # deleting only
    with pytest.raises(Forbidden):
        decide(server, updates[-1], scope)
    assert str(server.get("notes", type=Text)) == "notes"  # the copy took the change, not this


def test_editors_are_not_checked_here_but_a_viewer_adding_an_annotation_is_refused() -> None:
    server = server_with_annotation()
    client, updates = client_of(server)
    client.get("annotations", type=Map)["a2"] = Map({"author": "cat", "message_id": "m1"})
    with pytest.raises(Forbidden):
        decide(server, updates[-1], Scope.NOTHING)
    assert decide(server, updates[-1], Scope.ANNOTATIONS) is True


def test_commenters_add_only_as_themselves() -> None:
    server = server_with_annotation()
    client, updates = client_of(server)
    client.get("annotations", type=Map)["a2"] = Map({"author": "ann", "message_id": "m1"})
    with pytest.raises(Forbidden, match="author"):
        decide(server, updates[-1], Scope.ANNOTATIONS)


def test_commenters_resolve_and_reply_on_others_annotations() -> None:
    server = server_with_annotation(author="ann")
    client, updates = client_of(server)
    a1 = client.get("annotations", type=Map)["a1"]
    with client.transaction():
        a1["resolved"] = True
        a1["resolved_by"] = "cat"
    assert decide(server, updates[-1], Scope.ANNOTATIONS) is True
    server.apply_update(updates[-1])  # a client's updates build on its previous ones
    a1["replies"] = Array([{"id": "r1", "author": "cat", "body": "ok"}])
    assert decide(server, updates[-1], Scope.ANNOTATIONS) is True
    server.apply_update(updates[-1])
    a1["replies"].append({"id": "r2", "author": "ann", "body": "spoofed"})
    with pytest.raises(Forbidden, match="reply"):
        decide(server, updates[-1], Scope.ANNOTATIONS)


def test_commenters_may_not_edit_or_delete_others_annotations() -> None:
    server = server_with_annotation(author="ann")
    client, updates = client_of(server)
    client.get("annotations", type=Map)["a1"]["body"] = "rewritten"
    with pytest.raises(Forbidden):
        decide(server, updates[-1], Scope.ANNOTATIONS)
    client2, updates2 = client_of(server)
    del client2.get("annotations", type=Map)["a1"]
    with pytest.raises(Forbidden):
        decide(server, updates2[-1], Scope.ANNOTATIONS)
    # their own, freely
    own = server_with_annotation(author="cat")
    client3, updates3 = client_of(own)
    client3.get("annotations", type=Map)["a1"]["body"] = "better"
    assert decide(own, updates3[-1], Scope.ANNOTATIONS) is True


def test_updates_waiting_for_unknown_changes_are_refused() -> None:
    server = server_with_annotation()
    client, updates = client_of(server)
    client.get("annotations", type=Map)["a2"] = Map({"author": "cat"})
    client.get("annotations", type=Map)["a2"]["body"] = "x"  # depends on the previous update
    with pytest.raises(Forbidden, match="depends"):
        decide(server, updates[-1], Scope.ANNOTATIONS)

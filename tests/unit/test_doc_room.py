"""A room without sockets: sync, presence, permissions, limits and annotation events."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from pycrdt import Awareness, Doc, Map, Text, create_awareness_message, create_update_message

from parley.crdt import yprotocol as y
from parley.crdt.room import MAX_DEFERRED_RELAYS, Access, Limits, Room
from parley.errors import ErrorCode, ParleyError
from parley.governance.auth import Principal, UserKind
from parley.sessions.rules import Role


@dataclass(eq=False)
class FakePeer:
    key: str
    principal: Principal
    access: Access
    sent: list[Any] = field(default_factory=list)

    def send(self, message: bytes) -> None:
        self.sent.append(y.parse_message(message))

    def presence(self) -> dict[int, str | None]:
        """The latest awareness state per client id this peer was sent."""
        out: dict[int, str | None] = {}
        for m in self.sent:
            if isinstance(m, y.AwarenessMessage):
                for e in y.decode_awareness(m.update):
                    out[e.client_id] = e.state
        return out


def peer(user: str, role: Role = Role.EDITOR, *, archived: bool = False) -> FakePeer:
    p = Principal(tenant_id="t", user_id=user, name=user.title(), kind=UserKind.HUMAN)
    return FakePeer(key=user, principal=p, access=Access(role, archived))


def room(**limits: int) -> Room:
    clock = iter(range(1000, 100000))
    return Room("t", "s", Limits(**limits), clock=lambda: float(next(clock)))


def recording(start: bytes | None = None) -> tuple[Doc[Any], list[bytes]]:
    """A client's document (holding ``start``, if given) and the list of the updates it makes
    from now on."""
    doc: Doc[Any] = Doc()
    if start is not None:
        doc.apply_update(start)
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    return doc, updates


def update_of(change: Any) -> bytes:
    """The update a client produces for ``change(doc)``."""
    doc, updates = recording()
    change(doc)
    return updates[-1]


def presence_message(client: Awareness, state: dict[str, Any] | None) -> bytes:
    client.set_local_state(state)
    return create_awareness_message(client.encode_awareness_update([client.client_id]))


def test_join_then_updates_reach_the_others_and_not_the_sender() -> None:
    r = room()
    a, b = peer("a"), peer("b")
    r.join(a)
    r.join(b)
    assert a.sent == [y.SyncStep1(r.state_vector())]  # nobody present yet: no awareness
    update = update_of(lambda d: d.get("notes", type=Text).insert(0, "hi"))
    effects = r.receive(a, create_update_message(update))
    assert effects.update is not None
    assert isinstance(b.sent[-1], y.SyncUpdate)
    assert len(a.sent) == 1
    assert str(r.doc.get("notes", type=Text)) == "hi"
    # the same update again changes nothing and goes nowhere
    assert not r.receive(a, create_update_message(update))


def test_sync_step_1_is_answered_with_what_the_client_lacks() -> None:
    r = room()
    a = peer("a")
    r.join(a)
    r.receive(
        a, create_update_message(update_of(lambda d: d.get("notes", type=Text).insert(0, "x")))
    )
    r.receive(a, y.sync_step1(Doc().get_state()))
    reply = a.sent[-1]
    assert isinstance(reply, y.SyncStep2)
    fresh: Doc[Any] = Doc()
    fresh.apply_update(reply.update)
    assert str(fresh.get("notes", type=Text)) == "x"


def test_presence_late_joiners_and_leaving() -> None:
    r = room()
    a, b = peer("a"), peer("b")
    r.join(a)
    r.join(b)
    me = Awareness(Doc())
    effects = r.receive(a, presence_message(me, {"user": {"name": "Fake", "id": "x"}}))
    (state,) = b.presence().values()
    assert state is not None
    assert '"id":"a"' in state  # stamped with who it really is
    assert '"name":"A"' in state
    assert effects.awareness
    # the sender's echo carries its own clock, so its client ignores it
    echo = y.decode_awareness(a.sent[-1].update)[0]
    assert echo.clock == me.meta[me.client_id]["clock"]
    late = peer("c")
    r.join(late)
    assert list(late.presence()) == [me.client_id]
    effects = r.leave(a)
    assert b.presence()[me.client_id] is None
    assert late.presence()[me.client_id] is None
    assert effects.awareness == [(me.client_id, None)]


def test_echoed_presence_of_others_is_dropped() -> None:
    r = room()
    a, b = peer("a"), peer("b")
    r.join(a)
    r.join(b)
    a_aw, b_aw = Awareness(Doc()), Awareness(Doc())
    r.receive(a, presence_message(a_aw, {"n": 1}))
    r.receive(b, presence_message(b_aw, {"n": 2}))
    # b re-sends a's entry (as y-websocket does for every change it hears of)
    echo = create_awareness_message(a_aw.encode_awareness_update([a_aw.client_id]))
    assert not r.receive(b, echo)
    r.leave(b)
    assert r.awareness.owner_of(a_aw.client_id) == "peer:a"


def test_viewers_are_refused_and_nothing_changes() -> None:
    r = room()
    v, e = peer("v", Role.VIEWER), peer("e")
    r.join(v)
    r.join(e)
    update = update_of(lambda d: d.get("notes", type=Text).insert(0, "x"))
    with pytest.raises(ParleyError) as info:
        r.receive(v, create_update_message(update))
    assert info.value.code == ErrorCode.FORBIDDEN
    assert str(r.doc.get("notes", type=Text)) == ""
    assert len(e.sent) == 1
    archived = peer("o", Role.OWNER, archived=True)
    r.join(archived)
    with pytest.raises(ParleyError) as info:
        r.receive(archived, create_update_message(update))
    assert info.value.code == ErrorCode.SESSION_ARCHIVED


def test_the_schema_is_closed() -> None:
    r = room()
    e = peer("e")
    r.join(e)
    with pytest.raises(ParleyError, match="no root type 'other'"):
        r.receive(
            e, create_update_message(update_of(lambda d: d.get("other", type=Text).insert(0, "x")))
        )


def test_limits() -> None:
    r = room(max_update_bytes=1024, max_doc_bytes=4096)
    e = peer("e")
    r.join(e)
    big = update_of(lambda d: d.get("notes", type=Text).insert(0, "x" * 2000))
    with pytest.raises(ParleyError) as info:
        r.receive(e, create_update_message(big))
    assert info.value.code == ErrorCode.UPDATE_TOO_LARGE
    doc, updates = recording()
    notes = doc.get("notes", type=Text)
    with pytest.raises(ParleyError) as info:  # noqa: PT012 - fill up to the limit, then over it
        for _ in range(10):
            notes.insert(len(notes), "y" * 900)
            r.receive(e, create_update_message(updates[-1]))
    assert info.value.code == ErrorCode.DOCUMENT_TOO_LARGE
    assert len(r.encode_state()) <= 4096
    with pytest.raises(ParleyError) as info:
        r.receive(e, b"\x00\x02\x03abc")
    assert info.value.code == ErrorCode.BAD_DOC_MESSAGE


def test_annotation_events_are_announced_by_the_process_of_the_writer() -> None:
    r = room()
    e = peer("e")
    r.join(e)
    doc, updates = recording()
    annotations = doc.get("annotations", type=Map)
    annotations["a1"] = Map({"id": "a1", "author": "e", "body": "draft"})  # no message yet
    assert r.receive(e, create_update_message(updates[-1])).events == []
    annotations["a1"]["message_id"] = "m1"
    (created,) = r.receive(e, create_update_message(updates[-1])).events
    assert created[0] == "annotation.created"
    assert created[1]["annotation"]["message_id"] == "m1"
    annotations["a1"]["resolved"] = True
    (resolved,) = r.receive(e, create_update_message(updates[-1])).events
    assert resolved[0] == "annotation.resolved"
    # the same kind of change relayed from another process is not announced again here
    other = room()
    other.apply_remote(doc.get_update())
    assert other._announced["a1"] == (True, True)


def test_deferred_relays_reach_each_peer_merged_and_never_its_own() -> None:
    clock = iter(range(1000, 100000))
    r = Room("t", "s", Limits(), clock=lambda: float(next(clock)), defer_relays=True)
    a, b, c = peer("a"), peer("b"), peer("c")
    for p in (a, b, c):
        r.join(p)
    writers: dict[str, Doc[Any]] = {"a": Doc(), "b": Doc()}
    outbox: list[tuple[FakePeer, bytes]] = []
    for name, p in (("a", a), ("b", b)):
        writers[name].observe(lambda event, p=p: outbox.append((p, event.update)))
    writers["a"].get("notes", type=Text).insert(0, "aa")
    writers["a"].get("notes", type=Text).insert(2, "A")
    writers["b"].get("labels", type=Map)["k"] = "b"
    for p, update in outbox:
        r.receive(p, create_update_message(update))
    assert r.relays_pending
    assert all(len(p.sent) == 1 for p in (a, b, c))  # sync step 1 only, so far

    def received(p: FakePeer) -> Doc[Any]:
        doc: Doc[Any] = Doc()
        for m in p.sent:
            if isinstance(m, y.SyncUpdate):
                doc.apply_update(m.update)
        return doc

    r.flush_relays()
    assert not r.relays_pending
    assert [type(m) for m in c.sent] == [y.SyncStep1, y.SyncUpdate]  # three updates, one message
    whole = received(c)
    assert str(whole.get("notes", type=Text)) == "aaA"
    assert whole.get("labels", type=Map).to_py() == {"k": "b"}
    assert str(received(a).get("notes", type=Text)) == ""
    assert received(a).get("labels", type=Map).to_py() == {"k": "b"}
    assert str(received(b).get("notes", type=Text)) == "aaA"
    assert received(b).get("labels", type=Map).to_py() == {}
    # anything else sent to a peer first delivers the updates it is still owed
    writers["a"].get("notes", type=Text).insert(0, "z")
    r.receive(a, create_update_message(outbox[-1][1]))
    r.receive(b, y.sync_step1(Doc().get_state()))
    assert [type(m) for m in b.sent[-2:]] == [y.SyncUpdate, y.SyncStep2]


def test_deferred_relays_go_out_once_enough_piled_up() -> None:
    r = Room("t", "s", Limits(), defer_relays=True)
    a, b = peer("a"), peer("b")
    r.join(a)
    r.join(b)
    doc, updates = recording()
    notes = doc.get("notes", type=Text)
    for i in range(MAX_DEFERRED_RELAYS):
        notes.insert(i, "x")
    for update in updates[:-1]:
        r.receive(a, create_update_message(update))
    assert len(b.sent) == 1
    r.receive(a, create_update_message(updates[-1]))
    assert not r.relays_pending
    (relayed,) = b.sent[1:]
    copy: Doc[Any] = Doc()
    copy.apply_update(relayed.update)
    assert str(copy.get("notes", type=Text)) == "x" * MAX_DEFERRED_RELAYS


def test_an_update_that_integrates_waiting_changes_does_not_confuse_later_checks() -> None:
    r = room()
    e = peer("e")
    r.join(e)
    source, updates = recording()
    notes = source.get("notes", type=Text)
    notes.insert(0, "a")
    notes.insert(1, "b")
    first, second = updates
    r.apply_remote(second)  # waits inside the document for the first
    r.receive(e, create_update_message(first))  # integrates both
    assert str(r.doc.get("notes", type=Text)) == "ab"
    follower, follower_updates = recording(source.get_update())
    follower.get("notes", type=Text).insert(2, "c")  # builds on "b", integrated indirectly
    assert r.receive(e, create_update_message(follower_updates[-1])).update is not None
    assert str(r.doc.get("notes", type=Text)) == "abc"

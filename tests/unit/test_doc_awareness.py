"""The presence table: owners, clocks a reconnecting client can beat, expiry."""

from __future__ import annotations

from parley.crdt.awareness import AwarenessTable

A = "peer:a"
B = "peer:b"
P2 = "proc:p2"
P3 = "proc:p3"


def test_clocks_always_beat_what_was_relayed_before() -> None:
    table = AwarenessTable()
    first = table.set_local(7, '{"x":1}', A, now=100.0)
    assert first is not None
    assert first.clock == 100_000  # milliseconds: later than anything an earlier room relayed
    second = table.set_local(7, '{"x":2}', A, now=100.0)
    assert second is not None
    assert second.clock == first.clock + 1
    (gone,) = table.remove_owner(A, now=100.0)
    assert gone.state is None
    assert gone.clock > second.clock
    # the client reconnects at once with its old clock: the relayed clock is still higher
    back = table.set_local(7, '{"x":2}', B, now=100.0)
    assert back is not None
    assert back.clock > gone.clock


def test_nothing_to_relay_for_an_absent_client_leaving() -> None:
    table = AwarenessTable()
    assert table.set_local(1, None, A, now=1.0) is None
    assert table.remove_owner(A, now=1.0) == []


def test_local_connection_beats_remote_claims() -> None:
    table = AwarenessTable()
    table.set_local(1, '{"here":true}', A, now=1.0)
    assert table.set_remote(1, '{"there":true}', P2, now=2.0) is None
    assert table.set_remote(1, None, P2, now=2.0) is None
    assert table.owner_of(1) == A


def test_a_late_removal_from_the_old_process_is_ignored() -> None:
    table = AwarenessTable()
    assert table.set_remote(1, '{"v":1}', P2, now=1.0) is not None
    # the client moved to p3 before p2's removal arrived
    assert table.set_remote(1, '{"v":2}', P3, now=2.0) is not None
    assert table.set_remote(1, None, P2, now=3.0) is None
    assert table.owner_of(1) == P3
    assert table.set_remote(1, None, P3, now=4.0) is not None
    assert table.snapshot() == []


def test_entries_not_renewed_expire() -> None:
    table = AwarenessTable()
    table.set_remote(1, "{}", P2, now=0.0)
    table.set_local(2, "{}", A, now=0.0)
    assert table.expire(now=5.0, timeout=10.0) == []
    table.set_remote(1, "{}", P2, now=8.0)  # renewed
    expired = table.expire(now=12.0, timeout=10.0)
    assert [e.client_id for e in expired] == [2]
    assert [e.client_id for e in table.snapshot()] == [1]
    assert [e.client_id for e in table.local()] == []

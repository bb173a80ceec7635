"""Per-message audit entries (document sync) are counted on one queued entry per flush."""

from __future__ import annotations

from typing import Any

from parley.governance import audit
from parley.governance.auth import Principal, UserKind


def queued(recorder: audit.AuditRecorder) -> list[audit.Entry]:
    return [e for entries in recorder._pending.values() for e in entries]


def test_equal_entries_are_counted_on_the_first_and_different_ones_queued() -> None:
    db: Any = None  # nothing is flushed here
    recorder = audit.AuditRecorder(db)
    p = Principal("acme", "alice", "Alice", UserKind.HUMAN)
    for _ in range(3):
        recorder.record_coalesced(p, "document.sync", "session", "s1", client="10.0.0.1")
    recorder.record_nowait(
        audit.Entry.of(p, "document.sync", "session", "s1", client="10.0.0.1"), coalesce=True
    )
    recorder.record_coalesced(p, "document.sync", "session", "s1", "error", code="conflict")
    recorder.record_coalesced(p, "document.sync", "session", "s2", client="10.0.0.1")
    first, refused, other = queued(recorder)
    assert (first.target_id, first.result, first.client, first.details) == (
        "s1",
        "ok",
        "10.0.0.1",
        {"count": 4},
    )
    assert (refused.result, refused.code, refused.details) == ("error", "conflict", {})
    assert (other.target_id, other.details) == ("s2", {})

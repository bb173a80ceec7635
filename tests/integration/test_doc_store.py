"""Document storage on SQLite and PostgreSQL: the update log, compaction that never loses
anything (even when processes race), reconcile, and annotation events with seqs.

Several ``Database`` handles on one database stand in for several server processes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from pycrdt import Doc, Map, Text

from parley.crdt.store import DocStore, merge_parts
from parley.errors import NotFound
from parley.governance.auth import Principal, UserKind
from parley.sessions.annotations import AnnotationEvents
from parley.sessions.service import SessionService
from parley.storage.database import Database
from parley.storage.migrate import upgrade

ALICE = Principal("acme", "alice", "Alice", UserKind.HUMAN)
MALLORY = Principal("evil", "alice", "Other Alice", UserKind.HUMAN)


class Recorder:
    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []

    async def publish(
        self, tenant_id: str, session_id: str, frames: Sequence[dict[str, Any]]
    ) -> None:
        self.frames.extend(frames)

    async def publish_ephemeral(
        self, tenant_id: str, session_id: str, name: str, data: dict[str, Any]
    ) -> None:
        pass


@pytest.fixture
async def dbs(database_url: str) -> AsyncIterator[list[Database]]:
    await asyncio.to_thread(upgrade, database_url)
    handles = [Database(database_url) for _ in range(2)]
    yield handles
    for db in handles:
        await db.close()


async def new_session(db: Database) -> str:
    session = await SessionService(db, Recorder()).create_session(ALICE, title="doc")
    sid: str = session["id"]
    return sid


def typing_updates(count: int) -> tuple[Doc[Any], list[bytes]]:
    doc: Doc[Any] = Doc()
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    notes = doc.get("notes", type=Text)
    for i in range(count):
        notes.insert(len(notes), f"{i % 10}")
        if i % 4 == 3:
            del notes[len(notes) - 2]
    return doc, updates


def text_of(state: bytes) -> str:
    doc: Doc[Any] = Doc()
    doc.apply_update(state)
    return str(doc.get("notes", type=Text))


async def test_log_then_compaction_keeps_everything_and_shrinks(dbs: list[Database]) -> None:
    sid = await new_session(dbs[0])
    store = DocStore(dbs[0])
    doc, updates = typing_updates(400)
    for u in updates:
        await store.append("acme", sid, u)
    assert text_of(await store.load(sid)) == str(doc.get("notes", type=Text))
    before = await store.stats(sid)
    assert before.log_rows == len(updates)
    assert await store.compact("acme", sid)
    after = await store.stats(sid)
    assert after.log_rows == 0
    assert after.stored_bytes < before.stored_bytes / 3
    assert after.stored_bytes <= len(doc.get_update()) + 64
    assert text_of(await store.load(sid)) == str(doc.get("notes", type=Text))
    assert not await store.compact("acme", sid)  # nothing left to do


async def test_racing_compactions_and_appends_lose_nothing(dbs: list[Database]) -> None:
    sid = await new_session(dbs[0])
    stores = [DocStore(db) for db in dbs]
    doc, updates = typing_updates(120)
    for u in updates[:60]:
        await stores[0].append("acme", sid, u)

    async def keep_appending() -> None:
        for u in updates[60:]:
            await stores[1].append("acme", sid, u)

    results = await asyncio.gather(
        stores[0].compact("acme", sid), stores[1].compact("acme", sid), keep_appending()
    )
    assert results[0] or results[1]
    await stores[0].compact("acme", sid)
    assert text_of(await stores[1].load(sid)) == str(doc.get("notes", type=Text))


async def test_reconcile_stores_only_what_storage_lacks(dbs: list[Database]) -> None:
    sid = await new_session(dbs[0])
    store = DocStore(dbs[0])
    doc, updates = typing_updates(20)
    for u in updates[:10]:
        await store.append("acme", sid, u)
    assert await store.reconcile("acme", sid, doc.get_update())
    assert text_of(await store.load(sid)) == str(doc.get("notes", type=Text))
    assert not await store.reconcile("acme", sid, doc.get_update())


def test_merging_keeps_updates_that_wait_for_missing_ones() -> None:
    _, updates = typing_updates(3)
    merged = merge_parts([updates[0], updates[2]])  # updates[2] cannot be integrated yet
    assert text_of(merge_parts([merged, updates[1]])) == text_of(merge_parts(updates))


async def test_a_deleted_session_takes_its_document_along(dbs: list[Database]) -> None:
    sid = await new_session(dbs[0])
    store = DocStore(dbs[0])
    await store.append("acme", sid, typing_updates(1)[1][0])
    await store.compact("acme", sid)
    await store.append("acme", sid, typing_updates(2)[1][1])
    await SessionService(dbs[0], Recorder()).delete_session(ALICE, sid)
    assert (await store.stats(sid)).stored_bytes == 0
    with pytest.raises(Exception):  # noqa: B017, PT011 - the foreign key, whatever the driver
        await store.append("acme", sid, b"\x00\x00")


async def test_annotation_events_take_the_next_seqs(dbs: list[Database]) -> None:
    sid = await new_session(dbs[0])
    recorder = Recorder()
    events = AnnotationEvents(dbs[1], recorder)
    doc: Doc[Any] = Doc()
    doc.get("annotations", type=Map)["a"] = Map({"id": "a"})
    seqs = await events.record(
        ALICE,
        sid,
        [("annotation.created", {"annotation": {"id": "a"}}), ("annotation.resolved", {})],
    )
    assert seqs == [3, 4]
    assert [f["event"] for f in recorder.frames] == ["annotation.created", "annotation.resolved"]
    assert recorder.frames[0]["actor"] == "alice"
    with pytest.raises(NotFound):
        await events.record(MALLORY, sid, [("annotation.created", {})])

"""The storage layer and session service on SQLite and PostgreSQL: one suite, both backends.

Several ``Database`` handles on one database stand in for several server processes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from sqlalchemy import func, select

from parley.errors import ErrorCode, NotFound, ParleyError
from parley.governance.auth import Principal, UserKind
from parley.sessions.rules import Role, SessionStatus
from parley.sessions.service import SessionService
from parley.storage import models as m
from parley.storage.database import Database
from parley.storage.migrate import upgrade

ALICE = Principal("acme", "alice", "Alice", UserKind.HUMAN)
BOB = Principal("acme", "bob", "Bob", UserKind.HUMAN)
MALLORY = Principal("evil", "alice", "Other Alice", UserKind.HUMAN)


class Recorder:
    """A publisher that keeps what it was given."""

    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []
        self.ephemeral: list[tuple[str, dict[str, Any]]] = []

    async def publish(
        self, tenant_id: str, session_id: str, frames: Sequence[dict[str, Any]]
    ) -> None:
        self.frames.extend(frames)

    async def publish_ephemeral(
        self, tenant_id: str, session_id: str, name: str, data: dict[str, Any]
    ) -> None:
        self.ephemeral.append((name, data))


@pytest.fixture
async def dbs(database_url: str) -> AsyncIterator[list[Database]]:
    await asyncio.to_thread(upgrade, database_url)
    handles = [Database(database_url) for _ in range(3)]
    yield handles
    for db in handles:
        await db.close()


def services(dbs: list[Database]) -> list[SessionService]:
    return [SessionService(db, Recorder()) for db in dbs]


async def test_migrations_are_repeatable(database_url: str) -> None:
    await asyncio.to_thread(upgrade, database_url)
    await asyncio.to_thread(upgrade, database_url)


async def test_concurrent_writers_in_several_processes_keep_seq_gap_free(
    dbs: list[Database],
) -> None:
    svcs = services(dbs)
    sid = (await svcs[0].create_session(ALICE, title="race"))["id"]
    await svcs[0].post_message(ALICE, sid, text="warm-up")  # alice is a participant already

    async def writer(svc: SessionService, who: str) -> list[int]:
        seqs = []
        for i in range(15):
            seqs.append((await svc.post_message(ALICE, sid, text=f"{who}-{i}")).seq)
        return seqs

    results = await asyncio.gather(*(writer(svc, f"p{i}") for i, svc in enumerate(svcs)))
    all_seqs = sorted(s for r in results for s in r)
    assert all_seqs == list(range(4, 4 + 45)), "unique and gap-free across processes"

    event_seqs = await dbs[0].read(
        lambda s: s.scalars(
            select(m.Event.seq)
            .where(m.Event.tenant_id == ALICE.tenant_id, m.Event.session_id == sid)
            .order_by(m.Event.seq)
        ).all()
    )
    last = await dbs[0].read(
        lambda s: s.scalar(
            select(m.Session.last_seq).where(
                m.Session.tenant_id == ALICE.tenant_id, m.Session.id == sid
            )
        )
    )
    assert list(event_seqs) == list(range(1, 49))
    assert last == 48
    for r in results:
        assert r == sorted(r), "each writer's own messages keep their order"


async def test_concurrent_retries_with_one_client_id_store_one_message(dbs: list[Database]) -> None:
    svcs = services(dbs)
    sid = (await svcs[0].create_session(ALICE))["id"]
    results = await asyncio.gather(
        *(
            svc.post_message(ALICE, sid, text="once", client_id="k-1")
            for svc in svcs
            for _ in range(3)
        )
    )
    assert len({r.message["id"] for r in results}) == 1
    assert len({r.seq for r in results}) == 1
    assert sum(not r.duplicate for r in results) == 1
    count = await dbs[0].read(
        lambda s: s.scalar(
            select(func.count())
            .select_from(m.Message)
            .where(m.Message.tenant_id == ALICE.tenant_id, m.Message.session_id == sid)
        )
    )
    last = await dbs[0].read(
        lambda s: s.scalar(
            select(m.Session.last_seq).where(
                m.Session.tenant_id == ALICE.tenant_id, m.Session.id == sid
            )
        )
    )
    assert count == 1
    assert last == 3, "a refused duplicate does not consume a seq"


async def test_events_are_published_only_after_commit_and_in_seq_order(dbs: list[Database]) -> None:
    rec = Recorder()
    svc = SessionService(dbs[0], rec)
    sid = (await svc.create_session(ALICE, title="t", tags=["X", "y", "x"]))["id"]
    await svc.post_message(BOB, sid, text="hi bob here")
    stored = await svc.list_events(ALICE, sid)
    assert [f["seq"] for f in rec.frames] == [1, 2, 3, 4]
    assert [f["event"] for f in rec.frames] == [
        "session.created",
        "participant.joined",
        "participant.joined",
        "message.created",
    ]
    assert stored == rec.frames, "what was published is exactly what replay reads back"
    assert (await svc.get_session(ALICE, sid))["tags"] == ["x", "y"]


async def test_other_tenants_see_nothing(dbs: list[Database]) -> None:
    svc = SessionService(dbs[0], Recorder())
    sid = (await svc.create_session(ALICE))["id"]
    msg = await svc.post_message(ALICE, sid, text="secret")
    calls = [
        svc.get_session(MALLORY, sid),
        svc.list_messages(MALLORY, sid),
        svc.list_events(MALLORY, sid),
        svc.post_message(MALLORY, sid, text="x"),
        svc.edit_message(MALLORY, sid, msg.message["id"], text="x"),
        svc.delete_message(MALLORY, sid, msg.message["id"]),
        svc.update_session(MALLORY, sid, title="x"),
        svc.delete_session(MALLORY, sid),
        svc.list_participants(MALLORY, sid),
        svc.last_seq(MALLORY, sid),
    ]
    for call in calls:
        with pytest.raises(NotFound):
            await call
    items, _ = await svc.list_sessions(MALLORY)
    assert items == []
    assert (await svc.list_messages(ALICE, sid))[0]["text"] == "secret"


async def test_edit_delete_archive_rules(dbs: list[Database]) -> None:
    svc = SessionService(dbs[0], Recorder())
    sid = (await svc.create_session(ALICE))["id"]
    mine = (await svc.post_message(BOB, sid, text="bob's")).message
    with pytest.raises(ParleyError) as exc:
        await svc.edit_message(ALICE, sid, mine["id"], text="not yours")
    assert exc.value.code is ErrorCode.FORBIDDEN
    edited, _ = await svc.edit_message(BOB, sid, mine["id"], text="bob's, edited")
    assert edited["text"] == "bob's, edited"
    assert edited["edited_at"]
    deleted, _ = await svc.delete_message(ALICE, sid, mine["id"])  # owners may delete
    assert deleted["text"] == ""
    assert deleted["deleted_at"]
    await svc.update_session(ALICE, sid, status=SessionStatus.ARCHIVED)
    with pytest.raises(ParleyError) as exc:
        await svc.post_message(ALICE, sid, text="late")
    assert exc.value.code is ErrorCode.SESSION_ARCHIVED


async def test_viewers_cannot_write_and_branches_need_a_parent_in_the_session(
    dbs: list[Database],
) -> None:
    svc = SessionService(dbs[0], Recorder())
    await svc.ensure_principal(BOB)
    sid = (await svc.create_session(ALICE))["id"]
    other = (await svc.create_session(ALICE))["id"]
    await svc.add_participant(ALICE, sid, "bob", Role.VIEWER)
    with pytest.raises(ParleyError) as exc:
        await svc.post_message(BOB, sid, text="hi")
    assert exc.value.code is ErrorCode.FORBIDDEN
    root = (await svc.post_message(ALICE, sid, text="root")).message
    branch = (await svc.post_message(ALICE, sid, text="branch", parent_id=root["id"])).message
    assert branch["parent_id"] == root["id"]
    foreign = (await svc.post_message(ALICE, other, text="elsewhere")).message
    with pytest.raises(ParleyError) as exc:
        await svc.post_message(ALICE, sid, text="x", parent_id=foreign["id"])
    assert exc.value.code is ErrorCode.INVALID_REQUEST


async def test_delete_session_removes_everything(dbs: list[Database]) -> None:
    rec = Recorder()
    svc = SessionService(dbs[0], rec)
    sid = (await svc.create_session(ALICE, tags=["a"]))["id"]
    await svc.post_message(ALICE, sid, text="gone soon")
    await svc.delete_session(ALICE, sid)
    assert rec.ephemeral[-1][0] == "session.deleted"
    for table in (m.Event, m.Message, m.Participant, m.SessionTag):
        count = await dbs[0].read(
            lambda s, t=table: s.scalar(  # type: ignore[misc]
                select(func.count())
                .select_from(t)
                .where(t.tenant_id == ALICE.tenant_id, t.session_id == sid)
            )
        )
        assert count == 0, table.__tablename__
    with pytest.raises(NotFound):
        await svc.get_session(ALICE, sid)

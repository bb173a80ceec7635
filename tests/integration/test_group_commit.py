"""Group commit in the SQLite writer thread: units of work queued together share one
transaction; one that fails is rolled back alone (the others run again, each in a SAVEPOINT)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from parley.governance.crypto.columns import KEYRING as CRYPTO_KEYRING
from parley.storage import database
from parley.storage import models as m
from parley.storage.database import Database
from parley.storage.migrate import upgrade

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
async def db(sqlite_url: str) -> AsyncIterator[Database]:
    await asyncio.to_thread(upgrade, sqlite_url)
    handle = Database(sqlite_url)
    yield handle
    await handle.close()


def _add_tenant(tenant_id: str) -> database.UnitOfWork[str]:
    def work(s: Session) -> str:
        s.add(m.Tenant(id=tenant_id, name=tenant_id, created_at=NOW))
        s.flush()
        return tenant_id

    return work


async def _queued_behind_a_blocker(
    db: Database, units: list[database.UnitOfWork[str]]
) -> list[str | BaseException]:
    """Run ``units`` so that they are all queued while the writer is busy: the writer then
    takes them as one batch."""
    release = threading.Event()

    def blocker(s: Session) -> str:
        release.wait(10)
        return "blocker"

    first = asyncio.ensure_future(db.write(blocker))
    await asyncio.sleep(0)
    rest = [asyncio.ensure_future(db.write(u)) for u in units]
    await asyncio.sleep(0)  # every job is in the queue before the blocker lets go
    release.set()
    assert await first == "blocker"
    return list(await asyncio.gather(*rest, return_exceptions=True))


async def test_a_failing_unit_is_rolled_back_alone(db: Database) -> None:
    await db.write(_add_tenant("taken"))
    units = [_add_tenant("t1"), _add_tenant("taken"), _add_tenant("t2")]

    outcomes = await _queued_behind_a_blocker(db, units)

    assert outcomes[0] == "t1"
    assert outcomes[2] == "t2"
    assert isinstance(outcomes[1], IntegrityError)
    stored = await db.read(lambda s: sorted(s.scalars(select(m.Tenant.id)).all()))
    assert stored == ["t1", "t2", "taken"]


async def test_a_unit_that_raises_after_writing_leaves_nothing(db: Database) -> None:
    def half_done(s: Session) -> str:
        s.add(m.Tenant(id="half", name="half", created_at=NOW))
        s.flush()
        raise ValueError("changed my mind")

    outcomes = await _queued_behind_a_blocker(db, [half_done, _add_tenant("whole")])

    assert isinstance(outcomes[0], ValueError)
    assert outcomes[1] == "whole"
    stored = await db.read(lambda s: sorted(s.scalars(select(m.Tenant.id)).all()))
    assert stored == ["whole"]


async def test_units_of_one_batch_do_not_share_orm_state(db: Database) -> None:
    """Each unit has its own session: an object loaded by one is not another's stale copy."""
    await db.write(_add_tenant("acme"))

    def rename(name: str) -> database.UnitOfWork[str]:
        def work(s: Session) -> str:
            row = s.get(m.Tenant, "acme")
            assert row is not None
            before = row.name
            row.name = name
            return before

        return work

    outcomes = await _queued_behind_a_blocker(db, [rename("one"), rename("two")])

    assert outcomes == ["acme", "one"]


async def test_units_before_a_failure_run_again_and_are_stored_once(db: Database) -> None:
    await db.write(_add_tenant("taken"))
    runs: list[str] = []

    def counted(tenant_id: str) -> database.UnitOfWork[str]:
        inner = _add_tenant(tenant_id)

        def work(s: Session) -> str:
            runs.append(tenant_id)
            return inner(s)

        return work

    units = [counted("t1"), counted("t2"), _add_tenant("taken"), counted("t3")]
    outcomes = await _queued_behind_a_blocker(db, units)

    assert outcomes[:2] == ["t1", "t2"]
    assert isinstance(outcomes[2], IntegrityError)
    assert outcomes[3] == "t3"
    # The first pass was rolled back at the failure; the second stored each unit once.
    assert runs == ["t1", "t2", "t1", "t2", "t3"]
    stored = await db.read(lambda s: sorted(s.scalars(select(m.Tenant.id)).all()))
    assert stored == ["t1", "t2", "t3", "taken"]


async def test_a_core_write_between_orm_units_is_seen_by_the_next(db: Database) -> None:
    """One session serves the batch: it is emptied between units, so an ORM object loaded by
    an earlier unit never hides a later Core statement's change from the next unit."""
    await db.write(_add_tenant("acme"))
    held: list[m.Tenant] = []  # units' results often hold rows: keep them alive likewise

    def orm_append(suffix: str) -> database.UnitOfWork[str]:
        def work(s: Session) -> str:
            row = s.get(m.Tenant, "acme")
            assert row is not None
            row.name += suffix
            held.append(row)
            return row.name

        return work

    tenants = m.Tenant.__table__

    def core_append(s: Session) -> str:
        # A table-level statement, as the hot paths use: the ORM does not synchronise it.
        s.execute(update(tenants).where(tenants.c.id == "acme").values(name=tenants.c.name + "b"))
        return "core"

    outcomes = await _queued_behind_a_blocker(db, [orm_append("a"), core_append, orm_append("c")])

    assert outcomes == ["acmea", "core", "acmeabc"]


def test_the_key_ring_name_matches_the_crypto_module() -> None:
    # Group commit is off while a key ring is installed; both modules must name it alike.
    assert database.KEYRING == CRYPTO_KEYRING

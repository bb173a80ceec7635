"""The database handle: engines, sessions, and the SQLite settings that make it safe.

SQLite (embedded default) runs in WAL mode. Writes go through a dedicated one-connection engine
whose transactions start with ``BEGIN IMMEDIATE``: a write transaction takes the write lock up
front, so two writers never deadlock upgrading a read lock, and ``seq`` allocation is serialized.
Reads use a separate pool and never wait for writers.

PostgreSQL (scale-out) uses one asyncpg pool; ``seq`` allocation there relies on the row lock
taken by ``SELECT ... FROM sessions ... FOR UPDATE`` at the start of every writing transaction.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)


class Database:
    """Owns the engines. ``read()`` and ``write()`` hand out sessions; ``write()`` commits."""

    def __init__(self, url: str) -> None:
        self.url: URL = make_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        if self.is_sqlite:
            ensure_sqlite_folder(url)
            self.engine = create_async_engine(self.url, pool_size=8, max_overflow=8)
            self._write_engine = create_async_engine(
                self.url, pool_size=1, max_overflow=0, pool_timeout=120
            )
            _tune_sqlite(self.engine, immediate=False)
            _tune_sqlite(self._write_engine, immediate=True)
        else:
            self.engine = create_async_engine(
                self.url, pool_size=10, max_overflow=20, pool_pre_ping=True
            )
            self._write_engine = self.engine
        self._reader = async_sessionmaker(self.engine, expire_on_commit=False)
        self._writer = async_sessionmaker(self._write_engine, expire_on_commit=False)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A session for reads. Nothing is committed."""
        async with self._reader() as session:
            yield session

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """A transaction that commits when the block exits cleanly and rolls back otherwise."""
        async with self._writer() as session, session.begin():
            yield session

    async def ping(self) -> None:
        """Raise if the database cannot answer a trivial query."""
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def close(self) -> None:
        await self.engine.dispose()
        if self._write_engine is not self.engine:
            await self._write_engine.dispose()


def ensure_sqlite_folder(url: str) -> None:
    """Create the folder of a SQLite file URL so a fresh machine can start at once."""
    u = make_url(url)
    if u.get_backend_name() == "sqlite" and u.database and u.database != ":memory:":
        Path(u.database).parent.mkdir(parents=True, exist_ok=True)


def _tune_sqlite(engine: AsyncEngine, *, immediate: bool) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the driver so BEGIN is ours to emit.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

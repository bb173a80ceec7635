"""The database handle. Units of work are plain synchronous functions of a SQLAlchemy
``Session``; the handle runs them where they are cheapest for each backend.

SQLite (embedded default): every unit of work runs in a thread, as a whole, on the synchronous
driver. A transaction then costs one hop between the event loop and a thread instead of one per
statement (each hop costs about as much as the statement itself). Writes go to one dedicated
thread and one connection, and start with ``BEGIN IMMEDIATE``: writers are serialized without
busy-waiting, and ``seq`` allocation cannot interleave. Reads use a small pool of threads and
connections; WAL mode lets them run beside the writer.

PostgreSQL (scale-out): the same functions run through ``AsyncSession.run_sync`` over asyncpg.
``seq`` allocation relies on the row lock of ``SELECT ... FROM sessions ... FOR UPDATE`` taken at
the start of every writing transaction, so writers in different processes serialize per session.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import orjson
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session, sessionmaker

T = TypeVar("T")
UnitOfWork = Callable[[Session], T]

SQLITE_READERS = 4


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


# orjson for the JSON columns: several times faster than the stdlib on every event row.
_JSON: dict[str, Any] = {"json_serializer": _json_dumps, "json_deserializer": orjson.loads}


class Database:
    """Runs units of work: ``await db.read(fn)`` and ``await db.write(fn)`` (which commits)."""

    def __init__(self, url: str) -> None:
        self.url: URL = make_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        # Copied into every session's ``info``: how extensions reach their per-database parts
        # from inside a unit of work (governance/crypto/columns.py keeps its key ring here).
        self.info: dict[str, Any] = {}
        self._async_engine: AsyncEngine | None = None
        self._engines: list[Engine] = []
        if self.is_sqlite:
            ensure_sqlite_folder(url)
            sync_url = self.url.set(drivername="sqlite")
            reader = create_engine(sync_url, pool_size=SQLITE_READERS, max_overflow=0, **_JSON)
            writer = create_engine(sync_url, pool_size=1, max_overflow=0, **_JSON)
            _tune_sqlite(reader, immediate=False)
            _tune_sqlite(writer, immediate=True)
            self._engines = [reader, writer]
            self._sync_reader = sessionmaker(reader, expire_on_commit=False, info=self.info)
            self._sync_writer = sessionmaker(writer, expire_on_commit=False, info=self.info)
            self._read_threads = ThreadPoolExecutor(SQLITE_READERS, "parley-sqlite-read")
            self._write_thread = ThreadPoolExecutor(1, "parley-sqlite-write")
        else:
            self._async_engine = create_async_engine(
                self.url, pool_size=10, max_overflow=20, pool_pre_ping=True, **_JSON
            )
            self._async_sessions = async_sessionmaker(
                self._async_engine, expire_on_commit=False, info=self.info
            )

    async def read(self, fn: UnitOfWork[T]) -> T:
        """Run ``fn`` in a session for reads; nothing is committed."""
        if self.is_sqlite:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._read_threads, self._sqlite_read, fn)
        async with self._async_sessions() as session:
            return await session.run_sync(fn)

    async def write(self, fn: UnitOfWork[T]) -> T:
        """Run ``fn`` in a transaction: committed if it returns, rolled back if it raises."""
        if self.is_sqlite:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._write_thread, self._sqlite_write, fn)
        async with self._async_sessions() as session, session.begin():
            return await session.run_sync(fn)

    def _sqlite_read(self, fn: UnitOfWork[T]) -> T:
        with self._sync_reader() as session:
            return fn(session)

    def _sqlite_write(self, fn: UnitOfWork[T]) -> T:
        with self._sync_writer() as session, session.begin():
            return fn(session)

    async def ping(self) -> None:
        """Raise if the database cannot answer a trivial query."""
        await self.read(lambda s: s.execute(text("SELECT 1")).scalar_one())

    async def close(self) -> None:
        if self._async_engine is not None:
            await self._async_engine.dispose()
        if self.is_sqlite:
            await asyncio.get_running_loop().run_in_executor(self._write_thread, self._dispose)
            self._write_thread.shutdown(wait=True)
            self._read_threads.shutdown(wait=True)

    def _dispose(self) -> None:
        for engine in self._engines:
            engine.dispose()


def ensure_sqlite_folder(url: str) -> None:
    """Create the folder of a SQLite file URL so a fresh machine can start at once."""
    u = make_url(url)
    if u.get_backend_name() == "sqlite" and u.database and u.database != ":memory:":
        Path(u.database).parent.mkdir(parents=True, exist_ok=True)


def _tune_sqlite(engine: Engine, *, immediate: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the driver so BEGIN is ours to emit.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

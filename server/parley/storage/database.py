"""The database handle. Units of work are plain synchronous functions of a SQLAlchemy
``Session``; the handle runs them where they are cheapest for each backend.

SQLite (embedded default): every unit of work runs in a thread, as a whole, on the synchronous
driver. A transaction then costs one hop between the event loop and a thread instead of one per
statement (each hop costs about as much as the statement itself). Writes go to one dedicated
thread and one connection, and start with ``BEGIN IMMEDIATE``: writers are serialized without
busy-waiting, and ``seq`` allocation cannot interleave. Reads use a small pool of threads and
connections; WAL mode lets them run beside the writer.

Group commit: when several units of work are queued, the writer thread runs them in one
transaction and hands out results only after the COMMIT, so nothing is published before it is
durable. Under load this shares BEGIN, COMMIT, the WAL write and the thread hop among the
batch. Units run back to back first; if one raises, the transaction is rolled back, that unit
gets its exception, and the others run again, each in its own SAVEPOINT, so one failure never
sinks the rest. **A unit may therefore run twice** (its first run rolled back): units of work
must have no effects outside their session, which is how they are written anyway. Not while
encryption at rest is on: its key ring learns of new keys from each session's own commit.

PostgreSQL (scale-out): the same functions run through ``AsyncSession.run_sync`` over asyncpg.
``seq`` allocation relies on the row lock of ``SELECT ... FROM sessions ... FOR UPDATE`` taken at
the start of every writing transaction, so writers in different processes serialize per session.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
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
MAX_GROUP = 64  # units of work committed together at most (bounds the latency of the first)
KEYRING = "parley_keyring"  # governance.crypto.columns.KEYRING, not imported: no cycle


class _WriteJob:
    """A unit of work queued for the SQLite writer thread, and where its outcome goes."""

    __slots__ = ("fn", "future", "loop")

    def __init__(
        self, fn: UnitOfWork[Any], future: asyncio.Future[Any], loop: asyncio.AbstractEventLoop
    ) -> None:
        self.fn = fn
        self.future = future
        self.loop = loop


def _settle(outcomes: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    """On the event loop: hand each unit its result or its exception."""
    for future, ok, value in outcomes:
        if future.done():  # the caller was cancelled; the unit ran (or failed) anyway
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


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
            self._writer_engine = writer
            # Switch the file to WAL once, here, before the reader and writer threads open
            # their connections: converting needs the file to itself, and connections racing
            # to convert it at start-up got "database is locked".
            writer.connect().close()
            self._sync_reader = sessionmaker(reader, expire_on_commit=False, info=self.info)
            self._sync_writer = sessionmaker(writer, expire_on_commit=False, info=self.info)
            self._read_threads = ThreadPoolExecutor(SQLITE_READERS, "parley-sqlite-read")
            self._jobs: queue.SimpleQueue[_WriteJob | None] = queue.SimpleQueue()
            self._writer = threading.Thread(
                target=self._write_loop, name="parley-sqlite-write", daemon=True
            )
            self._writer.start()
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
            future: asyncio.Future[T] = loop.create_future()
            self._jobs.put(_WriteJob(fn, future, loop))
            return await future
        async with self._async_sessions() as session, session.begin():
            return await session.run_sync(fn)

    def _sqlite_read(self, fn: UnitOfWork[T]) -> T:
        with self._sync_reader() as session:
            return fn(session)

    def _write_loop(self) -> None:
        """The SQLite writer thread: takes what is queued, runs it, settles it; until None."""
        jobs = self._jobs
        stopping = False
        while not stopping:
            job = jobs.get()
            if job is None:
                break
            batch = [job]
            while len(batch) < MAX_GROUP:
                try:
                    more = jobs.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stopping = True
                    break
                batch.append(more)
            if len(batch) == 1 or KEYRING in self.info:
                outcomes = [self._write_alone(j) for j in batch]
            else:
                outcomes = self._write_group(batch)
            by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], bool, Any]]]
            by_loop = {}
            for j, (ok, value) in zip(batch, outcomes, strict=True):
                by_loop.setdefault(j.loop, []).append((j.future, ok, value))
            for loop, settled in by_loop.items():
                # A closed loop (RuntimeError) has nobody waiting any more.
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(_settle, settled)
        self._dispose()

    def _write_alone(self, job: _WriteJob) -> tuple[bool, Any]:
        try:
            with self._sync_writer() as session, session.begin():
                return True, job.fn(session)
        except Exception as exc:
            return False, exc

    def _write_group(self, batch: list[_WriteJob]) -> list[tuple[bool, Any]]:
        """One transaction and one ORM session for the batch, emptied between units so each
        starts as in a session of its own. A unit that raises spoils the transaction: it is
        rolled back, the unit's outcome is its exception, and the others run again, each in a
        SAVEPOINT (:meth:`_write_savepoints`)."""
        outcomes: list[tuple[bool, Any]] = []
        failed: tuple[int, Exception] | None = None
        try:
            with self._sync_writer() as session, session.begin():
                for i, job in enumerate(batch):
                    try:
                        outcomes.append((True, job.fn(session)))
                        session.flush()
                    except Exception as exc:
                        failed = (i, exc)
                        raise
                    session.expunge_all()
        except Exception as exc:
            if failed is None:  # BEGIN or COMMIT failed: nothing of the batch is stored
                return [(False, exc)] * len(batch)
            index, error = failed
            rest = self._write_savepoints(batch[:index] + batch[index + 1 :])
            return [*rest[:index], (False, error), *rest[index:]]
        return outcomes

    def _write_savepoints(self, batch: list[_WriteJob]) -> list[tuple[bool, Any]]:
        """One transaction for the batch, a SAVEPOINT and an ORM session per unit."""
        outcomes: list[tuple[bool, Any]] = []
        try:
            with self._writer_engine.connect() as conn, conn.begin():
                for job in batch:
                    try:
                        with (
                            self._sync_writer(
                                bind=conn, join_transaction_mode="create_savepoint"
                            ) as session,
                            session.begin(),
                        ):
                            outcomes.append((True, job.fn(session)))
                    except Exception as exc:
                        outcomes.append((False, exc))
        except Exception as exc:  # BEGIN or COMMIT failed: nothing of the batch is stored
            return [(False, exc)] * len(batch)
        return outcomes

    async def ping(self) -> None:
        """Raise if the database cannot answer a trivial query."""
        await self.read(lambda s: s.execute(text("SELECT 1")).scalar_one())

    async def close(self) -> None:
        if self._async_engine is not None:
            await self._async_engine.dispose()
        if self.is_sqlite:
            self._jobs.put(None)  # the writer finishes what is queued, then disposes
            await asyncio.to_thread(self._writer.join)
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
        cursor.execute("PRAGMA busy_timeout=30000")  # first: the pragmas below may wait too
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

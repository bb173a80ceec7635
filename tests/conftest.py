"""Shared fixtures: databases (SQLite file, fresh PostgreSQL database), a real server on a free
port, tokens, and a WebSocket test client.

PostgreSQL tests need ``PARLEY_TEST_PG_URL`` (default: the local server, database ``test``).
When it is unreachable they skip loudly, or fail when ``PARLEY_REQUIRE_SERVICES=1`` (CI).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from parley.config import Settings
from tests.support import RunningServer, start_server

REDIS_URL = os.environ.get("PARLEY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
PG_URL = os.environ.get("PARLEY_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
REQUIRE_SERVICES = os.environ.get("PARLEY_REQUIRE_SERVICES") == "1"
TEST_SECRET = "test-secret-" + "x" * 40


def _service_missing(what: str, exc: BaseException) -> None:
    message = f"{what} is not reachable ({type(exc).__name__}: {exc})"
    if REQUIRE_SERVICES:
        pytest.fail(message + " and PARLEY_REQUIRE_SERVICES=1", pytrace=False)
    pytest.skip("SKIPPED LOUDLY: " + message + "; set PARLEY_TEST_PG_URL / _REDIS_URL to run")


def redis_url_or_skip() -> str:
    """The test Redis URL if a server answers there; otherwise skip (or fail in CI)."""
    import redis

    try:
        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
        client.ping()
        client.close()
    except (redis.RedisError, OSError) as exc:
        _service_missing("Redis at " + REDIS_URL, exc)
    return REDIS_URL


def _asyncpg_dsn(url: str, database: str | None = None) -> str:
    u = make_url(url).set(drivername="postgresql")
    if database is not None:
        u = u.set(database=database)
    return u.render_as_string(hide_password=False)


@pytest.fixture
async def pg_database() -> AsyncIterator[str]:
    """A new, empty PostgreSQL database for one test; dropped afterwards."""
    name = "parley_t_" + secrets.token_hex(6)
    try:
        admin = await asyncpg.connect(_asyncpg_dsn(PG_URL), timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        _service_missing("PostgreSQL at " + make_url(PG_URL).render_as_string(), exc)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    admin = await asyncpg.connect(_asyncpg_dsn(PG_URL), timeout=5)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'parley.db'}"


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test using this runs once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'parley.db'}"
    url: str = request.getfixturevalue("pg_database")
    return url


@pytest.fixture
def settings_factory(tmp_path: Path) -> Callable[..., Settings]:
    def make(**overrides: object) -> Settings:
        values: dict[str, object] = {
            "host": "127.0.0.1",
            "port": 0,
            "data_dir": tmp_path / "data",
            "secret": TEST_SECRET,
            "log_level": "warning",
            # Any query on tenant-owned rows without a tenant filter fails the test.
            "tenant_guard": "raise",
            # Embeddings load PyTorch and a model (seconds of CPU) in whichever test first
            # analyses a session; the tests of semantic search turn them on themselves.
            "semantic": False,
        }
        values.update(overrides)
        return Settings(**values)  # type: ignore[arg-type]

    return make


@pytest.fixture
async def server(
    database_url: str, settings_factory: Callable[..., Settings]
) -> AsyncIterator[RunningServer]:
    """A real Parley server on a free port, on SQLite and on PostgreSQL."""
    async with start_server(settings_factory(database_url=database_url)) as running:
        yield running


@pytest.fixture
async def sqlite_server(
    sqlite_url: str, settings_factory: Callable[..., Settings]
) -> AsyncIterator[RunningServer]:
    """A real Parley server on SQLite only (for tests whose subject is not storage)."""
    async with start_server(settings_factory(database_url=sqlite_url)) as running:
        yield running

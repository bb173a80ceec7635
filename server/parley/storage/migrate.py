"""Alembic migrations, run programmatically by ``parley migrate`` and on ``parley serve``."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine

from parley.storage.database import ensure_sqlite_folder

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    """An Alembic config pointing at our migrations and the given database."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["database_url"] = url
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database to ``revision``. Safe to run again; it does nothing when current.

    Blocking (Alembic drives its own event loop): from async code call it in a thread.
    """
    ensure_sqlite_folder(url)
    command.upgrade(alembic_config(url), revision)


def head_revision() -> str | None:
    """The newest migration this code ships."""
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def current_revision(url: str) -> str | None:
    """The revision the database is at, or None when it was never migrated."""
    sync_url = url.replace("+aiosqlite", "").replace("+asyncpg", "+psycopg")
    if "+psycopg" in sync_url:
        return None  # no sync PostgreSQL driver is installed; callers use upgrade() instead
    engine = create_engine(sync_url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()

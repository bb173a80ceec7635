"""``parley audit verify|export``: check and export the hash-chained audit trail."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import click
import orjson

from parley.governance import audit
from parley.storage.database import Database


def _database(data_dir: Path | None, database_url: str | None) -> Database:
    from parley.cli import _settings

    return Database(_settings(data_dir=data_dir, database_url=database_url).effective_database_url)


_db_options = [
    click.option(
        "--data-dir",
        type=click.Path(file_okay=False, path_type=Path),
        help="Folder of the SQLite file. [env PARLEY_DATA_DIR]",
    ),
    click.option("--database-url", help="SQLAlchemy URL of the store. [env PARLEY_DATABASE_URL]"),
]


def _with_db_options(fn: Any) -> Any:
    for option in reversed(_db_options):
        fn = option(fn)
    return fn


@click.group("audit")
def audit_group() -> None:
    """Check and export the audit trail."""


@audit_group.command("verify")
@click.option("--tenant", help="Check only this tenant's chain. [default: every tenant]")
@_with_db_options
def verify(tenant: str | None, data_dir: Path | None, database_url: str | None) -> None:
    """Walk each tenant's hash chain; print the first broken link and exit 1 if one is found."""

    async def run() -> int:
        db = _database(data_dir, database_url)
        try:
            names = [tenant] if tenant else await audit.tenants(db)
            status = 0
            for name in names:
                checked, broken = await audit.verify(db, name)
                if broken is None:
                    click.echo(f"tenant {name}: {checked} entries, chain intact")
                else:
                    status = 1
                    click.echo(
                        f"tenant {name}: BROKEN at entry {broken.seq}: {broken.problem} "
                        f"({checked} entries before it are intact)"
                    )
            return status
        finally:
            await db.close()

    sys.exit(asyncio.run(run()))


@audit_group.command("export")
@click.option("--tenant", required=True, help="The tenant whose entries to export.")
@_with_db_options
def export(tenant: str, data_dir: Path | None, database_url: str | None) -> None:
    """Write the tenant's entries, oldest first, as JSON Lines to standard output."""

    async def run() -> None:
        db = _database(data_dir, database_url)
        out = sys.stdout.buffer
        try:
            async for entry in audit.export(db, tenant):
                out.write(orjson.dumps(entry) + b"\n")
            out.flush()
        finally:
            await db.close()

    asyncio.run(run())

"""``parley attachments gc``: sweep attachments and blobs nothing references any more."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from parley.attachments.blobs import LocalBlobStore
from parley.attachments.service import AttachmentService, GcReport
from parley.config import Settings
from parley.storage.database import Database


@click.group()
def attachments() -> None:
    """Attachments: files and images on messages."""


@attachments.command("gc")
@click.option(
    "--grace",
    type=float,
    help="Seconds an unreferenced upload or blob is kept."
    " [default: PARLEY_ATTACHMENT_ORPHAN_GRACE, 1 day]",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="The data folder (SQLite file, attachments/). [env PARLEY_DATA_DIR]",
)
@click.option("--database-url", help="SQLAlchemy URL of the store. [env PARLEY_DATABASE_URL]")
def gc(grace: float | None, data_dir: Path | None, database_url: str | None) -> None:
    """Delete attachments no message references (older than the grace period) and the blobs
    no attachment names. Safe while servers run; they also do it every
    PARLEY_ATTACHMENT_GC_INTERVAL seconds."""
    given = {"data_dir": data_dir, "database_url": database_url}
    settings = Settings(**{k: v for k, v in given.items() if v is not None})  # type: ignore[arg-type]
    report = asyncio.run(_collect(settings, grace))
    click.echo(f"removed {report.attachments} attachments and {report.blobs} blobs")


async def _collect(settings: Settings, grace: float | None) -> GcReport:
    db = Database(settings.effective_database_url)
    try:
        service = AttachmentService(db, LocalBlobStore(settings.effective_attachment_dir), settings)
        return await service.collect_garbage(grace)
    finally:
        await db.close()

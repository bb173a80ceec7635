"""``parley retention run``, ``parley purge-user`` and ``parley keys rotate`` (docs/privacy.md)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from parley.config import Settings
from parley.governance.auth import valid_identifier
from parley.logging import configure_logging

if TYPE_CHECKING:  # the commands import storage when they run: `parley --help` stays fast
    from parley.storage.database import Database

T = TypeVar("T")


def _store_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option(
        "--database-url", help="SQLAlchemy URL of the store. [env PARLEY_DATABASE_URL]"
    )(fn)
    return click.option(
        "--data-dir",
        type=click.Path(file_okay=False, path_type=Path),
        help="Folder of the SQLite file and keys. [env PARLEY_DATA_DIR]",
    )(fn)


def _settings(**options: Any) -> Settings:
    from parley.cli import _settings as settings_of

    settings = settings_of(**options)
    configure_logging(settings.log_format, "warning")
    return settings


def _run(settings: Settings, job: Callable[[Database], Awaitable[T]]) -> T:
    """Migrate, open the store, run ``job`` on it, close it."""
    from parley.storage.database import Database
    from parley.storage.migrate import upgrade

    url = settings.effective_database_url
    upgrade(url)

    async def main() -> T:
        db = Database(url)
        try:
            return await job(db)
        finally:
            await db.close()

    return asyncio.run(main())


@click.group()
def retention() -> None:
    """Apply retention policies (archive and delete idle sessions)."""


@retention.command("run")
@click.option(
    "--as-of",
    type=click.DateTime(["%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"]),
    help="Judge idleness as of this UTC time instead of now (to preview a future run).",
)
@_store_options
def retention_run(as_of: datetime | None, **options: Any) -> None:
    """Archive and delete what the tenants' and sessions' retention makes due, now."""
    from parley.governance.policies import Policies
    from parley.governance.retention import Retention

    settings = _settings(**options)
    now = as_of.replace(tzinfo=UTC) if as_of is not None else None

    async def job(db: Database) -> None:
        await Retention(db, Policies(db, settings)).run(now=now, progress=click.echo)

    _run(settings, job)


@click.command("purge-user")
@click.option("--tenant", "tenant_id", required=True, help="Tenant id.")
@click.option("--user", "user_id", required=True, help="The user whose content goes.")
@click.option("--actor", default="cli", show_default=True, help="Who asked (for the record).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@_store_options
def purge_user(tenant_id: str, user_id: str, actor: str, yes: bool, **options: Any) -> None:
    """Remove one user's content from every session of a tenant (the right to be forgotten).

    Blanks their messages (and every stored version of them in the event log), removes their
    participant rows, user row and API keys; prints progress and a summary.
    """
    from parley.governance.purge import purge_user as purge

    for label, value in (("tenant", tenant_id), ("user", user_id)):
        if not valid_identifier(value):
            raise click.BadParameter(f"{label} id {value!r} is not a valid id")
    if not yes:
        click.confirm(f"Purge all content of {user_id!r} in tenant {tenant_id!r}?", abort=True)
    settings = _settings(**options)

    async def job(db: Database) -> None:
        await purge(db, tenant_id, user_id, actor=actor, progress=click.echo)

    _run(settings, job)


@click.group()
def keys() -> None:
    """Encryption at rest: master key and data keys (docs/privacy.md)."""


@keys.command("generate")
def keys_generate() -> None:
    """Print a new random master key (base64) for PARLEY_MASTER_KEY."""
    import base64
    import os

    click.echo(base64.b64encode(os.urandom(32)).decode())


@keys.command("rotate")
@click.option(
    "--new-master-key",
    envvar="PARLEY_NEW_MASTER_KEY",
    help="Re-wrap every data key under this master key (base64). [env PARLEY_NEW_MASTER_KEY]"
    " The current one is PARLEY_MASTER_KEY (or master.key in the data folder).",
)
@click.option(
    "--data-keys",
    is_flag=True,
    help="Also create a new data key version per tenant and re-encrypt every row under it"
    " (rows stored before encryption was turned on are encrypted too).",
)
@_store_options
def keys_rotate(new_master_key: str | None, data_keys: bool, **options: Any) -> None:
    """Rotate the master key, the data keys, or both; prints progress and a summary.

    Master key rotation: start every process with PARLEY_MASTER_KEY=<new> and
    PARLEY_MASTER_KEY_PREVIOUS=<old>, run this with the old key as PARLEY_MASTER_KEY and
    --new-master-key <new>, then drop PARLEY_MASTER_KEY_PREVIOUS.
    """
    from parley.governance.crypto import KeyRing, MasterKey, master_key
    from parley.governance.crypto.rotate import rewrap, rotate_data_keys

    if new_master_key is None and not data_keys:
        raise click.UsageError("nothing to do: give --new-master-key, --data-keys or both")
    settings = _settings(**options)
    try:
        current = master_key(settings)
        new = MasterKey.from_base64(new_master_key) if new_master_key else None
        older = (
            [MasterKey.from_base64(settings.master_key_previous.get_secret_value())]
            if settings.master_key_previous is not None
            else []
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if current is None and new is None:
        raise click.UsageError("encryption is off: set PARLEY_MASTER_KEY (or --new-master-key)")

    async def job(db: Database) -> None:
        olds = [k for k in [current, *older] if k is not None]
        target = new or current
        assert target is not None
        if new is not None:
            await rewrap(db, new, olds, click.echo)
        if data_keys:
            totals = await rotate_data_keys(db, KeyRing(target, olds), click.echo)
            click.echo(
                f"done: {totals['tenants']} tenants, {totals['messages']} messages, "
                f"{totals['events']} events, {totals['deliveries']} webhook deliveries, "
                f"{totals['secrets']} webhook secrets, "
                f"{totals['documents']} document rows re-encrypted"
            )

    _run(settings, job)


def register(main: click.Group) -> None:
    """Add the governance commands to the ``parley`` group."""
    main.add_command(retention)
    main.add_command(purge_user)
    main.add_command(keys)

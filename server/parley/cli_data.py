"""``parley import``, ``parley export`` and ``parley session from-template``: the data
commands, run against the store directly (see ``offline.py``)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import orjson

from parley.config import Settings
from parley.errors import ParleyError
from parley.governance.auth import Principal, TenantRole, UserKind, valid_identifier
from parley.imports.formats import PARSERS, parley_json
from parley.imports.model import ImportedConversation, ParsedItem
from parley.logging import configure_logging

if TYPE_CHECKING:  # the storage stack loads only when a command runs: `parley --help` is fast
    from sqlalchemy.orm import Session

    from parley.imports.report import ImportReport


def _settings(data_dir: Path | None, database_url: str | None) -> Settings:
    """Settings for a data command; only warnings are logged (the command prints a summary)."""
    from parley.cli import _settings as settings_from

    settings = settings_from(data_dir=data_dir, database_url=database_url)
    configure_logging(settings.log_format, "warning")
    return settings


def _principal(tenant: str, user: str) -> Principal:
    for label, value in (("--tenant", tenant), ("--as-user", user)):
        if not valid_identifier(value):
            raise click.BadParameter(f"{value!r} is not a valid id", param_hint=label)
    return Principal(tenant, user, user, UserKind.HUMAN, TenantRole.ADMIN)


def _store_options(fn: Any) -> Any:
    fn = click.option(
        "--database-url", help="SQLAlchemy URL of the store. [env PARLEY_DATABASE_URL]"
    )(fn)
    fn = click.option(
        "--data-dir",
        type=click.Path(file_okay=False, path_type=Path),
        help="Folder of the SQLite file. [env PARLEY_DATA_DIR]",
    )(fn)
    fn = click.option(
        "--as-user",
        "as_user",
        default="admin",
        show_default=True,
        help="The user who does it (owner of created sessions).",
    )(fn)
    return click.option("--tenant", required=True, help="Tenant id.")(fn)


def _run(coro: Any) -> Any:
    try:
        return asyncio.run(coro)
    except ParleyError as exc:
        raise click.ClickException(f"{exc.code}: {exc.message}") from None


# -- import ------------------------------------------------------------------------------------


def print_report(report: ImportReport) -> None:
    verb = "would import" if report.dry_run else "imported"
    click.echo(
        f"{verb} {report.conversations} conversation(s): {report.sessions_created} new "
        f"session(s), {report.sessions_updated} updated; {report.messages_added} message(s) "
        f"added, {report.messages_present} already present; {report.notes} record(s) skipped "
        f"on purpose; {len(report.errors)} error(s)"
        + (
            f"; {report.files_restored} attachment file(s) restored"
            if report.files_restored
            else ""
        )
    )
    for error in report.errors:
        click.echo(f"  error: {error}", err=True)


@click.command("import")
@click.argument("fmt", metavar="FORMAT", type=click.Choice(sorted(PARSERS)))
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_store_options
@click.option("--dry-run", is_flag=True, help="Parse and check everything; write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def import_command(
    fmt: str,
    path: Path,
    tenant: str,
    as_user: str,
    data_dir: Path | None,
    database_url: str | None,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Import an export of another tool (or Parley's own) into sessions of a tenant.

    Importing the same file again adds nothing; a grown export adds only what is new. Bad
    records are reported with their file and line (or record) and skipped; the exit code is
    1 when any record failed.
    """
    from parley.offline import offline

    p = _principal(tenant, as_user)
    items: list[ParsedItem] = list(
        parley_json.parse_file(path)
        if fmt == "parley-json"  # archives with files: read from disk, entry by entry
        else PARSERS[fmt](path.name, path.read_bytes())
    )
    total = sum(isinstance(i, ImportedConversation) for i in items)
    settings = _settings(data_dir, database_url)

    async def run() -> ImportReport:
        async with offline(settings) as tools:
            with click.progressbar(
                length=total, label=f"importing {path.name}", file=sys.stderr, show_pos=True
            ) as bar:

                def advance(_conv: ImportedConversation) -> None:
                    bar.update(1)

                return await tools.importer.run(p, fmt, items, dry_run=dry_run, progress=advance)

    report: ImportReport = _run(run())
    if as_json:
        click.echo(orjson.dumps(report.to_dict(), option=orjson.OPT_INDENT_2).decode())
    else:
        print_report(report)
    if not report.ok:
        sys.exit(1)


# -- export ------------------------------------------------------------------------------------


@click.group("export")
def export_group() -> None:
    """Export a session (JSON or Markdown) or a whole tenant (zip archive)."""


@export_group.command("session")
@click.argument("session_id")
@_store_options
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["json", "md", "zip"]),
    default="json",
    show_default=True,
    help="zip: the JSON with the attachment files (needs -o).",
)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="File.")
def export_session(
    session_id: str,
    tenant: str,
    as_user: str,
    data_dir: Path | None,
    database_url: str | None,
    fmt: str,
    output: Path | None,
) -> None:
    """Write one session as JSON (everything, re-importable), as a zip of that JSON with the
    attachment files (re-importable with them), or as Markdown (a transcript)."""
    from parley.exports.archive import session_archive
    from parley.exports.markdown import render
    from parley.offline import offline

    p = _principal(tenant, as_user)
    if fmt == "zip" and output is None:
        raise click.BadParameter("a zip is written to a file: give -o FILE.zip", param_hint="-o")
    settings = _settings(data_dir, database_url)

    async def run() -> dict[str, Any]:
        async with offline(settings) as tools:
            export = await tools.exporter.session(p, session_id)
            if fmt == "zip" and output is not None:
                with output.open("wb") as out:
                    async for chunk in session_archive(export, tenant, tools.store):
                        out.write(chunk)
            return export

    export = _run(run())
    if fmt == "zip":
        click.echo(f"exported session {session_id} with its files to {output}")
        return
    data = (
        render(export).encode()
        if fmt == "md"
        else orjson.dumps(export, option=orjson.OPT_INDENT_2) + b"\n"
    )
    if output is None:
        click.echo(data.decode(), nl=False)
    else:
        output.write_bytes(data)


@export_group.command("tenant")
@_store_options
@click.option(
    "-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path), help="File."
)
def export_tenant(
    tenant: str, as_user: str, data_dir: Path | None, database_url: str | None, output: Path
) -> None:
    """Write every session of a tenant into one zip archive (one JSON per session, each
    attachment file once, and a manifest); `parley import parley-json` reads it back."""
    from parley.exports.archive import tenant_archive
    from parley.offline import offline

    p = _principal(tenant, as_user)
    settings = _settings(data_dir, database_url)

    async def run() -> int:
        count = 0
        async with offline(settings) as tools:
            total = await tools.db.read(_count_sessions(tenant))
            with (
                output.open("wb") as out,
                click.progressbar(
                    length=total, label=f"exporting {tenant}", file=sys.stderr, show_pos=True
                ) as bar,
            ):

                def advance(_entry: dict[str, Any]) -> None:
                    nonlocal count
                    count += 1
                    bar.update(1)

                async for chunk in tenant_archive(
                    tools.exporter, p, store=tools.store, progress=advance
                ):
                    out.write(chunk)
        return count

    count = _run(run())
    click.echo(f"exported {count} session(s) to {output}")


def _count_sessions(tenant: str) -> Callable[[Session], int]:
    """A unit of work counting the tenant's sessions (for the progress bar's length)."""
    from sqlalchemy import func, select

    from parley.storage import models as m

    def work(s: Session) -> int:
        return int(
            s.scalar(
                select(func.count()).select_from(m.Session).where(m.Session.tenant_id == tenant)
            )
            or 0
        )

    return work


# -- templates -------------------------------------------------------------------------------


def _variables(pairs: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not NAME=VALUE", param_hint="--var")
        out[key] = value
    return out


@click.group("session")
def session_group() -> None:
    """Sessions: create one from a template."""


@session_group.command("from-template")
@click.argument("name")
@_store_options
@click.option("--var", "pairs", multiple=True, metavar="NAME=VALUE", help="A template variable.")
@click.option("--title", help="Use this title instead of the template's title pattern.")
def session_from_template(
    name: str,
    tenant: str,
    as_user: str,
    data_dir: Path | None,
    database_url: str | None,
    pairs: tuple[str, ...],
    title: str | None,
) -> None:
    """Create a session from template NAME (built-in or the tenant's own); prints its id."""
    from parley.offline import offline
    from parley.templates.library import TemplateLibrary

    p = _principal(tenant, as_user)
    variables = _variables(pairs)
    settings = _settings(data_dir, database_url)

    async def run() -> dict[str, Any]:
        async with offline(settings) as tools:
            library = TemplateLibrary(tools.service, tools.importer)
            return await library.instantiate(p, name, variables, title=title)

    try:
        view = asyncio.run(run())
    except ParleyError as exc:
        lines = [f"{exc.code}: {exc.message}"]
        if isinstance(exc.details, list):
            lines += [f"  {d['field']}: {d['problem']}" for d in exc.details[1:]]
        raise click.ClickException("\n".join(lines)) from None
    click.echo(f"{view['id']}  {view['title']}")


@click.group("template")
def template_group() -> None:
    """Session templates."""


@template_group.command("list")
@_store_options
def template_list(
    tenant: str, as_user: str, data_dir: Path | None, database_url: str | None
) -> None:
    """The built-in templates and the tenant's own, with their variables."""
    from parley.offline import offline
    from parley.templates.library import TemplateLibrary

    p = _principal(tenant, as_user)
    settings = _settings(data_dir, database_url)

    async def run() -> list[dict[str, Any]]:
        async with offline(settings) as tools:
            return await TemplateLibrary(tools.service, tools.importer).list(p)

    for item in _run(run()):
        names = ", ".join(
            n + ("" if v.get("default") is None else f"={v['default']}")
            for n, v in item["variables"].items()
        )
        click.echo(f"{item['name']:<20} {item['source']:<8} {names}")
        if item["description"]:
            click.echo(f"{'':<20} {item['description']}")


def register(main: click.Group) -> None:
    """Add the data commands to the ``parley`` group."""
    main.add_command(import_command)
    main.add_command(export_group)
    main.add_command(session_group)
    main.add_command(template_group)

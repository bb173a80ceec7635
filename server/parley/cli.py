"""The ``parley`` command line: serve, migrate, token."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
import structlog
from pydantic import ValidationError

from parley import cli_governance
from parley.cli_attachments import attachments as attachments_cli
from parley.cli_audit import audit_group
from parley.cli_data import register as register_data_commands
from parley.cli_intelligence import analysis
from parley.config import Settings
from parley.governance.auth import TenantRole, UserKind, create_token
from parley.logging import configure_logging

_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _settings(**overrides: Any) -> Settings:
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        lines = [f"  {'.'.join(map(str, e['loc'])) or 'setting'}: {e['msg']}" for e in exc.errors()]
        raise click.UsageError("invalid settings:\n" + "\n".join(lines)) from None


def parse_duration(text: str) -> int | None:
    """'30d', '12h', '15m', '90s' or 'never' -> seconds (None for never)."""
    text = text.strip().lower()
    if text == "never":
        return None
    unit = text[-1:]
    number = text[:-1] if unit in _DURATION_UNITS else text
    try:
        value = int(number)
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not a duration like 30d, 12h, 15m, 90s or never"
        ) from None
    if value <= 0:
        raise click.BadParameter("a duration must be positive")
    return value * _DURATION_UNITS.get(unit, 1)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="parley")
def main() -> None:
    """Parley: a real-time server for shared conversation sessions between people, bots and LLMs.

    Server settings can also be set with environment variables named PARLEY_<SETTING>
    (for example PARLEY_PORT=9000); command-line flags win over the environment.
    """


@main.command()
@click.option("--host", help="Interface to listen on. [env PARLEY_HOST; default 127.0.0.1]")
@click.option(
    "--port", type=int, help="TCP port; 0 picks a free one. [env PARLEY_PORT; default 8000]"
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the SQLite file and the generated secret."
    " [env PARLEY_DATA_DIR; default ./parley-data]",
)
@click.option(
    "--database-url",
    help="SQLAlchemy URL of the store, e.g. postgresql+asyncpg://user@host/db. "
    "[env PARLEY_DATABASE_URL; default SQLite in the data folder]",
)
@click.option("--broker-url", help="Event broker URL. [env PARLEY_BROKER_URL; default memory://]")
@click.option(
    "--log-format",
    type=click.Choice(["console", "json"]),
    help="Log renderer. [env PARLEY_LOG_FORMAT; default console]",
)
@click.option(
    "--log-level",
    help="debug, info, warning, error or critical. [env PARLEY_LOG_LEVEL; default info]",
)
@click.option(
    "--demo-token",
    is_flag=True,
    help="Print a token (user 'admin', tenant 'default') and connection URLs at start-up.",
)
@click.option("--no-migrate", is_flag=True, help="Do not apply database migrations at start-up.")
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Processes sharing the port (needs --broker-url redis://...). [env PARLEY_WORKERS]",
    envvar="PARLEY_WORKERS",
)
def serve(demo_token: bool, no_migrate: bool, workers: int, **options: Any) -> None:
    """Run the server (WebSocket at /ws, REST at /api/v1, /healthz, /readyz, /metrics).

    Other limits (frame size, rates, queue length, timeouts) are set by environment:
    PARLEY_MAX_FRAME_BYTES, PARLEY_MAX_TEXT_CHARS, PARLEY_FRAME_RATE, PARLEY_FRAME_BURST,
    PARLEY_SEND_QUEUE_FRAMES, PARLEY_AUTH_TIMEOUT, PARLEY_SHUTDOWN_FLUSH_TIMEOUT, PARLEY_SECRET.
    See docs/configuration.md.
    """
    from parley.server import run, run_workers

    settings = _settings(**options)
    configure_logging(settings.log_format, settings.log_level)
    if demo_token:
        _print_demo_token(settings)
    if workers > 1:
        try:
            sys.exit(run_workers(settings, workers, migrate=not no_migrate))
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
    sys.exit(run(settings, migrate=not no_migrate))


def _print_demo_token(settings: Settings) -> None:
    token = create_token(
        settings.signing_key,
        user_id="admin",
        tenant_id="default",
        name="Admin",
        tenant_role=TenantRole.ADMIN,
    )
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    base = f"{host}:{settings.port}"
    click.echo(
        "\n  A token for user 'admin' in tenant 'default' (valid 30 days):\n\n"
        f"    {token}\n\n"
        f"  Workspace:  http://{base}/#token={token}\n"
        f"  WebSocket:  ws://{base}/ws?token=<token>\n"
        f"  REST:       curl -H 'Authorization: Bearer <token>' http://{base}/api/v1/sessions\n"
        "  More users: parley token create --user NAME --tenant default\n",
        err=False,
    )


@main.command()
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder of the SQLite file. [env PARLEY_DATA_DIR]",
)
@click.option("--database-url", help="SQLAlchemy URL of the store. [env PARLEY_DATABASE_URL]")
@click.option("--revision", default="head", show_default=True, help="Target revision.")
def migrate(revision: str, **options: Any) -> None:
    """Apply database migrations (safe to repeat)."""
    from parley.storage.migrate import upgrade

    settings = _settings(**options)
    configure_logging(settings.log_format, settings.log_level)
    structlog.get_logger("parley").info("migrating", database=settings.safe_summary()["database"])
    upgrade(settings.effective_database_url, revision)
    click.echo("database is at revision " + revision)


@main.group()
def token() -> None:
    """Create access tokens."""


@token.command("create")
@click.option("--user", "user_id", required=True, help="User id (letters, digits, ._@+-).")
@click.option("--tenant", "tenant_id", default="default", show_default=True, help="Tenant id.")
@click.option("--name", help="Display name. [default: the user id]")
@click.option(
    "--kind", type=click.Choice([k.value for k in UserKind]), default="human", show_default=True
)
@click.option(
    "--role",
    type=click.Choice([r.value for r in TenantRole]),
    default="member",
    show_default=True,
    help="Tenant role: admins manage members, keys, policies and the audit log.",
)
@click.option(
    "--ttl", default="30d", show_default=True, help="Lifetime: 30d, 12h, 15m, 90s or never."
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder holding the generated secret. [env PARLEY_DATA_DIR]",
)
def token_create(
    user_id: str,
    tenant_id: str,
    name: str | None,
    kind: str,
    role: str,
    ttl: str,
    data_dir: Path | None,
) -> None:
    """Print a bearer token for a user, signed with PARLEY_SECRET or the data folder's key."""
    settings = _settings(data_dir=data_dir)
    try:
        value = create_token(
            settings.signing_key,
            user_id=user_id,
            tenant_id=tenant_id,
            name=name,
            kind=UserKind(kind),
            tenant_role=TenantRole(role),
            ttl_seconds=parse_duration(ttl),
        )
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    click.echo(value)


# Imports, exports and templates (cli_data.py).
register_data_commands(main)
main.add_command(attachments_cli)
# Governance data commands (retention, purge-user, keys): their own module.
cli_governance.register(main)
main.add_command(audit_group)
# Conversation intelligence: the analysis worker (cli_intelligence.py).
main.add_command(analysis)

if __name__ == "__main__":
    main()

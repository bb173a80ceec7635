"""One settings object, read from ``PARLEY_*`` environment variables and CLI flags."""

from __future__ import annotations

import secrets
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything an operator can set. CLI flags of ``parley serve`` override the environment."""

    model_config = SettingsConfigDict(env_prefix="PARLEY_", extra="ignore")

    host: str = Field("127.0.0.1", description="Interface to listen on.")
    port: int = Field(
        8000, ge=0, le=65535, description="TCP port to listen on (0 picks a free one)."
    )
    data_dir: Path = Field(
        Path("parley-data"),
        description="Folder for the SQLite file and the generated secret.",
    )
    database_url: str | None = Field(
        None,
        description=(
            "SQLAlchemy URL of the store. Unset: SQLite file in the data folder. "
            "For PostgreSQL: postgresql+asyncpg://user@host:5432/db"
        ),
    )
    broker_url: str = Field(
        "memory://",
        description="Event broker. memory:// runs everything in one process.",
    )
    redis_sharded: bool = Field(
        False, description="Use sharded pub/sub (SPUBLISH/SSUBSCRIBE) for Redis Cluster."
    )
    presence_ttl: float = Field(
        30.0,
        gt=0,
        description="Seconds after which the presence of a process that stopped expires.",
    )
    secret: SecretStr | None = Field(
        None,
        description="HS256 signing key for tokens. Unset: generated once into the data folder.",
    )
    log_format: Literal["console", "json"] = Field("console", description="Log renderer.")
    log_level: str = Field("info", description="Minimum log level.")
    max_frame_bytes: int = Field(
        64 * 1024, ge=1024, description="Largest client frame accepted; larger ones get an error."
    )
    max_text_chars: int = Field(32_000, ge=1, description="Longest message text in characters.")
    frame_rate: float = Field(50.0, gt=0, description="Sustained client frames per second.")
    frame_burst: int = Field(200, ge=1, description="Client frames allowed in a burst.")
    send_queue_frames: int = Field(
        2048, ge=16, description="Frames buffered per connection before it counts as too slow."
    )
    auth_timeout: float = Field(
        10.0, gt=0, description="Seconds a socket may stay open before sending its hello."
    )
    shutdown_flush_timeout: float = Field(
        5.0, ge=0, description="Seconds to flush send queues on shutdown before closing (1012)."
    )

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        value = value.lower()
        if value not in {"debug", "info", "warning", "error", "critical"}:
            raise ValueError("log level must be debug, info, warning, error or critical")
        return value

    @property
    def effective_database_url(self) -> str:
        """The store URL: the configured one, or the SQLite file in the data folder."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'parley.db').resolve()}"

    @cached_property
    def signing_key(self) -> str:
        """The token signing key; generated and stored in the data folder on first use."""
        if self.secret is not None:
            return self.secret.get_secret_value()
        path = self.data_dir / "secret.key"
        if path.exists():
            return path.read_text().strip()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(48)
        path.touch(mode=0o600)
        path.write_text(key + "\n")
        return key

    def safe_summary(self) -> dict[str, object]:
        """Settings fit for a log line: no secrets, passwords masked in URLs."""
        return {
            "host": self.host,
            "port": self.port,
            "data_dir": str(self.data_dir),
            "database": _mask_url(self.effective_database_url),
            "broker": _mask_url(self.broker_url),
            "log_format": self.log_format,
        }


def _mask_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1]

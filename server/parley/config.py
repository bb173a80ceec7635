"""One settings object, read from ``PARLEY_*`` environment variables and CLI flags."""

from __future__ import annotations

import secrets
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
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
    socket_send_buffer: int = Field(
        64 * 1024,
        ge=0,
        description="Kernel send buffer per connection in bytes, so a stalled client is cut off"
        " at the queue cap in bounded time and memory (0: the kernel's autotuning).",
    )
    listen_backlog: int = Field(
        4096,
        ge=16,
        description="Connections the kernel queues until the server accepts them (Linux caps it"
        " at net.core.somaxconn). A reconnect storm of thousands overflowed uvicorn's 2048, and"
        " each dropped handshake waits for a retransmission (1, 2, 4... s).",
    )
    ws_compression: bool = Field(
        False,
        description="Offer permessage-deflate to WebSocket clients (browsers accept it). Off:"
        " each event is then framed once and written as is to every subscriber; a compressing"
        " subscriber costs the server its own compression of every frame (measured: 23-25 us"
        " of CPU per delivered frame against 10 us), worth it only on slow links.",
    )
    auth_timeout: float = Field(
        10.0, gt=0, description="Seconds a socket may stay open before sending its hello."
    )
    shutdown_flush_timeout: float = Field(
        5.0, ge=0, description="Seconds to flush send queues on shutdown before closing (1012)."
    )
    # Collaborative documents (docs/documents.md).
    doc_max_update_bytes: int = Field(
        128 * 1024,
        ge=1024,
        description="Largest Yjs update accepted (also bounded by the transport, 4 x frame size).",
    )
    doc_max_bytes: int = Field(
        8 * 1024 * 1024, ge=4096, description="Largest encoded size a session document may reach."
    )
    doc_max_awareness_bytes: int = Field(
        8 * 1024, ge=256, description="Largest awareness (presence) state of one client, as JSON."
    )
    doc_compact_updates: int = Field(
        200, ge=2, description="Stored updates of a document that trigger compaction."
    )
    doc_compact_bytes: int = Field(
        512 * 1024, ge=1024, description="Bytes of stored updates that trigger compaction."
    )
    doc_idle_seconds: float = Field(
        5.0, ge=0, description="Seconds a document stays in memory after its last client left."
    )
    doc_awareness_timeout: float = Field(
        30.0, gt=0, description="Seconds after which a presence entry that was not renewed ends."
    )
    doc_resync_interval: float = Field(
        30.0, gt=0, description="Seconds between state-vector exchanges of processes on a doc."
    )
    doc_role_ttl: float = Field(
        5.0, ge=0, description="Seconds a document client's role is trusted before re-reading."
    )

    # LLM relay (docs/relay.md). Keys are secrets: never logged, never in safe_summary().
    relay_openai_api_key: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices(
            "relay_openai_api_key", "PARLEY_RELAY_OPENAI_API_KEY", "OPENAI_API_KEY"
        ),
        description="Key for the openai and openai_responses providers (or OPENAI_API_KEY).",
    )
    relay_openai_base_url: str | None = Field(
        None, description="Base URL of the OpenAI API. Unset: the SDK's default."
    )
    relay_anthropic_api_key: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices(
            "relay_anthropic_api_key", "PARLEY_RELAY_ANTHROPIC_API_KEY", "ANTHROPIC_API_KEY"
        ),
        description="Key for the anthropic provider (or ANTHROPIC_API_KEY).",
    )
    relay_anthropic_base_url: str | None = Field(
        None, description="Base URL of the Anthropic API. Unset: the SDK's default."
    )
    relay_compatible_base_url: str = Field(
        "http://127.0.0.1:11434/v1",
        description="Base URL of the openai_compatible provider (default: a local Ollama).",
    )
    relay_compatible_api_key: SecretStr | None = Field(
        None, description="Key for the openai_compatible provider, if its server needs one."
    )
    relay_credentials_file: Path | None = Field(
        None, description="JSON file of per-tenant provider keys and base URLs (re-read on change)."
    )
    relay_price_file: Path | None = Field(
        None, description="JSON price table per million tokens (re-read on change)."
    )
    relay_coalesce_ms: float = Field(
        40.0, ge=0, description="Longest wait before buffered tokens go out as one delta event."
    )
    relay_coalesce_bytes: int = Field(
        256, ge=1, description="Buffered bytes that send a delta event at once."
    )
    relay_lease_ttl: float = Field(
        15.0, gt=0, description="Seconds after which a stream of a process that died is reaped."
    )
    relay_max_attempts: int = Field(
        3, ge=1, description="Provider calls per answer (retries happen before the first token)."
    )
    relay_retry_base_delay: float = Field(
        0.5, ge=0, description="First retry delay in seconds; doubles per attempt, jittered."
    )
    relay_retry_max_delay: float = Field(10.0, ge=0, description="Longest retry delay in seconds.")
    relay_connect_timeout: float = Field(
        10.0, gt=0, description="Seconds to connect to a provider."
    )
    relay_first_token_timeout: float = Field(
        60.0, gt=0, description="Seconds to wait for a provider's first event."
    )
    relay_idle_timeout: float = Field(
        60.0, gt=0, description="Seconds a provider stream may stay silent."
    )
    relay_max_duration: float = Field(
        600.0, gt=0, description="Longest generation in seconds; then it is stopped (length)."
    )
    relay_tenant_concurrency: int = Field(
        8, ge=1, description="Generations one tenant may run at once, across all processes."
    )
    relay_queue_limit: int = Field(
        8, ge=0, description="Prompts that may wait per assistant and session (queue policy)."
    )
    relay_context_window: int = Field(
        8192, ge=512, description="Context window in tokens for models the relay does not know."
    )
    relay_max_output_tokens: int = Field(
        1024, ge=1, description="Answer token limit for assistants that set none."
    )

    # Integrations (docs/integrations.md): webhooks, live event feeds, automation rules, SSO.
    webhook_max_attempts: int = Field(
        10, ge=1, description="HTTP attempts per webhook delivery before it is marked failed."
    )
    webhook_retry_base: float = Field(
        5.0, gt=0, description="Backoff bound after the first failure in seconds; doubles."
    )
    webhook_retry_max: float = Field(
        3600.0, gt=0, description="Longest wait between two attempts of a delivery, in seconds."
    )
    webhook_timeout: float = Field(
        10.0, gt=0, description="Seconds a receiver has to answer a delivery."
    )
    webhook_disable_after: int = Field(
        50, ge=1, description="Consecutive failed attempts after which an endpoint is disabled."
    )
    webhook_allow_private: bool = Field(
        False,
        description="Allow webhook URLs on loopback, private and link-local addresses.",
    )
    webhook_concurrency: int = Field(
        16, ge=1, description="Deliveries one process posts at the same time."
    )
    integrations_workers: bool = Field(
        True,
        description="Run the webhook dispatcher and delivery worker and the automation engine"
        " in this process (one process holds each consumer's lease at a time).",
    )
    feed_poll_interval: float = Field(
        1.0, gt=0, description="Seconds between feed reads when no nudge arrives."
    )
    feed_heartbeat: float = Field(
        15.0, gt=0, description="Seconds between heartbeat comments on an idle event stream."
    )
    feed_retention: float = Field(
        7 * 24 * 3600.0,
        ge=0,
        description="Seconds the tenant feed keeps an event that every consumer has read and"
        " every enabled webhook has received; older ones are deleted.",
    )
    feed_retention_interval: float = Field(
        3600.0, ge=0, description="Seconds between passes of the feed retention job (0: never)."
    )
    oidc_issuer: str | None = Field(
        None, description="OpenID Connect issuer whose tokens are accepted (unset: SSO off)."
    )
    oidc_audience: str | None = Field(
        None, description="The audience (client id) OIDC tokens must name."
    )
    oidc_jwks_url: str | None = Field(
        None, description="JWKS URL. Unset: from the issuer's /.well-known/openid-configuration."
    )
    oidc_algorithms: list[str] = Field(
        ["RS256", "ES256"], description="Signature algorithms accepted for OIDC tokens."
    )
    oidc_user_claim: str = Field("sub", description="Claim holding the user id.")
    oidc_name_claim: str = Field("name", description="Claim holding the display name.")
    oidc_tenant_claim: str = Field("tid", description="Claim holding the tenant id.")
    oidc_default_tenant: str | None = Field(
        None, description="Tenant for OIDC tokens without the tenant claim (unset: refused)."
    )
    oidc_role_claim: str = Field(
        "roles", description="Claim holding the user's roles (a string or a list)."
    )
    oidc_admin_roles: list[str] = Field(
        ["admin"], description="Values of the role claim that make a tenant admin."
    )
    oidc_leeway: float = Field(30.0, ge=0, description="Clock skew allowed on exp/nbf/iat.")
    oidc_jwks_min_refresh: float = Field(
        10.0, ge=0, description="Least seconds between two JWKS fetches caused by unknown keys."
    )
    automation_max_depth: int = Field(
        3, ge=1, description="Automation actions caused by automation actions before a loop stop."
    )
    automation_claim_lease: float = Field(
        300.0,
        gt=0,
        description="Seconds after which a scheduled occurrence that a process claimed but never"
        " finished (it died) is claimed and run again.",
    )

    # Conversation intelligence (docs/intelligence.md): the analysis worker and the optional LLM.
    analysis_worker: bool = Field(
        True, description="Run the analysis worker in this process (several may share the queue)."
    )
    analysis_poll_interval: float = Field(
        1.0, gt=0, description="Seconds between looks at the analysis queue."
    )
    analysis_debounce: float = Field(
        2.0, ge=0, description="Quiet seconds after a session's last message before analysis."
    )
    analysis_max_delay: float = Field(
        30.0, ge=0, description="Longest wait for analysis of a session that never goes quiet."
    )
    analysis_lease: float = Field(
        120.0, gt=0, description="Seconds a claimed job stays claimed before others may retry it."
    )
    semantic: bool = Field(
        True,
        description="Semantic search and related sessions by embeddings, when the optional"
        " `semantic` extra is installed; false turns them off (related sessions use TF-IDF).",
    )
    intelligence_llm_provider: (
        Literal["openai", "openai_responses", "anthropic", "openai_compatible", "scripted"] | None
    ) = Field(
        None,
        description="Provider for LLM summaries and query parsing (keys as for the relay)."
        " Unset: the offline methods only.",
    )
    intelligence_llm_model: str = Field(
        "gpt-4o-mini", description="Model for LLM summaries and query parsing."
    )

    # Governance and security (governance/, docs/security.md).
    default_visibility: Literal["private", "tenant", "open"] = Field(
        "open",
        description="Visibility of new sessions that name none: private (participants only), "
        "tenant (members read as viewers) or open (members read, and join by writing).",
    )
    cors_allowed_origins: str = Field(
        "",
        description="Comma-separated browser origins allowed to call the REST API "
        "(e.g. https://app.example.com); empty allows none, * allows any.",
    )
    hsts_seconds: int = Field(
        0, ge=0, description="Strict-Transport-Security max-age to send (0: none; set behind TLS)."
    )
    audit_flush_interval: float = Field(
        0.1, gt=0, le=10, description="Seconds the audit recorder batches entries per tenant."
    )
    tenant_guard: Literal["off", "log", "raise"] = Field(
        "off",
        description="Check every query on tenant-owned tables for a tenant filter: log or "
        "raise on one that has none (the test suite raises).",
    )

    @property
    def cors_origins(self) -> list[str]:
        return [o.strip() for o in self.cors_allowed_origins.split(",") if o.strip()]

    # Governance data: quotas, retention, PII, encryption at rest, API keys (docs/privacy.md).
    # Quota defaults for every tenant; 0 means unlimited. Tenant admins override them per tenant.
    quota_sessions: int = Field(0, ge=0, description="Active sessions per tenant.")
    quota_messages_per_minute: int = Field(
        0, ge=0, description="Messages per tenant per minute (socket sends and REST posts)."
    )
    quota_connections: int = Field(0, ge=0, description="Open WebSockets per tenant.")
    quota_llm_tokens_per_month: int = Field(
        0, ge=0, description="LLM input + output tokens per tenant per calendar month (UTC)."
    )
    quota_llm_cost_per_month: float = Field(
        0.0, ge=0, description="LLM cost per tenant per calendar month, in the price currency."
    )
    policy_cache_seconds: float = Field(
        5.0, ge=0, description="Seconds a tenant's policy is cached by each process."
    )
    pii_mode: Literal["off", "flag", "redact", "redact_llm"] = Field(
        "off", description="PII handling for tenants that set none."
    )
    pii_phone_regions: str = Field(
        "US,GB", description="Countries whose national phone formats the PII detector knows."
    )
    retention_interval: float = Field(
        3600.0, ge=0, description="Seconds between retention runs in the server (0: never)."
    )
    retention_archive_after_days: int | None = Field(
        None, ge=1, description="Archive sessions idle this many days (tenants may override)."
    )
    retention_purge_after_days: int | None = Field(
        None, ge=1, description="Delete sessions idle this many days (tenants may override)."
    )
    master_key: SecretStr | None = Field(
        None,
        description="Base64 of 32 bytes: turns on encryption at rest (or master.key in the"
        " data folder).",
    )
    master_key_previous: SecretStr | None = Field(
        None, description="The master key being rotated away from (see parley keys rotate)."
    )
    api_key_cache_seconds: float = Field(
        2.0, ge=0, description="Seconds a process trusts an API key lookup (revocation delay)."
    )

    # -- imports (imports/, api/imports.py) -------------------------------------------------
    import_max_bytes: int = Field(
        25 * 1024 * 1024,
        ge=1024,
        description="Largest export file accepted by POST /api/v1/imports (imported in the "
        "request; use `parley import` for larger files).",
    )

    # Attachments (docs/graphql-attachments.md): files and images on messages.
    attachment_dir: Path | None = Field(
        None, description="Folder of the attachment blobs. Unset: attachments/ in the data folder."
    )
    attachment_max_bytes: int = Field(
        20 * 1024 * 1024, ge=1024, description="Largest attachment in bytes (one file)."
    )
    attachment_tenant_quota_bytes: int = Field(
        1024 * 1024 * 1024, ge=1024, description="Total attachment bytes one tenant may store."
    )
    attachment_thumbnail_px: int = Field(
        320, ge=16, le=2048, description="Longest side of image thumbnails in pixels."
    )
    attachment_max_image_pixels: int = Field(
        50_000_000,
        ge=1,
        description="Largest image (width x height) decoded; larger ones are refused as bombs.",
    )
    attachment_orphan_grace: float = Field(
        24 * 3600.0,
        ge=0,
        description="Seconds an upload may stay unreferenced by any message before it is"
        " collected (also the age below which an unreferenced blob is never deleted).",
    )
    attachment_gc_interval: float = Field(
        3600.0, ge=0, description="Seconds between garbage collections of blobs (0: never)."
    )
    relay_max_image_bytes: int = Field(
        5 * 1024 * 1024,
        ge=1024,
        description="Largest image sent to a provider; larger ones are scaled down first.",
    )
    relay_image_max_side: int = Field(
        1568,
        ge=64,
        description="Longest side of an image sent to a provider; larger ones are scaled down.",
    )
    relay_vision_models: str = Field(
        "",
        description="Comma-separated model name prefixes that accept images, beyond the known"
        " ones (e.g. llava for a local server).",
    )

    # GraphQL (docs/graphql-attachments.md).
    graphql_max_depth: int = Field(10, ge=2, description="Deepest GraphQL selection accepted.")
    graphql_max_complexity: int = Field(
        5000, ge=10, description="Largest estimated GraphQL query cost (fields x page sizes)."
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

    @property
    def effective_attachment_dir(self) -> Path:
        """Where attachment blobs live: the configured folder or the data folder's."""
        return self.attachment_dir or self.data_dir / "attachments"

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

"""Tables. Every row carries its tenant; composite keys keep tenants apart by construction."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite hands back naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


Json = JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Tenant(Base):
    __tablename__ = "tenants"
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class User(Base):
    __tablename__ = "users"
    tenant_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))  # human | bot | assistant
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    __table_args__ = (ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE"),)


class Session(Base):
    __tablename__ = "sessions"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(128))
    title: Mapped[str] = mapped_column(String(500))
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", Json)
    status: Mapped[str] = mapped_column(String(16))  # active | archived
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seq: Mapped[int] = mapped_column(BigInteger)
    # Who may read it besides its participants (governance/policy.py): private | tenant | open
    visibility: Mapped[str] = mapped_column(String(16), server_default="open")
    # Bumped when stored events are rewritten (a user purge): memory copies of recent events
    # (hub/feed.py) made before that are not served again.
    history_rev: Mapped[int] = mapped_column(BigInteger, server_default="0")
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE"),
        Index(None, "tenant_id", "status", "id"),
    )


class SessionTag(Base):
    __tablename__ = "session_tags"
    session_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tag: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(128))
    __table_args__ = (
        ForeignKeyConstraint(["session_id"], ["sessions.id"], ondelete="CASCADE"),
        Index(None, "tenant_id", "tag", "session_id"),
    )


class Participant(Base):
    __tablename__ = "participants"
    session_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(16))  # owner | editor | commenter | viewer
    joined_at: Mapped[datetime] = mapped_column(UTCDateTime)
    __table_args__ = (
        ForeignKeyConstraint(["session_id"], ["sessions.id"], ondelete="CASCADE"),
        Index(None, "tenant_id", "user_id"),
    )


class Message(Base):
    __tablename__ = "messages"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(128))
    session_id: Mapped[str] = mapped_column(String(64))
    seq: Mapped[int] = mapped_column(BigInteger)
    author_id: Mapped[str] = mapped_column(String(128))
    parent_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    text: Mapped[str] = mapped_column(Text)
    parts: Mapped[list[dict[str, Any]] | None] = mapped_column(Json, nullable=True)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", Json)
    client_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    edited_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    __table_args__ = (
        ForeignKeyConstraint(["session_id"], ["sessions.id"], ondelete="CASCADE"),
        UniqueConstraint("session_id", "author_id", "client_id"),
        Index(None, "session_id", "seq"),
    )


class Event(Base):
    """The durable per-session event log that replay reads. ``seq`` is gap-free per session."""

    __tablename__ = "events"
    session_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(128))
    name: Mapped[str] = mapped_column(String(64))
    actor_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    data: Mapped[dict[str, Any]] = mapped_column(Json)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    __table_args__ = (ForeignKeyConstraint(["session_id"], ["sessions.id"], ondelete="CASCADE"),)


# -- collaborative documents (crdt/) ----------------------------------------------------------
# A session's Yjs document is stored as one snapshot (the compacted state) plus an append-only
# log of updates. Loading applies both; compaction merges the log into the snapshot. Nothing
# ever replaces stored state with in-memory state, so storage can only grow in content.

AutoId = BigInteger().with_variant(Integer, "sqlite")  # SQLite autoincrements INTEGER keys only


class DocSnapshot(Base):
    """The compacted state of a session document (a Yjs update encoding the whole document)."""

    __tablename__ = "doc_snapshots"
    session_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(128))
    state: Mapped[bytes] = mapped_column(LargeBinary)
    # Bumped by every compaction; a compaction writes only over the version it read.
    version: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    __table_args__ = (ForeignKeyConstraint(["session_id"], ["sessions.id"], ondelete="CASCADE"),)


class DocUpdate(Base):
    """One stored batch of Yjs updates of a session document, not yet compacted."""

    __tablename__ = "doc_updates"
    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(String(64))
    tenant_id: Mapped[str] = mapped_column(String(128))
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    __table_args__ = (
        ForeignKeyConstraint(["session_id"], ["sessions.id"], ondelete="CASCADE"),
        Index(None, "session_id", "id"),
    )


# -- LLM relay (relay/) -----------------------------------------------------------------------
# An assistant is an LLM participant of one session. It writes as its own user (kind
# "assistant", id ``user_id``), so its answers are ordinary messages with ordinary seqs.


class Assistant(Base):
    """An assistant of a session: which provider and model, how it is prompted and triggered."""

    __tablename__ = "assistants"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(128))
    session_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(64))  # unique per session, ignoring case
    user_id: Mapped[str] = mapped_column(String(128))
    provider: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(String(200))
    system_prompt: Mapped[str] = mapped_column(Text)
    params: Mapped[dict[str, Any]] = mapped_column(Json)
    trigger: Mapped[str] = mapped_column(String(16))  # mention | message | manual
    busy_policy: Mapped[str] = mapped_column(String(16))  # queue | interrupt | reject
    context_window: Mapped[int | None] = mapped_column(Integer, nullable=True)
    max_output_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    __table_args__ = (
        ForeignKeyConstraint(["session_id"], ["sessions.id"], ondelete="CASCADE"),
        UniqueConstraint("session_id", "name"),
        Index(None, "tenant_id", "session_id"),
    )


# -- conversation intelligence (intelligence/) ------------------------------------------------
# ``search_docs`` and ``analysis_jobs`` are written by database triggers (migration 0009) in the
# same transaction as the message, title, tag or annotation they follow; the code only reads
# them, and the analysis worker claims and clears jobs. The other tables hold what analysis
# produced, each row with what produced it.


class SearchDoc(Base):
    """One searchable text: a message, a session title, a tag or an annotation.

    SQLite indexes ``body`` in the FTS5 table ``search_fts`` (rowid = ``id``); PostgreSQL in the
    generated ``tsv`` column (GIN). Neither is mapped here: the search backends query them.
    """

    __tablename__ = "search_docs"
    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(128), index=True)
    session_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))  # message | title | tag | annotation
    ref_id: Mapped[str] = mapped_column(String(128))
    author_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    created_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    body: Mapped[str] = mapped_column(Text)
    __table_args__ = (UniqueConstraint("session_id", "kind", "ref_id"),)


class AnalysisJob(Base):
    """A session waiting for analysis. Times are seconds since the epoch (set by triggers)."""

    __tablename__ = "analysis_jobs"
    session_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(128))
    first_requested_at: Mapped[float] = mapped_column(Float)
    requested_at: Mapped[float] = mapped_column(Float)
    claimed_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    claimed_until: Mapped[float | None] = mapped_column(Float, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)


class MessageInsight(Base):
    """Sentiment and intent of one message, for the text whose hash is ``text_hash``."""

    __tablename__ = "message_insights"
    message_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(128))
    session_id: Mapped[str] = mapped_column(String(64))
    seq: Mapped[int] = mapped_column(BigInteger)
    author_id: Mapped[str] = mapped_column(String(128))
    text_hash: Mapped[str] = mapped_column(String(32))
    sentiment: Mapped[float] = mapped_column(Float)
    sentiment_label: Mapped[str] = mapped_column(String(16))
    intent: Mapped[str] = mapped_column(String(16))
    analyzed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    __table_args__ = (
        ForeignKeyConstraint(["session_id"], ["sessions.id"], ondelete="CASCADE"),
        Index(None, "session_id", "seq"),
    )


class SessionInsight(Base):
    """What analysis found in a session: terms, keywords, topics, sentiment trend, intents."""

    __tablename__ = "session_insights"
    session_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(128), index=True)
    terms: Mapped[dict[str, Any]] = mapped_column(Json)
    keywords: Mapped[list[Any]] = mapped_column(Json)
    topics: Mapped[list[Any]] = mapped_column(Json)
    sentiment: Mapped[dict[str, Any]] = mapped_column(Json)
    intents: Mapped[dict[str, Any]] = mapped_column(Json)
    auto_title: Mapped[str | None] = mapped_column(String(500), nullable=True)
    analyzed_seq: Mapped[int] = mapped_column(BigInteger)
    message_count: Mapped[int] = mapped_column(Integer)
    analyzed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    __table_args__ = (ForeignKeyConstraint(["session_id"], ["sessions.id"], ondelete="CASCADE"),)


class Embedding(Base):
    """A sentence embedding of a message, a session title, or a whole session (the normalized
    mean of the others), written by the analysis worker when the ``semantic`` extra is installed.

    ``ref_id`` is the message id (kind ``message``) or the session id (``title``, ``session``).
    ``vector`` holds ``dims`` float32 values, little-endian, unit length. ``text_hash`` is the
    hash of the embedded text, so unchanged text is never embedded twice. On PostgreSQL with
    the pgvector extension, migration 0010 adds a ``pgv vector`` column with the same values
    (not mapped here: ``semantic.store`` writes and queries it).
    """

    __tablename__ = "embeddings"
    session_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    ref_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(128))
    model: Mapped[str] = mapped_column(String(200))
    dims: Mapped[int] = mapped_column(Integer)
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    text_hash: Mapped[str] = mapped_column(String(32))
    embedded_at: Mapped[datetime] = mapped_column(UTCDateTime)
    __table_args__ = (
        ForeignKeyConstraint(["session_id"], ["sessions.id"], ondelete="CASCADE"),
        Index("ix_embeddings_tenant_id_model_kind", "tenant_id", "model", "kind"),
    )


class SessionSummary(Base):
    """A summary of messages ``from_seq < seq <= to_seq`` and what produced it."""

    __tablename__ = "session_summaries"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(128))
    session_id: Mapped[str] = mapped_column(String(64))
    from_seq: Mapped[int] = mapped_column(BigInteger)
    to_seq: Mapped[int] = mapped_column(BigInteger)
    text: Mapped[str] = mapped_column(Text)
    method: Mapped[str] = mapped_column(String(32))  # extractive | llm
    model: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    __table_args__ = (
        ForeignKeyConstraint(["session_id"], ["sessions.id"], ondelete="CASCADE"),
        Index(None, "session_id", "from_seq", "to_seq"),
    )


class TagSuggestion(Base):
    """A tag analysis suggests for a session, the words that explain it, and the decision."""

    __tablename__ = "tag_suggestions"
    session_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tag: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(128))
    score: Mapped[float] = mapped_column(Float)
    words: Mapped[list[Any]] = mapped_column(Json)
    status: Mapped[str] = mapped_column(String(16))  # suggested | accepted | rejected
    decided_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    __table_args__ = (ForeignKeyConstraint(["session_id"], ["sessions.id"], ondelete="CASCADE"),)


class SessionRead(Base):
    """Where a user last was in a session: "summarize since I was last here" starts there."""

    __tablename__ = "session_reads"
    session_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(128))
    last_seen_seq: Mapped[int] = mapped_column(BigInteger)
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    __table_args__ = (ForeignKeyConstraint(["session_id"], ["sessions.id"], ondelete="CASCADE"),)


class TagRule(Base):
    """A tenant's decision on a suggestible tag: ``accepted`` (analysis applies it to every
    session it would suggest it for) or ``rejected`` (never suggested in the tenant)."""

    __tablename__ = "tag_rules"
    tenant_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    tag: Mapped[str] = mapped_column(String(64), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    decided_by: Mapped[str] = mapped_column(String(128))
    decided_at: Mapped[datetime] = mapped_column(UTCDateTime)


# -- governance (governance/): removals, sharing, the audit trail ----------------------------
# A removal is remembered so that a removed user cannot walk back in by writing or reading an
# open session; an owner, a tenant admin or an invitation lifts it. Share-link secrets are
# stored only as their SHA-256. The audit log is hash-chained per tenant; ``audit_heads`` holds
# each chain's head and is the row a writer locks to append.


class SessionRemoval(Base):
    __tablename__ = "session_removals"
    session_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(128))
    removed_by: Mapped[str] = mapped_column(String(128))
    removed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    __table_args__ = (ForeignKeyConstraint(["session_id"], ["sessions.id"], ondelete="CASCADE"),)


class Invitation(Base):
    __tablename__ = "invitations"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(128))
    session_id: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(16))
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    __table_args__ = (
        ForeignKeyConstraint(["session_id"], ["sessions.id"], ondelete="CASCADE"),
        Index(None, "tenant_id", "session_id"),
        Index(None, "tenant_id", "user_id"),
    )


class ShareLink(Base):
    __tablename__ = "share_links"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(128))
    session_id: Mapped[str] = mapped_column(String(64))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    max_uses: Mapped[int | None] = mapped_column(Integer, nullable=True)
    uses: Mapped[int] = mapped_column(Integer)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    __table_args__ = (
        ForeignKeyConstraint(["session_id"], ["sessions.id"], ondelete="CASCADE"),
        Index(None, "tenant_id", "session_id"),
    )


class AuditHead(Base):
    """The newest link of a tenant's audit chain; appenders lock this row."""

    __tablename__ = "audit_heads"
    tenant_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))


class AuditEntry(Base):
    """One audited action. ``hash`` covers every other field and ``prev_hash``."""

    __tablename__ = "audit_log"
    tenant_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(128))
    actor_kind: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(64))
    target_type: Mapped[str] = mapped_column(String(32))
    target_id: Mapped[str] = mapped_column(String(200))
    client: Mapped[str | None] = mapped_column(String(100), nullable=True)
    result: Mapped[str] = mapped_column(String(16))  # ok | denied | error
    code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    details: Mapped[dict[str, Any]] = mapped_column(Json)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    __table_args__ = (
        Index(None, "tenant_id", "actor", "seq"),
        Index(None, "tenant_id", "target_id", "seq"),
        Index(None, "tenant_id", "at"),
    )


# -- governance data: quotas, retention, PII, encryption, API keys (governance/) -------------
# docs/privacy.md. Policies are per tenant (one row, defaults when absent); retention may be
# overridden per session. Data keys are stored only wrapped by the master key.


class TenantPolicy(Base):
    """A tenant's quotas, retention and PII settings; absent columns fall back to settings."""

    __tablename__ = "tenant_policies"
    tenant_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    quotas: Mapped[dict[str, Any]] = mapped_column(Json)  # name -> limit (0 = unlimited)
    pii_mode: Mapped[str] = mapped_column(String(16))  # off | flag | redact | redact_llm
    archive_after_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    purge_after_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    __table_args__ = (ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE"),)


class SessionRetention(Base):
    """A session's own retention, overriding its tenant's."""

    __tablename__ = "session_retention"
    session_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(128))
    archive_after_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    purge_after_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    __table_args__ = (ForeignKeyConstraint(["session_id"], ["sessions.id"], ondelete="CASCADE"),)


class TenantUsage(Base):
    """LLM tokens and cost of a tenant in one calendar month (UTC), for the monthly quotas."""

    __tablename__ = "tenant_usage"
    tenant_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    period: Mapped[str] = mapped_column(String(7), primary_key=True)  # YYYY-MM
    llm_tokens: Mapped[int] = mapped_column(BigInteger)
    llm_cost_micros: Mapped[int] = mapped_column(BigInteger)  # USD millionths
    __table_args__ = (ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE"),)


class TenantKey(Base):
    """A tenant's data key (AES-256), wrapped by the master key. Newest version encrypts."""

    __tablename__ = "tenant_keys"
    tenant_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    wrapped: Mapped[bytes] = mapped_column(LargeBinary)
    master_id: Mapped[str] = mapped_column(String(32))  # fingerprint of the wrapping key
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    __table_args__ = (ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE"),)


class ApiKey(Base):
    """A bot's API key: only the SHA-256 of its secret is stored."""

    __tablename__ = "api_keys"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(128))
    user_id: Mapped[str] = mapped_column(String(128))  # the bot it authenticates as
    name: Mapped[str] = mapped_column(String(200))
    scopes: Mapped[list[str]] = mapped_column(Json)
    secret_hash: Mapped[str] = mapped_column(String(64))
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE"),
        Index(None, "tenant_id", "created_at"),
    )


# -- imports and templates (imports/, templates/) ---------------------------------------------
# An import record maps a conversation of an outside source to the session it became, so a
# second import of the same export finds the session instead of making another. The key is a
# hash of (source, external id): external ids (mbox Message-IDs) can be long.


class ImportRecord(Base):
    """Which session a conversation of an imported export became."""

    __tablename__ = "import_records"
    tenant_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    source: Mapped[str] = mapped_column(String(32))
    external_id: Mapped[str] = mapped_column(Text)
    session_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    __table_args__ = (
        ForeignKeyConstraint(["session_id"], ["sessions.id"], ondelete="CASCADE"),
        Index(None, "session_id"),
    )


class SessionTemplate(Base):
    """A tenant's own session template (the built-in library lives in the package)."""

    __tablename__ = "session_templates"
    tenant_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    definition: Mapped[dict[str, Any]] = mapped_column(Json)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    __table_args__ = (ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE"),)


# -- attachments (attachments/) ---------------------------------------------------------------
# An attachment is a file uploaded into a session; its bytes are a content-addressed blob
# (sha256, per tenant) in the blob store, not in the database. Messages reference attachments
# in their parts; ``message_attachments`` records which message references which attachment,
# so an attachment no message references any more can be found and collected.


class Attachment(Base):
    """One uploaded file of a session, with the type sniffed from its bytes."""

    __tablename__ = "attachments"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(128))
    session_id: Mapped[str] = mapped_column(String(64))
    uploader_id: Mapped[str] = mapped_column(String(128))
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    width: Mapped[int | None] = mapped_column(Integer, nullable=True)
    height: Mapped[int | None] = mapped_column(Integer, nullable=True)
    thumbnail_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    thumbnail_type: Mapped[str | None] = mapped_column(String(100), nullable=True)
    thumbnail_width: Mapped[int | None] = mapped_column(Integer, nullable=True)
    thumbnail_height: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    __table_args__ = (
        ForeignKeyConstraint(["session_id"], ["sessions.id"], ondelete="CASCADE"),
        Index(None, "session_id", "created_at"),
        Index(None, "tenant_id", "sha256"),
        Index(None, "tenant_id", "thumbnail_sha256"),
    )


class MessageAttachment(Base):
    """A message's reference to an attachment of its session."""

    __tablename__ = "message_attachments"
    message_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    attachment_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    session_id: Mapped[str] = mapped_column(String(64))
    __table_args__ = (
        ForeignKeyConstraint(["message_id"], ["messages.id"], ondelete="CASCADE"),
        ForeignKeyConstraint(["attachment_id"], ["attachments.id"], ondelete="CASCADE"),
        Index(None, "attachment_id"),
    )


# -- integrations: the tenant feed, webhooks, automation (integrations/) ---------------------
# ``event_feed`` gives every durable event a tenant-wide position. One row is written in the
# transaction of each event (storage/feed_log.py), so it is also the transactional outbox that
# webhooks and automation rules consume: a crash after the commit loses nothing.


class FeedEntry(Base):
    """The position of one durable event in its tenant's feed.

    Readers order by ``(txid, id)``: ``id`` follows commit order on SQLite (one writer at a
    time); on PostgreSQL ``txid`` is the writing transaction's id, and a reader only takes rows
    of transactions older than every one still running, so nothing can appear behind it.
    """

    __tablename__ = "event_feed"
    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(128))
    session_id: Mapped[str] = mapped_column(String(64))
    seq: Mapped[int] = mapped_column(BigInteger)
    name: Mapped[str] = mapped_column(String(64))
    txid: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    __table_args__ = (
        ForeignKeyConstraint(["session_id"], ["sessions.id"], ondelete="CASCADE"),
        Index(None, "tenant_id", "txid", "id"),
        Index(None, "txid", "id"),
        {"sqlite_autoincrement": True},  # ids are never reused, so a cursor never goes back
    )


class FeedConsumer(Base):
    """A background consumer's place in the feed, and which process holds it (a lease)."""

    __tablename__ = "feed_consumers"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    txid: Mapped[int] = mapped_column(BigInteger)
    last_id: Mapped[int] = mapped_column(BigInteger)
    owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Webhook(Base):
    """A tenant's webhook endpoint and the events it wants."""

    __tablename__ = "webhooks"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(128))
    url: Mapped[str] = mapped_column(String(2000))
    secret: Mapped[str] = mapped_column(String(128))
    events: Mapped[list[str]] = mapped_column(Json)
    description: Mapped[str] = mapped_column(String(500))
    enabled: Mapped[bool] = mapped_column(Boolean)
    disabled_reason: Mapped[str | None] = mapped_column(String(500), nullable=True)
    consecutive_failures: Mapped[int] = mapped_column(Integer)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE"),
        Index(None, "tenant_id", "id"),
    )


class WebhookDelivery(Base):
    """One event for one webhook. Its id is stable across retries and redeliveries."""

    __tablename__ = "webhook_deliveries"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(128))
    webhook_id: Mapped[str] = mapped_column(String(64))
    event: Mapped[str] = mapped_column(String(64))
    session_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    seq: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    payload: Mapped[dict[str, Any]] = mapped_column(Json)
    status: Mapped[str] = mapped_column(String(16))  # pending | delivered | failed
    attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(String(500), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    __table_args__ = (
        ForeignKeyConstraint(["webhook_id"], ["webhooks.id"], ondelete="CASCADE"),
        Index(None, "status", "next_attempt_at"),
        Index(None, "webhook_id", "id"),
    )


class WebhookAttempt(Base):
    """The delivery log: one row per HTTP attempt."""

    __tablename__ = "webhook_attempts"
    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    delivery_id: Mapped[str] = mapped_column(String(64))
    webhook_id: Mapped[str] = mapped_column(String(64))
    tenant_id: Mapped[str] = mapped_column(String(128))
    attempt: Mapped[int] = mapped_column(Integer)
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    latency_ms: Mapped[float] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(String(500), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    __table_args__ = (
        ForeignKeyConstraint(["delivery_id"], ["webhook_deliveries.id"], ondelete="CASCADE"),
        Index(None, "delivery_id", "id"),
    )


class AutomationRule(Base):
    """When an event matches ``trigger`` (or ``schedule`` comes due), run ``actions``."""

    __tablename__ = "automation_rules"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(128))
    name: Mapped[str] = mapped_column(String(200))
    enabled: Mapped[bool] = mapped_column(Boolean)
    trigger: Mapped[dict[str, Any]] = mapped_column(Json)
    actions: Mapped[list[dict[str, Any]]] = mapped_column(Json)
    schedule: Mapped[str | None] = mapped_column(String(200), nullable=True)
    next_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE"),
        Index(None, "tenant_id", "id"),
        Index(None, "next_run_at"),
    )


class AutomationRun(Base):
    """What one firing of a rule did: ok, failed, or stopped as a loop."""

    __tablename__ = "automation_runs"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(128))
    rule_id: Mapped[str] = mapped_column(String(64))
    cause: Mapped[str] = mapped_column(String(16))  # event | schedule
    session_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    seq: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    status: Mapped[str] = mapped_column(String(16))  # ok | failed | loop_stopped
    detail: Mapped[dict[str, Any]] = mapped_column(Json)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    __table_args__ = (
        ForeignKeyConstraint(["rule_id"], ["automation_rules.id"], ondelete="CASCADE"),
        Index(None, "rule_id", "id"),
    )

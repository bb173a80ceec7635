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

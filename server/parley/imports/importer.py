"""Writes parsed conversations into sessions, idempotently.

Each conversation is one unit of work: find the session it became before (``import_records``,
keyed by a hash of source and external id) or create it, then add the messages that are not
there yet. A message's idempotency key is its ``client_id``, derived from (source,
conversation, message id), so importing the same export twice adds nothing and importing a
grown export adds only the new messages. Messages keep their original times; on first import
their seqs follow original time (parents always before their replies), later additions go
after what is there. Bad messages are reported with where they came from and skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, cast

import structlog
from prometheus_client import Counter
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from parley.errors import Conflict, ErrorCode, Forbidden, InvalidRequest, ParleyError
from parley.governance.auth import Principal, valid_identifier
from parley.governance.crypto.columns import seal_values
from parley.governance.policy import Action
from parley.ids import new_id, utcnow
from parley.imports.content import ImportContent
from parley.imports.document import document_update
from parley.imports.files import FileRestorer, RestoredBlob, attachment_rows, relink_parts
from parley.imports.keys import CLIENT_ID_PREFIX, conversation_key, message_key
from parley.imports.model import (
    ImportedConversation,
    ImportedMessage,
    ParsedItem,
    RecordError,
    RecordNote,
    in_time_order,
)
from parley.imports.report import ImportReport
from parley.relay import assistants as assistant_rules
from parley.relay.assistants import Trigger
from parley.relay.state.base import BusyPolicy
from parley.sessions import rules
from parley.sessions.queries import new_event, session_access, session_row
from parley.sessions.rules import Role, SessionStatus
from parley.sessions.service import Publisher
from parley.sessions.views import event_view, message_view, participant_view, session_view
from parley.storage import feed_log
from parley.storage import models as m
from parley.storage.database import Database

log = structlog.get_logger("parley.imports")

IMPORTED = Counter(
    "parley_imported_messages_total", "Messages written by imports, by format.", ["format"]
)
IMPORT_ERRORS = Counter(
    "parley_import_errors_total", "Import records skipped as errors, by format.", ["format"]
)

CHUNK = 1000  # messages per unit of work
Frame = dict[str, Any]
# Sources whose messages are Parley's own (exports, templates): no import provenance added.
NATIVE_SOURCES = frozenset({"parley", "template"})


class DocumentWriter(Protocol):
    async def apply_server_update(self, p: Principal, session_id: str, update: bytes) -> None:
        """Store a server-made document change (see ``DocManager.apply_server_update``)."""


@dataclass(slots=True)
class _Written:
    session_id: str
    created: bool
    added: int
    present: int
    message_ids: dict[str, str]
    errors: list[RecordError]
    frames: list[dict[str, Any]]


class Importer:
    """Writes :class:`ImportedConversation` records as sessions of the caller's tenant."""

    def __init__(
        self,
        db: Database,
        publisher: Publisher,
        documents: DocumentWriter | None = None,
        *,
        content: ImportContent | None,
        files: FileRestorer | None = None,
        max_text_chars: int = 32_000,
    ) -> None:
        self.db = db
        self.publisher = publisher
        self.documents = documents
        # Required (None only where no tenant policy applies): every path that imports must
        # say how the tenant's PII mode is applied, so none can forget it.
        self.content = content
        self.files = files
        self.max_text_chars = max_text_chars

    async def run(
        self,
        p: Principal,
        fmt: str,
        items: Iterable[ParsedItem],
        *,
        dry_run: bool = False,
        progress: Callable[[ImportedConversation], None] | None = None,
    ) -> ImportReport:
        """Write every conversation of ``items``; collect errors and notes into the report.

        Attachment files the items carry (Parley archives) are verified and stored first;
        a file that breaks a limit or its hash refuses the whole import (``FileRefused``)
        before any session is written."""
        report = ImportReport(format=fmt, dry_run=dry_run)
        blobs: dict[str, RestoredBlob] = {}
        if self.files is not None:
            items = list(items)
            convs = [i for i in items if isinstance(i, ImportedConversation)]
            if any(a.file is not None for c in convs for a in c.files):
                blobs = await self.files.restore(p.tenant_id, convs, dry_run=dry_run)
                report.files_restored = len(blobs)
        for item in items:
            if isinstance(item, RecordError):
                report.errors.append(item)
                continue
            if isinstance(item, RecordNote):
                report.notes += 1
                continue
            if not item.messages and item.source not in NATIVE_SOURCES:
                report.notes += 1  # an empty channel or chat makes no session
                continue
            report.conversations += 1
            try:
                if dry_run:
                    await self._apply_content(p, item)
                    errors = [e for msg in item.messages if (e := self._check(item, msg))]
                    report.errors.extend(errors)
                    report.messages_added += len(item.messages) - len(errors)
                else:
                    try:
                        written = await self.write(p, item, blobs)
                    except IntegrityError:
                        # Another import of the same conversation won a race; now it is
                        # there, and a second pass adds only what is still missing.
                        written = await self.write(p, item, blobs)
                    report.errors.extend(written.errors)
                    report.messages_added += written.added
                    report.messages_present += written.present
                    if written.created:
                        report.sessions_created += 1
                    elif written.added:
                        report.sessions_updated += 1
                    report.sessions.append(
                        {
                            "id": written.session_id,
                            "external_id": item.external_id,
                            "title": item.title,
                            "created": written.created,
                            "messages_added": written.added,
                        }
                    )
            except ParleyError as exc:
                report.errors.append(RecordError(item.where or item.external_id, exc.message))
            if progress is not None:
                progress(item)
        if not dry_run:
            IMPORTED.labels(format=fmt).inc(report.messages_added)
            IMPORT_ERRORS.labels(format=fmt).inc(len(report.errors))
        log.info(
            "import finished",
            format=fmt,
            tenant=p.tenant_id,
            conversations=report.conversations,
            added=report.messages_added,
            errors=len(report.errors),
            dry_run=dry_run,
        )
        return report

    def _check(self, conv: ImportedConversation, msg: ImportedMessage) -> RecordError | None:
        where = msg.where or f"{conv.where or conv.external_id}: message {msg.external_id}"
        try:
            rules.check_storable("the message id", [msg.external_id, msg.parent])
            rules.check_text(msg.text, self.max_text_chars)
            empty = not msg.text.strip() and not msg.parts and not msg.attachments
            if empty and msg.deleted_at is None:
                return RecordError(where, "the message has no text and no attachments")
            rules.check_json_size("metadata", msg.metadata, rules.MAX_METADATA_BYTES)
            if msg.parts is not None:
                rules.check_json_size("parts", msg.parts, rules.MAX_PARTS_BYTES)
        except ParleyError as exc:
            return RecordError(where, exc.message)
        return None

    async def write(
        self,
        p: Principal,
        conv: ImportedConversation,
        blobs: dict[str, RestoredBlob] | None = None,
    ) -> _Written:
        """Create or complete the session of one conversation; publish what was committed.
        ``blobs`` are the attachment files already stored (see ``imports.files``): the
        conversation's attachments among them get rows, and its messages' parts name those.

        The session, its participants and assistants are one unit of work; messages follow in
        units of ``CHUNK`` so a large conversation never holds the write lock for long. If a
        write fails half way, importing again completes it (what is there is recognised)."""
        await self._apply_content(p, conv)
        title = rules.clean_title(conv.title[: rules.MAX_TITLE])
        tags = rules.clean_tags(conv.tags)
        rules.check_json_size("metadata", conv.metadata, rules.MAX_METADATA_BYTES)
        rules.check_storable("the conversation id", conv.external_id)
        for author in conv.authors:
            if author.user_id is not None and not valid_identifier(author.user_id):
                raise InvalidRequest(f"author id {author.user_id[:80]!r} is not a valid user id")
            rules.check_storable("an author's name", author.name)
        errors: list[RecordError] = []
        good: list[ImportedMessage] = []
        for msg in conv.messages:
            problem = self._check(conv, msg)
            if problem is None:
                good.append(msg)
            else:
                errors.append(problem)
        ordered = in_time_order(good)
        key = conversation_key(conv.source, conv.external_id)
        now = utcnow()
        quota = self.files.settings.attachment_tenant_quota_bytes if self.files else 0

        def open_session(
            s: Session,
        ) -> tuple[_Written, dict[str, str], dict[str, str], dict[str, dict[str, Any]]]:
            if s.get(m.Tenant, p.tenant_id) is None:
                s.add(m.Tenant(id=p.tenant_id, name=p.tenant_id, created_at=now))
                s.flush()
            record = s.get(m.ImportRecord, (p.tenant_id, key))
            events: list[m.Event] = []
            created = record is None
            if record is None:
                row = self._new_session(s, p, conv, title, tags, now, events)
                s.add(
                    m.ImportRecord(
                        tenant_id=p.tenant_id,
                        key=key,
                        source=conv.source,
                        external_id=conv.external_id,
                        session_id=row.id,
                        created_at=now,
                    )
                )
            else:
                row, access = session_access(s, p, record.session_id, lock=True)
                if not access.allows(Action.POST) and not p.is_admin:
                    raise Forbidden(
                        "this conversation was imported before into a session you may not "
                        "write to; ask its owner or a tenant admin"
                    )
                if row.status != SessionStatus.ACTIVE.value:
                    raise Conflict(
                        "this conversation was imported before into a session that is now archived",
                        code=ErrorCode.SESSION_ARCHIVED,
                    )
            known: dict[str, str] = {
                str(client_id): message_id
                for client_id, message_id in s.execute(
                    select(m.Message.client_id, m.Message.id).where(
                        m.Message.tenant_id == p.tenant_id,
                        m.Message.session_id == row.id,
                        m.Message.client_id.like(CLIENT_ID_PREFIX + "%"),
                    )
                )
            }
            self._join_authors(s, p, conv, row, now, events)
            renamed = self._add_assistants(s, p, conv, row.id, now) if created else {}
            s.add_all(events)
            frames = [event_view(e) for e in events]
            restored = attachment_rows(
                s, p.tenant_id, row.id, p.user_id, conv.files, blobs or {},
                quota, now,
            )  # fmt: skip
            return _Written(row.id, created, 0, 0, {}, [], frames), known, renamed, restored

        written, known, renamed, restored = await self.db.write(open_session)
        written.errors = errors
        await self._publish(p, written.session_id, written.frames)
        sid = written.session_id
        ids = written.message_ids
        pending: list[tuple[ImportedMessage, str]] = []
        for msg in ordered:
            client_id = message_key(conv.source, conv.external_id, msg.external_id)
            if client_id in known:
                ids[msg.external_id] = known[client_id]
                written.present += 1
            else:
                pending.append((msg, client_id))
        for start in range(0, len(pending), CHUNK):
            chunk = pending[start : start + CHUNK]

            def add(s: Session, chunk: list[tuple[ImportedMessage, str]] = chunk) -> list[Frame]:
                row = session_row(s, p, sid, lock=True)
                messages: list[dict[str, Any]] = []
                events: list[dict[str, Any]] = []
                frames: list[Frame] = []
                links: list[dict[str, str]] = []
                for msg, client_id in chunk:
                    parent = ids.get(msg.parent) if msg.parent is not None else None
                    if parent is None and msg.parent is not None:
                        parent = known.get(message_key(conv.source, conv.external_id, msg.parent))
                    row.last_seq += 1
                    values = self._message(p, conv, msg, sid, row.last_seq, parent, client_id)
                    values["parts"], linked = relink_parts(values["parts"], restored)
                    links += [
                        {"message_id": values["id"], "attachment_id": a, "session_id": sid}
                        for a in linked
                    ]
                    if values["metadata"].get("assistant") in renamed:
                        values["metadata"] = {
                            **values["metadata"],
                            "assistant": renamed[values["metadata"]["assistant"]],
                        }
                    ids[msg.external_id] = values["id"]
                    messages.append(values)
                    view = message_view(cast(m.Message, _MessageRow(**values)))
                    event: dict[str, Any] = {
                        "session_id": sid,
                        "seq": row.last_seq,
                        "tenant_id": p.tenant_id,
                        "name": "message.created",
                        "actor_id": p.user_id,
                        "data": {"message": view},
                        "created_at": now,
                    }
                    events.append(event)
                    frames.append(event_view(cast(m.Event, _EventRow(**event))))
                if not written.created:
                    row.updated_at = now
                # Bulk inserts skip the ORM hooks that encrypt content at rest: seal here.
                s.execute(
                    insert(m.Message), seal_values(s, m.Message, [_columns(v) for v in messages])
                )
                s.execute(insert(m.Event), seal_values(s, m.Event, events))
                if links:
                    s.execute(insert(m.MessageAttachment), links)
                feed_log.record(s, events)  # webhooks, live feeds and automation see imports
                return frames

            frames = await self.db.write(add)
            written.added += len(chunk)
            await self._publish(p, sid, frames)
        if written.created and conv.document and self.documents is not None:
            update = document_update(conv.document, ids)
            if update is not None:
                await self.documents.apply_server_update(p, sid, update)
        return written

    async def _apply_content(self, p: Principal, conv: ImportedConversation) -> None:
        """The tenant's PII mode, on every message before it is checked (see
        ``imports.content``); every import and template goes through here."""
        if self.content is not None:
            await self.content.apply(p.tenant_id, conv)

    async def _publish(self, p: Principal, session_id: str, frames: list[Frame]) -> None:
        if not frames:
            return
        try:
            await self.publisher.publish(p.tenant_id, session_id, frames)
        except Exception:  # committed: subscribers recover by replay and gap fill
            log.exception("publishing imported events failed", session=session_id)

    # -- pieces of the unit of work ----------------------------------------------------------

    @staticmethod
    def _new_session(
        s: Session,
        p: Principal,
        conv: ImportedConversation,
        title: str,
        tags: list[str],
        now: datetime,
        frames: list[m.Event],
    ) -> m.Session:
        times = [msg.created_at for msg in conv.messages]
        started = conv.created_at or (min(times) if times else now)
        row = m.Session(
            id=new_id(),
            tenant_id=p.tenant_id,
            title=title,
            meta=conv.metadata,
            status=SessionStatus(conv.status).value,
            created_by=p.user_id,
            created_at=started,
            updated_at=max([started, *times]),
            last_seq=0,
        )
        s.add(row)
        s.flush()
        s.add_all(m.SessionTag(session_id=row.id, tag=t, tenant_id=p.tenant_id) for t in tags)
        row.last_seq = 1
        frames.append(
            new_event(p, row.id, 1, "session.created", {"session": session_view(row, tags)}, now)
        )
        return row

    @staticmethod
    def _join_authors(
        s: Session,
        p: Principal,
        conv: ImportedConversation,
        row: m.Session,
        now: datetime,
        frames: list[m.Event],
    ) -> None:
        """Users and participants for the importing user (owner) and every author."""
        wanted: dict[str, tuple[str, str, str]] = {p.user_id: (p.name, str(p.kind), "owner")}
        for author in conv.authors:
            if author.user_id is not None and author.user_id != p.user_id:
                wanted.setdefault(author.user_id, (author.name, author.kind, author.role))
        ids = list(wanted)
        users = {
            u.id: u
            for u in s.scalars(
                select(m.User).where(m.User.tenant_id == p.tenant_id, m.User.id.in_(ids))
            )
        }
        joined = set(
            s.scalars(
                select(m.Participant.user_id).where(
                    m.Participant.tenant_id == p.tenant_id,
                    m.Participant.session_id == row.id,
                    m.Participant.user_id.in_(ids),
                )
            )
        )
        for user_id, (name, kind, role) in wanted.items():
            user = users.get(user_id)
            if user is None:
                user = m.User(
                    tenant_id=p.tenant_id,
                    id=user_id,
                    display_name=name[:200] or user_id,
                    kind=kind if kind in ("human", "bot", "assistant") else "human",
                    created_at=now,
                )
                s.add(user)
            if user_id in joined:
                continue
            part = m.Participant(
                session_id=row.id,
                user_id=user_id,
                tenant_id=p.tenant_id,
                role=Role(role).value if role in Role.__members__.values() else "editor",
                joined_at=now,
            )
            s.add(part)
            row.last_seq += 1
            frames.append(
                new_event(
                    p,
                    row.id,
                    row.last_seq,
                    "participant.joined",
                    {"participant": participant_view(part, user)},
                    now,
                )
            )
        s.flush()

    @staticmethod
    def _add_assistants(
        s: Session, p: Principal, conv: ImportedConversation, sid: str, now: datetime
    ) -> dict[str, str]:
        """Assistant rows of a new session; returns old assistant id -> new id."""
        renamed: dict[str, str] = {}
        for spec in conv.assistants:
            assistant_rules.check_name(spec.name)
            assistant_rules.check_provider(spec.provider)
            assistant_rules.check_model(spec.model)
            assistant_rules.check_system_prompt(spec.system_prompt)
            row = m.Assistant(
                id=new_id(),
                tenant_id=p.tenant_id,
                session_id=sid,
                name=spec.name,
                user_id=spec.user_id,
                provider=spec.provider,
                model=spec.model,
                system_prompt=spec.system_prompt,
                params=assistant_rules.check_params(spec.provider, spec.params),
                trigger=Trigger(spec.trigger).value,
                busy_policy=BusyPolicy(spec.busy_policy).value,
                context_window=spec.context_window,
                max_output_tokens=spec.max_output_tokens,
                created_by=p.user_id,
                created_at=now,
                updated_at=now,
            )
            s.add(row)
            if spec.old_id:
                renamed[spec.old_id] = row.id
        return renamed

    @staticmethod
    def _message(
        p: Principal,
        conv: ImportedConversation,
        msg: ImportedMessage,
        sid: str,
        seq: int,
        parent: str | None,
        client_id: str,
    ) -> dict[str, Any]:
        """A message row's values, keyed like ``_MessageRow``."""
        parts = msg.parts
        if msg.attachments:
            parts = [*(parts or []), *({"type": "attachment", **a} for a in msg.attachments)]
        meta = msg.metadata
        if conv.source not in NATIVE_SOURCES:
            meta = {"import": {"source": conv.source, "id": msg.external_id}, **meta}
            if msg.parent is not None and parent is None:
                meta["import"]["parent_missing"] = msg.parent
        return {
            "id": new_id(),
            "tenant_id": p.tenant_id,
            "session_id": sid,
            "seq": seq,
            "author_id": msg.author or p.user_id,
            "parent_id": parent,
            "text": msg.text,
            "parts": parts,
            "metadata": meta,
            "client_id": client_id,
            "created_at": msg.created_at,
            "edited_at": msg.edited_at,
            "deleted_at": msg.deleted_at,
        }


@dataclass(slots=True)
class _MessageRow:
    """The attributes ``message_view`` reads, without the ORM's bookkeeping (bulk inserts of
    plain values are several times cheaper than ORM objects)."""

    id: str
    tenant_id: str
    session_id: str
    seq: int
    author_id: str
    parent_id: str | None
    text: str
    parts: list[dict[str, Any]] | None
    metadata: dict[str, Any]
    client_id: str
    created_at: datetime
    edited_at: datetime | None
    deleted_at: datetime | None

    @property
    def meta(self) -> dict[str, Any]:
        return self.metadata


@dataclass(slots=True)
class _EventRow:
    session_id: str
    seq: int
    tenant_id: str
    name: str
    actor_id: str
    data: dict[str, Any]
    created_at: datetime


def _columns(values: dict[str, Any]) -> dict[str, Any]:
    """Message values keyed by attribute name for ``insert(m.Message)`` (``meta`` is the
    ``metadata`` column)."""
    out = dict(values)
    out["meta"] = out.pop("metadata")
    return out

"""The session service: every write commits its rows and its durable events in one transaction,
then hands the committed event frames to the publisher. REST and the socket share this code path.

Each method validates its input, runs one unit of work (a synchronous function of a SQLAlchemy
``Session``, see ``storage.database``) and publishes what it committed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import structlog
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from parley.attachments import refs as attachment_refs
from parley.errors import Conflict, ErrorCode, InvalidRequest, NotFound, ParleyError
from parley.governance import audit
from parley.governance.auth import Principal, valid_identifier
from parley.governance.policy import Access, Action, Visibility, check_change_message, may_grant
from parley.ids import new_id, utcnow
from parley.sessions import rules, writes
from parley.sessions.queries import (
    ReadFacts,
    message_by_client_id,
    message_row,
    new_event,
    readable_facts,
    readable_sessions_filter,
    session_access,
    session_row,
    tags_of,
)
from parley.sessions.rules import Role, SessionStatus
from parley.sessions.views import (
    event_row_view,
    event_view,
    message_view,
    new_message_view,
    participant_view,
    session_view,
)
from parley.storage import models as m
from parley.storage.database import Database
from parley.storage.event_log import MAX_PAGE, EventLog

log = structlog.get_logger("parley.sessions")


class Publisher(Protocol):
    """Where committed events go (the hub, through the broker)."""

    async def publish(
        self, tenant_id: str, session_id: str, frames: Sequence[dict[str, Any]]
    ) -> None:
        """Publish durable event frames of one session, in ``seq`` order."""

    async def publish_ephemeral(
        self, tenant_id: str, session_id: str, name: str, data: dict[str, Any]
    ) -> None:
        """Publish an event that is not stored (typing, deletion notices)."""


AccessListener = Callable[[str, str, str | None], Awaitable[None]]


@dataclass(slots=True)
class PostResult:
    message: dict[str, Any]
    seq: int
    duplicate: bool


class _Duplicate(Exception):
    """Raised inside a unit of work to roll it back and answer with the first result."""

    def __init__(self, result: PostResult):
        self.result = result


class SessionService:
    """Sessions, messages and participants for authenticated principals, tenant-scoped."""

    def __init__(
        self,
        db: Database,
        publisher: Publisher,
        *,
        max_text_chars: int = 32_000,
        default_visibility: Visibility = Visibility.OPEN,
    ):
        self.db = db
        self.event_log = EventLog(db)
        self.publisher = publisher
        self.max_text_chars = max_text_chars
        self.default_visibility = default_visibility
        self._known_principals: set[tuple[str, str, str, str]] = set()
        # Told (tenant, session, user or None for everyone) after a change that can take
        # access away, so every process drops what the user may no longer see (app.py wires it
        # to the document channels; the hub reacts to the durable events themselves).
        self.access_listeners: list[AccessListener] = []

    # -- principals -------------------------------------------------------------------------

    async def ensure_principal(self, p: Principal) -> None:
        """Create the tenant and user rows the first time a token is seen."""
        key = (p.tenant_id, p.user_id, p.name, str(p.kind))
        if key in self._known_principals:
            return
        now = utcnow()

        def work(s: Session) -> None:
            if s.get(m.Tenant, p.tenant_id) is None:
                s.add(m.Tenant(id=p.tenant_id, name=p.tenant_id, created_at=now))
                s.flush()
            user = s.get(m.User, (p.tenant_id, p.user_id))
            if user is None:
                s.add(
                    m.User(
                        tenant_id=p.tenant_id,
                        id=p.user_id,
                        display_name=p.name,
                        kind=str(p.kind),
                        created_at=now,
                    )
                )
            elif (user.display_name, user.kind) != (p.name, str(p.kind)):
                user.display_name, user.kind = p.name, str(p.kind)

        try:
            await self.db.write(work)
        except IntegrityError:
            # Another process created the same rows at the same moment; one retry sees them.
            await self.db.write(work)
        self._known_principals.add(key)

    # -- sessions ---------------------------------------------------------------------------

    async def create_session(
        self,
        p: Principal,
        *,
        title: str = "",
        metadata: dict[str, Any] | None = None,
        tags: list[str] | None = None,
        visibility: Visibility | None = None,
    ) -> dict[str, Any]:
        await self.ensure_principal(p)
        title = rules.clean_title(title)
        clean_tags = rules.clean_tags(tags or [])
        meta = metadata or {}
        rules.check_json_size("metadata", meta, rules.MAX_METADATA_BYTES)
        now = utcnow()
        sid = new_id()

        def work(s: Session) -> tuple[dict[str, Any], list[dict[str, Any]]]:
            row = m.Session(
                id=sid,
                tenant_id=p.tenant_id,
                title=title,
                meta=meta,
                status=SessionStatus.ACTIVE.value,
                created_by=p.user_id,
                created_at=now,
                updated_at=now,
                last_seq=2,
                visibility=str(visibility or self.default_visibility),
            )
            s.add(row)
            s.flush()  # the session row first: the rows below reference it
            s.add_all(
                m.SessionTag(session_id=sid, tag=t, tenant_id=p.tenant_id) for t in clean_tags
            )
            part = m.Participant(
                session_id=sid,
                user_id=p.user_id,
                tenant_id=p.tenant_id,
                role=Role.OWNER.value,
                joined_at=now,
            )
            s.add(part)
            view = session_view(row, clean_tags)
            user = s.get(m.User, (p.tenant_id, p.user_id))
            events = [
                new_event(p, sid, 1, "session.created", {"session": view}, now),
                new_event(
                    p,
                    sid,
                    2,
                    "participant.joined",
                    {"participant": participant_view(part, user)},
                    now,
                ),
            ]
            s.add_all(events)
            return view, [event_view(e) for e in events]

        view, frames = await self.db.write(work)
        await self._publish(p.tenant_id, sid, frames)
        return view

    async def get_session(self, p: Principal, session_id: str) -> dict[str, Any]:
        def work(s: Session) -> dict[str, Any]:
            row = session_row(s, p, session_id)
            return session_view(row, tags_of(s, [session_id], p.tenant_id)[session_id])

        return await self.db.read(work)

    async def list_sessions(
        self,
        p: Principal,
        *,
        status: SessionStatus | None = None,
        tag: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Newest first. ``cursor`` is the ``next_cursor`` of the previous page."""
        limit = max(1, min(limit, 200))
        q = select(m.Session).where(readable_sessions_filter(p))
        if status is not None:
            q = q.where(m.Session.status == status.value)
        if tag is not None:
            q = q.where(
                m.Session.id.in_(
                    select(m.SessionTag.session_id).where(
                        m.SessionTag.tenant_id == p.tenant_id,
                        m.SessionTag.tag == tag.strip().lower(),
                    )
                )
            )
        if cursor:
            q = q.where(m.Session.id < cursor)
        q = q.order_by(m.Session.id.desc()).limit(limit + 1)

        def work(s: Session) -> tuple[list[dict[str, Any]], str | None]:
            rows = list(s.scalars(q).all())
            more = len(rows) > limit
            rows = rows[:limit]
            tags = tags_of(s, [r.id for r in rows], p.tenant_id)
            items = [session_view(r, tags[r.id]) for r in rows]
            return items, (rows[-1].id if more and rows else None)

        return await self.db.read(work)

    async def update_session(
        self,
        p: Principal,
        session_id: str,
        *,
        title: str | None = None,
        metadata: dict[str, Any] | None = None,
        tags: list[str] | None = None,
        status: SessionStatus | None = None,
        visibility: Visibility | None = None,
    ) -> dict[str, Any]:
        new_title = rules.clean_title(title) if title is not None else None
        new_tags = rules.clean_tags(tags) if tags is not None else None
        if metadata is not None:
            rules.check_json_size("metadata", metadata, rules.MAX_METADATA_BYTES)
        now = utcnow()

        def work(s: Session) -> tuple[dict[str, Any], list[dict[str, Any]]]:
            row, access = session_access(s, p, session_id, lock=True)
            access.check(Action.MANAGE, session_id)
            changed: list[str] = []
            if visibility is not None and visibility.value != row.visibility:
                access.check(Action.ADMINISTER, session_id, what="change the visibility")
                audit.record_in(
                    s,
                    p,
                    "session.visibility",
                    "session",
                    session_id,
                    client=client,
                    details={"from": row.visibility, "to": visibility.value},
                )
                row.visibility = visibility.value
                changed.append("visibility")
            if new_title is not None:
                row.title = new_title
                changed.append("title")
            if metadata is not None:
                row.meta = metadata
                changed.append("metadata")
            if status is not None and status.value != row.status:
                row.status = status.value
                changed.append("status")
            if new_tags is not None:
                s.execute(
                    delete(m.SessionTag).where(
                        m.SessionTag.tenant_id == p.tenant_id,
                        m.SessionTag.session_id == session_id,
                    )
                )
                s.add_all(
                    m.SessionTag(session_id=session_id, tag=t, tenant_id=p.tenant_id)
                    for t in new_tags
                )
                changed.append("tags")
            if not changed:
                return session_view(row, tags_of(s, [session_id], p.tenant_id)[session_id]), []
            row.last_seq += 1
            row.updated_at = now
            s.flush()
            view = session_view(row, tags_of(s, [session_id], p.tenant_id)[session_id])
            ev = new_event(
                p,
                session_id,
                row.last_seq,
                "session.updated",
                {"session": view, "changed": changed},
                now,
            )
            s.add(ev)
            return view, [event_view(ev)]

        client = audit.client_address()
        view, frames = await self.db.write(work)
        await self._publish(p.tenant_id, session_id, frames)
        if frames and "visibility" in frames[0]["data"]["changed"]:
            await self._access_changed(p.tenant_id, session_id, None)
        return view

    async def delete_session(self, p: Principal, session_id: str) -> None:
        """Remove the session and everything in it. Subscribers get ``session.deleted``."""

        def work(s: Session) -> None:
            _, access = session_access(s, p, session_id, lock=True)
            access.check(Action.ADMINISTER, session_id, what="delete the session")
            for table in (
                m.Event,
                m.Message,
                m.Participant,
                m.SessionTag,
                m.SessionRemoval,
                m.Invitation,
                m.ShareLink,
            ):
                s.execute(
                    delete(table).where(
                        table.tenant_id == p.tenant_id, table.session_id == session_id
                    )
                )
            s.execute(
                delete(m.Session).where(
                    m.Session.id == session_id, m.Session.tenant_id == p.tenant_id
                )
            )
            audit.record_in(s, p, "session.delete", "session", session_id, client=client)

        client = audit.client_address()
        await self.db.write(work)
        audit.mark_recorded()
        try:
            await self.publisher.publish_ephemeral(
                p.tenant_id, session_id, "session.deleted", {"session": session_id, "by": p.user_id}
            )
        except Exception:
            log.exception("publishing session.deleted failed", session=session_id)

    async def last_seq(self, p: Principal, session_id: str) -> int:
        """The newest ``seq`` of a session the caller may read."""
        return (await self.read_facts(p, session_id)).last_seq

    async def read_facts(self, p: Principal, session_id: str) -> ReadFacts:
        """Last seq, history revision and access of a session the caller may read."""
        return await self.db.read(lambda s: readable_facts(s, p, session_id))

    # -- messages ---------------------------------------------------------------------------

    async def post_message(
        self,
        p: Principal,
        session_id: str,
        *,
        text: str = "",
        parts: list[dict[str, Any]] | None = None,
        parent_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        client_id: str | None = None,
    ) -> PostResult:
        """Store a message and its events. A repeated ``client_id`` returns the first result."""
        rules.check_text(text, self.max_text_chars)
        if not text.strip() and not parts:
            raise InvalidRequest("a message needs text or parts")
        if parts is not None:
            rules.check_json_size("parts", parts, rules.MAX_PARTS_BYTES)
        meta = metadata or {}
        rules.check_json_size("metadata", meta, rules.MAX_METADATA_BYTES)
        rules.check_client_id(client_id)
        await self.ensure_principal(p)
        now = utcnow()

        def work(s: Session) -> tuple[PostResult, list[dict[str, Any]]]:
            # Core statements, not the ORM unit of work: see sessions/writes.py.
            claim = writes.claim_seqs(s, p, session_id, 1, now)
            access = claim.access
            try:
                if claim.status != SessionStatus.ACTIVE.value:
                    raise Conflict("the session is archived", code=ErrorCode.SESSION_ARCHIVED)
                if not access.may_self_join:
                    access.check(Action.POST, session_id)
            except ParleyError:
                # A retry of a send that succeeded gets its first result, whatever changed.
                if client_id is not None:
                    existing = message_by_client_id(
                        s, session_id, p.user_id, client_id, p.tenant_id
                    )
                    if existing is not None:
                        raise _Duplicate(
                            PostResult(message_view(existing), existing.seq, True)
                        ) from None
                raise
            if parent_id is not None and not writes.parent_exists(
                s, p.tenant_id, session_id, parent_id
            ):
                raise InvalidRequest(f"parent message {parent_id!r} is not in this session")
            seq = claim.last_seq
            events: list[dict[str, Any]] = []
            if access.role is None:
                # The first message of a non-participant of an open session: they join first.
                part = m.Participant(
                    session_id=session_id,
                    user_id=p.user_id,
                    tenant_id=p.tenant_id,
                    role=Role.EDITOR.value,
                    joined_at=now,
                )
                writes.insert_participant(s, p.tenant_id, session_id, p.user_id, Role.EDITOR, now)
                user = s.get(m.User, (p.tenant_id, p.user_id))
                view = {"participant": participant_view(part, user)}
                events.append(writes.event_row(p, session_id, seq, "participant.joined", view, now))
                seq = writes.claim_seqs(s, p, session_id, 1, now).last_seq
            stored_parts, attached = attachment_refs.resolve(s, p.tenant_id, session_id, parts)
            message_id = new_id()
            row: dict[str, Any] = {
                "id": message_id,
                "tenant_id": p.tenant_id,
                "session_id": session_id,
                "seq": seq,
                "author_id": p.user_id,
                "parent_id": parent_id,
                "text": text,
                "parts": stored_parts,
                "metadata": meta,
                "client_id": client_id,
                "created_at": now,
            }
            writes.insert_message(s, row)
            if attached:
                attachment_refs.link(s, session_id, message_id, attached)
            view = new_message_view(row)
            events.append(
                writes.event_row(p, session_id, seq, "message.created", {"message": view}, now)
            )
            writes.insert_events(s, events)
            return PostResult(view, seq, False), [event_row_view(e) for e in events]

        try:
            result, frames = await self.db.write(work)
        except _Duplicate as dup:
            return dup.result
        except IntegrityError:
            # A concurrent retry with the same client_id won the race in another process.
            if client_id is None:
                raise

            def first(s: Session) -> PostResult | None:
                existing = message_by_client_id(s, session_id, p.user_id, client_id, p.tenant_id)
                return PostResult(message_view(existing), existing.seq, True) if existing else None

            earlier = await self.db.read(first)
            if earlier is None:
                raise
            return earlier
        await self._publish(p.tenant_id, session_id, frames)
        return result

    async def edit_message(
        self,
        p: Principal,
        session_id: str,
        message_id: str,
        *,
        text: str | None = None,
        parts: list[dict[str, Any]] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> tuple[dict[str, Any], int]:
        if text is None and parts is None and metadata is None:
            raise InvalidRequest("an edit needs text, parts or metadata")
        if text is not None:
            rules.check_text(text, self.max_text_chars)
        if parts is not None:
            rules.check_json_size("parts", parts, rules.MAX_PARTS_BYTES)
        if metadata is not None:
            rules.check_json_size("metadata", metadata, rules.MAX_METADATA_BYTES)
        now = utcnow()

        def work(s: Session) -> tuple[dict[str, Any], int, list[dict[str, Any]]]:
            row, access = session_access(s, p, session_id, lock=True)
            if row.status != SessionStatus.ACTIVE.value:
                raise Conflict("the session is archived", code=ErrorCode.SESSION_ARCHIVED)
            msg = message_row(s, session_id, message_id, p.tenant_id)
            if msg.deleted_at is not None:
                raise Conflict("the message was deleted")
            check_change_message(access, p.user_id, msg.author_id, deleting=False)
            if text is not None:
                msg.text = text
            if parts is not None:
                msg.parts, attached = attachment_refs.resolve(s, p.tenant_id, session_id, parts)
                attachment_refs.link(s, session_id, msg.id, attached)
            if not msg.text.strip() and not msg.parts:
                raise InvalidRequest("an edit may not leave a message without text or parts")
            if metadata is not None:
                msg.meta = metadata
            msg.edited_at = now
            row.last_seq += 1
            row.updated_at = now
            view = message_view(msg)
            ev = new_event(p, session_id, row.last_seq, "message.edited", {"message": view}, now)
            s.add(ev)
            return view, row.last_seq, [event_view(ev)]

        view, seq, frames = await self.db.write(work)
        await self._publish(p.tenant_id, session_id, frames)
        return view, seq

    async def delete_message(
        self, p: Principal, session_id: str, message_id: str
    ) -> tuple[dict[str, Any], int]:
        """Tombstone a message: its content is erased, its place in the tree is kept."""
        now = utcnow()

        def work(s: Session) -> tuple[dict[str, Any], int, list[dict[str, Any]]]:
            row, access = session_access(s, p, session_id, lock=True)
            if row.status != SessionStatus.ACTIVE.value:
                raise Conflict("the session is archived", code=ErrorCode.SESSION_ARCHIVED)
            msg = message_row(s, session_id, message_id, p.tenant_id)
            if msg.deleted_at is not None:
                raise Conflict("the message was already deleted")
            check_change_message(access, p.user_id, msg.author_id, deleting=True)
            msg.text, msg.parts, msg.meta, msg.deleted_at = "", None, {}, now
            attachment_refs.link(s, session_id, msg.id, [])  # now unreferenced: collectable
            row.last_seq += 1
            row.updated_at = now
            view = message_view(msg)
            ev = new_event(p, session_id, row.last_seq, "message.deleted", {"message": view}, now)
            s.add(ev)
            return view, row.last_seq, [event_view(ev)]

        view, seq, frames = await self.db.write(work)
        await self._publish(p.tenant_id, session_id, frames)
        return view, seq

    async def list_messages(
        self,
        p: Principal,
        session_id: str,
        *,
        after_seq: int = 0,
        before_seq: int | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Messages with ``after_seq < seq < before_seq``, oldest first."""
        limit = max(1, min(limit, MAX_PAGE))
        q = select(m.Message).where(
            m.Message.tenant_id == p.tenant_id,
            m.Message.session_id == session_id,
            m.Message.seq > after_seq,
        )
        if before_seq is not None:
            q = q.where(m.Message.seq < before_seq)
        q = q.order_by(m.Message.seq).limit(limit)

        def work(s: Session) -> list[dict[str, Any]]:
            session_row(s, p, session_id)
            return [message_view(r) for r in s.scalars(q).all()]

        return await self.db.read(work)

    async def list_events(
        self, p: Principal, session_id: str, *, after_seq: int = 0, limit: int = MAX_PAGE
    ) -> list[dict[str, Any]]:
        """Durable event frames with ``seq > after_seq``, in order: what replay sends."""
        await self.last_seq(p, session_id)  # not found for other tenants
        return await self.event_log.events_after(session_id, after_seq, limit)

    # -- participants -----------------------------------------------------------------------

    async def list_participants(self, p: Principal, session_id: str) -> list[dict[str, Any]]:
        def work(s: Session) -> list[dict[str, Any]]:
            session_row(s, p, session_id)
            rows = s.execute(
                select(m.Participant, m.User)
                .outerjoin(
                    m.User,
                    (m.User.tenant_id == m.Participant.tenant_id)
                    & (m.User.id == m.Participant.user_id),
                )
                .where(
                    m.Participant.tenant_id == p.tenant_id, m.Participant.session_id == session_id
                )
                .order_by(m.Participant.joined_at, m.Participant.user_id)
            ).all()
            return [participant_view(part, user) for part, user in rows]

        return await self.db.read(work)

    async def add_participant(
        self, p: Principal, session_id: str, user_id: str, role: Role
    ) -> dict[str, Any]:
        """Add a tenant user or change their role (``governance.policy.may_grant`` says who
        may). Adding someone lifts an earlier removal."""
        now = utcnow()

        def work(s: Session) -> tuple[dict[str, Any], list[dict[str, Any]]]:
            row, access = session_access(s, p, session_id, lock=True)
            user = s.get(m.User, (p.tenant_id, user_id)) if valid_identifier(user_id) else None
            if user is None:
                access.check(Action.MANAGE, session_id, what="add participants")
                raise NotFound(f"user {user_id!r} does not exist in this tenant")
            result = grant_role(s, p, row, access, user, role, now)
            audit.record_in(
                s,
                p,
                "participant.grant",
                "session",
                session_id,
                client=client,
                details={"user_id": user_id, "role": str(role)},
            )
            return result

        client = audit.client_address()
        view, frames = await self.db.write(work)
        audit.mark_recorded()
        await self._publish(p.tenant_id, session_id, frames)
        if frames:
            await self._access_changed(p.tenant_id, session_id, user_id)
        return view

    async def remove_participant(self, p: Principal, session_id: str, user_id: str) -> None:
        """Owners and tenant admins remove anyone; everyone may leave. A removal is remembered
        (``session_removals``): the user cannot come back by writing or reading an open session
        until an owner, an admin or an invitation re-adds them. Every process then drops their
        subscriptions and document connections to the session."""
        now = utcnow()

        def work(s: Session) -> list[dict[str, Any]]:
            row, access = session_access(s, p, session_id, lock=True)
            if user_id != p.user_id:
                access.check(Action.ADMINISTER, session_id, what="remove others")
            part = (
                s.scalar(
                    select(m.Participant).where(
                        m.Participant.tenant_id == p.tenant_id,
                        m.Participant.session_id == session_id,
                        m.Participant.user_id == user_id,
                    )
                )
                if valid_identifier(user_id)
                else None
            )
            if part is None:
                raise NotFound(f"{user_id!r} is not a participant of this session")
            s.delete(part)
            if user_id != p.user_id:
                # A participant has no removal row (granting a role deletes it).
                s.add(
                    m.SessionRemoval(
                        session_id=session_id,
                        user_id=user_id,
                        tenant_id=p.tenant_id,
                        removed_by=p.user_id,
                        removed_at=now,
                    )
                )
            row.last_seq += 1
            row.updated_at = now
            data: dict[str, Any] = {"user_id": user_id}
            if user_id != p.user_id:
                data["removed_by"] = p.user_id
            ev = new_event(p, session_id, row.last_seq, "participant.left", data, now)
            s.add(ev)
            audit.record_in(
                s,
                p,
                "participant.remove",
                "session",
                session_id,
                client=client,
                details={"user_id": user_id},
            )
            return [event_view(ev)]

        client = audit.client_address()
        frames = await self.db.write(work)
        audit.mark_recorded()
        await self._publish(p.tenant_id, session_id, frames)
        await self._access_changed(p.tenant_id, session_id, user_id)

    async def can_read(self, p: Principal, session_id: str) -> bool:
        """Whether ``p`` may read the session now (False also when it is gone)."""
        try:
            await self.access_of(p, session_id)
        except NotFound:
            return False
        return True

    async def access_of(self, p: Principal, session_id: str) -> Access:
        """The caller's access to a session they may read (else ``NotFound``)."""
        return (await self.read_facts(p, session_id)).access

    async def _access_changed(self, tenant_id: str, session_id: str, user_id: str | None) -> None:
        for listener in self.access_listeners:
            try:
                await listener(tenant_id, session_id, user_id)
            except Exception:
                log.exception("announcing an access change failed", session=session_id)

    # -- helpers ----------------------------------------------------------------------------

    async def _publish(self, tenant_id: str, session_id: str, frames: list[dict[str, Any]]) -> None:
        """Hand committed events to the publisher. A failure here must not fail the write:
        the events are durable, and subscribers recover them by gap fill or replay."""
        if not frames:
            return
        try:
            await self.publisher.publish(tenant_id, session_id, frames)
        except Exception:
            log.exception("publishing committed events failed", session=session_id)


def grant_role(
    s: Session,
    p: Principal,
    row: m.Session,
    access: Access,
    user: m.User,
    role: Role,
    now: Any,
    *,
    authorised: bool = False,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Make ``user`` a participant with ``role`` (or change their role) inside a unit of work
    that holds the session lock; lifts a removal. Returns the participant view and the event
    frames to publish (none when nothing changed). Checks that ``access`` may grant it, unless
    the grant is ``authorised`` otherwise (an invitation, a share link)."""
    session_id = row.id
    part = s.scalar(
        select(m.Participant).where(
            m.Participant.tenant_id == p.tenant_id,
            m.Participant.session_id == session_id,
            m.Participant.user_id == user.id,
        )
    )
    removal = s.scalar(
        select(m.SessionRemoval).where(
            m.SessionRemoval.tenant_id == p.tenant_id,
            m.SessionRemoval.session_id == session_id,
            m.SessionRemoval.user_id == user.id,
        )
    )
    target_role = Role(part.role) if part is not None else None
    if not authorised and not may_grant(
        access, role, target_removed=removal is not None, target_role=target_role
    ):
        access.check(Action.ADMINISTER, session_id, what=f"grant the role {role} here")
    if removal is not None:
        s.delete(removal)
    if part is not None and part.role == role.value:
        return participant_view(part, user), []
    name = "participant.joined" if part is None else "participant.updated"
    if part is None:
        part = m.Participant(
            session_id=session_id,
            user_id=user.id,
            tenant_id=p.tenant_id,
            role=role.value,
            joined_at=now,
        )
        s.add(part)
    else:
        part.role = role.value
    row.last_seq += 1
    row.updated_at = now
    view = participant_view(part, user)
    ev = new_event(p, session_id, row.last_seq, name, {"participant": view}, now)
    s.add(ev)
    return view, [event_view(ev)]

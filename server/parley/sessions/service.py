"""The session service: every write commits its rows and its durable events in one transaction,
then hands the committed event frames to the publisher. REST and the socket share this code path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import structlog
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from parley.errors import Conflict, ErrorCode, Forbidden, InvalidRequest, NotFound
from parley.governance.auth import Principal
from parley.ids import new_id, utcnow
from parley.sessions import rules
from parley.sessions.rules import Role, SessionStatus
from parley.sessions.views import event_view, message_view, participant_view, session_view
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


@dataclass(slots=True)
class PostResult:
    message: dict[str, Any]
    seq: int
    duplicate: bool


class _Duplicate(Exception):
    def __init__(self, message: dict[str, Any]):
        self.message = message


class SessionService:
    """Sessions, messages and participants for authenticated principals, tenant-scoped."""

    def __init__(self, db: Database, publisher: Publisher, *, max_text_chars: int = 32_000):
        self.db = db
        self.event_log = EventLog(db)
        self.publisher = publisher
        self.max_text_chars = max_text_chars
        self._known_principals: set[tuple[str, str, str, str]] = set()

    # -- principals -------------------------------------------------------------------------

    async def ensure_principal(self, p: Principal) -> None:
        """Create the tenant and user rows the first time a token is seen."""
        key = (p.tenant_id, p.user_id, p.name, str(p.kind))
        if key in self._known_principals:
            return
        now = utcnow()
        for attempt in range(2):
            try:
                async with self.db.write() as s:
                    if await s.get(m.Tenant, p.tenant_id) is None:
                        s.add(m.Tenant(id=p.tenant_id, name=p.tenant_id, created_at=now))
                        await s.flush()
                    user = await s.get(m.User, (p.tenant_id, p.user_id))
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
                break
            except IntegrityError:
                if attempt:  # another process created the same rows at the same moment
                    raise
        self._known_principals.add(key)

    # -- sessions ---------------------------------------------------------------------------

    async def create_session(
        self,
        p: Principal,
        *,
        title: str = "",
        metadata: dict[str, Any] | None = None,
        tags: list[str] | None = None,
    ) -> dict[str, Any]:
        await self.ensure_principal(p)
        title = rules.clean_title(title)
        clean_tags = rules.clean_tags(tags or [])
        metadata = metadata or {}
        rules.check_json_size("metadata", metadata, rules.MAX_METADATA_BYTES)
        now = utcnow()
        sid = new_id()
        async with self.db.write() as s:
            row = m.Session(
                id=sid,
                tenant_id=p.tenant_id,
                title=title,
                meta=metadata,
                status=SessionStatus.ACTIVE.value,
                created_by=p.user_id,
                created_at=now,
                updated_at=now,
                last_seq=2,
            )
            s.add(row)
            await s.flush()  # the session row first: the rows below reference it
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
            await s.flush()
            view = session_view(row, clean_tags)
            user = await s.get(m.User, (p.tenant_id, p.user_id))
            events = [
                _event(p, sid, 1, "session.created", {"session": view}, now),
                _event(
                    p,
                    sid,
                    2,
                    "participant.joined",
                    {"participant": participant_view(part, user)},
                    now,
                ),
            ]
            s.add_all(events)
        await self._publish(p.tenant_id, sid, events)
        return view

    async def get_session(self, p: Principal, session_id: str) -> dict[str, Any]:
        async with self.db.read() as s:
            row = await self._session_row(s, p, session_id)
            return session_view(row, await self._tags(s, session_id))

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
        q = select(m.Session).where(m.Session.tenant_id == p.tenant_id)
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
        async with self.db.read() as s:
            rows = list((await s.scalars(q)).all())
            more = len(rows) > limit
            rows = rows[:limit]
            tags = await self._tags_of(s, [r.id for r in rows])
        items = [session_view(r, tags.get(r.id, [])) for r in rows]
        return items, (rows[-1].id if more and rows else None)

    async def update_session(
        self,
        p: Principal,
        session_id: str,
        *,
        title: str | None = None,
        metadata: dict[str, Any] | None = None,
        tags: list[str] | None = None,
        status: SessionStatus | None = None,
    ) -> dict[str, Any]:
        now = utcnow()
        async with self.db.write() as s:
            row = await self._session_row(s, p, session_id, lock=True)
            role = await self._role(s, p, session_id)
            if role not in rules.WRITERS:
                raise Forbidden("only the session's owners and editors may change it")
            changed: list[str] = []
            if title is not None:
                row.title = rules.clean_title(title)
                changed.append("title")
            if metadata is not None:
                rules.check_json_size("metadata", metadata, rules.MAX_METADATA_BYTES)
                row.meta = metadata
                changed.append("metadata")
            if status is not None and status.value != row.status:
                row.status = status.value
                changed.append("status")
            if tags is not None:
                new_tags = rules.clean_tags(tags)
                await s.execute(delete(m.SessionTag).where(m.SessionTag.session_id == session_id))
                s.add_all(
                    m.SessionTag(session_id=session_id, tag=t, tenant_id=p.tenant_id)
                    for t in new_tags
                )
                changed.append("tags")
            if not changed:
                return session_view(row, await self._tags(s, session_id))
            seq = row.last_seq + 1
            row.last_seq = seq
            row.updated_at = now
            await s.flush()
            view = session_view(row, await self._tags(s, session_id))
            ev = _event(
                p, session_id, seq, "session.updated", {"session": view, "changed": changed}, now
            )
            s.add(ev)
        await self._publish(p.tenant_id, session_id, [ev])
        return view

    async def delete_session(self, p: Principal, session_id: str) -> None:
        """Remove the session and everything in it. Subscribers get ``session.deleted``."""
        async with self.db.write() as s:
            await self._session_row(s, p, session_id, lock=True)
            if await self._role(s, p, session_id) is not Role.OWNER:
                raise Forbidden("only the session's owners may delete it")
            for table in (m.Event, m.Message, m.Participant, m.SessionTag):
                await s.execute(delete(table).where(table.session_id == session_id))
            await s.execute(
                delete(m.Session).where(
                    m.Session.id == session_id, m.Session.tenant_id == p.tenant_id
                )
            )
        await self.publisher.publish_ephemeral(
            p.tenant_id, session_id, "session.deleted", {"session": session_id, "by": p.user_id}
        )

    async def last_seq(self, p: Principal, session_id: str) -> int:
        """The newest ``seq`` of a session the caller may read."""
        async with self.db.read() as s:
            return (await self._session_row(s, p, session_id)).last_seq

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
        metadata = metadata or {}
        rules.check_json_size("metadata", metadata, rules.MAX_METADATA_BYTES)
        await self.ensure_principal(p)
        now = utcnow()
        try:
            async with self.db.write() as s:
                row = await self._session_row(s, p, session_id, lock=True)
                if client_id is not None:
                    existing = await s.scalar(
                        select(m.Message).where(
                            m.Message.session_id == session_id,
                            m.Message.author_id == p.user_id,
                            m.Message.client_id == client_id,
                        )
                    )
                    if existing is not None:
                        raise _Duplicate(message_view(existing))
                if row.status != SessionStatus.ACTIVE.value:
                    raise Conflict("the session is archived", code=ErrorCode.SESSION_ARCHIVED)
                role = await self._role(s, p, session_id)
                rules.check_can_write(role)
                if parent_id is not None:
                    parent = await s.scalar(
                        select(m.Message.id).where(
                            m.Message.id == parent_id, m.Message.session_id == session_id
                        )
                    )
                    if parent is None:
                        raise InvalidRequest(f"parent message {parent_id!r} is not in this session")
                events: list[m.Event] = []
                seq = row.last_seq
                if role is None:
                    seq += 1
                    part = m.Participant(
                        session_id=session_id,
                        user_id=p.user_id,
                        tenant_id=p.tenant_id,
                        role=Role.EDITOR.value,
                        joined_at=now,
                    )
                    s.add(part)
                    user = await s.get(m.User, (p.tenant_id, p.user_id))
                    events.append(
                        _event(
                            p,
                            session_id,
                            seq,
                            "participant.joined",
                            {"participant": participant_view(part, user)},
                            now,
                        )
                    )
                seq += 1
                msg = m.Message(
                    id=new_id(),
                    tenant_id=p.tenant_id,
                    session_id=session_id,
                    seq=seq,
                    author_id=p.user_id,
                    parent_id=parent_id,
                    text=text,
                    parts=parts,
                    meta=metadata,
                    client_id=client_id,
                    created_at=now,
                )
                s.add(msg)
                view = message_view(msg)
                events.append(_event(p, session_id, seq, "message.created", {"message": view}, now))
                s.add_all(events)
                row.last_seq = seq
                row.updated_at = now
        except _Duplicate as dup:
            return PostResult(message=dup.message, seq=dup.message["seq"], duplicate=True)
        except IntegrityError:
            # A concurrent retry with the same client_id won the race on another connection.
            if client_id is None:
                raise
            async with self.db.read() as s:
                existing = await s.scalar(
                    select(m.Message).where(
                        m.Message.session_id == session_id,
                        m.Message.author_id == p.user_id,
                        m.Message.client_id == client_id,
                    )
                )
            if existing is None:
                raise
            view = message_view(existing)
            return PostResult(message=view, seq=existing.seq, duplicate=True)
        await self._publish(p.tenant_id, session_id, events)
        return PostResult(message=view, seq=seq, duplicate=False)

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
        async with self.db.write() as s:
            row = await self._session_row(s, p, session_id, lock=True)
            if row.status != SessionStatus.ACTIVE.value:
                raise Conflict("the session is archived", code=ErrorCode.SESSION_ARCHIVED)
            msg = await self._message_row(s, session_id, message_id)
            if msg.deleted_at is not None:
                raise Conflict("the message was deleted")
            rules.check_can_change_message(
                p.user_id, msg.author_id, await self._role(s, p, session_id), deleting=False
            )
            if text is not None:
                msg.text = text
            if parts is not None:
                msg.parts = parts
            if not msg.text.strip() and not msg.parts:
                raise InvalidRequest("an edit may not leave a message without text or parts")
            if metadata is not None:
                msg.meta = metadata
            msg.edited_at = now
            seq = row.last_seq + 1
            row.last_seq = seq
            row.updated_at = now
            view = message_view(msg)
            ev = _event(p, session_id, seq, "message.edited", {"message": view}, now)
            s.add(ev)
        await self._publish(p.tenant_id, session_id, [ev])
        return view, seq

    async def delete_message(
        self, p: Principal, session_id: str, message_id: str
    ) -> tuple[dict[str, Any], int]:
        """Tombstone a message: its content is erased, its place in the tree is kept."""
        now = utcnow()
        async with self.db.write() as s:
            row = await self._session_row(s, p, session_id, lock=True)
            if row.status != SessionStatus.ACTIVE.value:
                raise Conflict("the session is archived", code=ErrorCode.SESSION_ARCHIVED)
            msg = await self._message_row(s, session_id, message_id)
            if msg.deleted_at is not None:
                raise Conflict("the message was already deleted")
            rules.check_can_change_message(
                p.user_id, msg.author_id, await self._role(s, p, session_id), deleting=True
            )
            msg.text, msg.parts, msg.meta, msg.deleted_at = "", None, {}, now
            seq = row.last_seq + 1
            row.last_seq = seq
            row.updated_at = now
            view = message_view(msg)
            ev = _event(p, session_id, seq, "message.deleted", {"message": view}, now)
            s.add(ev)
        await self._publish(p.tenant_id, session_id, [ev])
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
        async with self.db.read() as s:
            await self._session_row(s, p, session_id)
            q = select(m.Message).where(
                m.Message.session_id == session_id, m.Message.seq > after_seq
            )
            if before_seq is not None:
                q = q.where(m.Message.seq < before_seq)
            rows = (await s.scalars(q.order_by(m.Message.seq).limit(limit))).all()
            return [message_view(r) for r in rows]

    async def list_events(
        self, p: Principal, session_id: str, *, after_seq: int = 0, limit: int = MAX_PAGE
    ) -> list[dict[str, Any]]:
        """Durable event frames with ``seq > after_seq``, in order: what replay sends."""
        async with self.db.read() as s:
            await self._session_row(s, p, session_id)
        return await self.event_log.events_after(session_id, after_seq, limit)

    # -- participants -----------------------------------------------------------------------

    async def list_participants(self, p: Principal, session_id: str) -> list[dict[str, Any]]:
        async with self.db.read() as s:
            await self._session_row(s, p, session_id)
            rows = (
                await s.execute(
                    select(m.Participant, m.User)
                    .outerjoin(
                        m.User,
                        (m.User.tenant_id == m.Participant.tenant_id)
                        & (m.User.id == m.Participant.user_id),
                    )
                    .where(m.Participant.session_id == session_id)
                    .order_by(m.Participant.joined_at, m.Participant.user_id)
                )
            ).all()
            return [participant_view(part, user) for part, user in rows]

    async def add_participant(
        self, p: Principal, session_id: str, user_id: str, role: Role
    ) -> dict[str, Any]:
        """Add a tenant user or change their role; only owners may grant the owner role."""
        now = utcnow()
        async with self.db.write() as s:
            row = await self._session_row(s, p, session_id, lock=True)
            my_role = await self._role(s, p, session_id)
            if my_role not in rules.WRITERS or (role is Role.OWNER and my_role is not Role.OWNER):
                raise Forbidden("you may not grant this role in this session")
            user = await s.get(m.User, (p.tenant_id, user_id))
            if user is None:
                raise NotFound(f"user {user_id!r} does not exist in this tenant")
            part = await s.get(m.Participant, (session_id, user_id))
            if part is not None and part.role == Role.OWNER.value and my_role is not Role.OWNER:
                raise Forbidden("only owners may change an owner's role")
            if part is not None and part.role == role.value:
                return participant_view(part, user)
            name = "participant.joined" if part is None else "participant.updated"
            if part is None:
                part = m.Participant(
                    session_id=session_id,
                    user_id=user_id,
                    tenant_id=p.tenant_id,
                    role=role.value,
                    joined_at=now,
                )
                s.add(part)
            else:
                part.role = role.value
            seq = row.last_seq + 1
            row.last_seq = seq
            row.updated_at = now
            view = participant_view(part, user)
            ev = _event(p, session_id, seq, name, {"participant": view}, now)
            s.add(ev)
        await self._publish(p.tenant_id, session_id, [ev])
        return view

    async def remove_participant(self, p: Principal, session_id: str, user_id: str) -> None:
        """Owners remove anyone; everyone may leave."""
        now = utcnow()
        async with self.db.write() as s:
            row = await self._session_row(s, p, session_id, lock=True)
            if user_id != p.user_id and await self._role(s, p, session_id) is not Role.OWNER:
                raise Forbidden("only the session's owners may remove others")
            part = await s.get(m.Participant, (session_id, user_id))
            if part is None:
                raise NotFound(f"{user_id!r} is not a participant of this session")
            await s.delete(part)
            seq = row.last_seq + 1
            row.last_seq = seq
            row.updated_at = now
            ev = _event(p, session_id, seq, "participant.left", {"user_id": user_id}, now)
            s.add(ev)
        await self._publish(p.tenant_id, session_id, [ev])

    # -- helpers ----------------------------------------------------------------------------

    async def _publish(self, tenant_id: str, session_id: str, events: list[m.Event]) -> None:
        """Hand committed events to the publisher. A failure here must not fail the write:
        the events are durable, and subscribers recover them by gap fill or replay."""
        try:
            await self.publisher.publish(tenant_id, session_id, [event_view(e) for e in events])
        except Exception:
            log.exception("publishing committed events failed", session=session_id)

    async def _session_row(
        self, s: AsyncSession, p: Principal, session_id: str, *, lock: bool = False
    ) -> m.Session:
        """The session if it is in the caller's tenant; otherwise exactly 'not found'."""
        q = select(m.Session).where(m.Session.id == session_id, m.Session.tenant_id == p.tenant_id)
        if lock:
            q = q.with_for_update()
        row = await s.scalar(q)
        if row is None:
            raise NotFound(f"session {session_id!r} not found")
        return row

    async def _message_row(self, s: AsyncSession, session_id: str, message_id: str) -> m.Message:
        msg = await s.scalar(
            select(m.Message).where(m.Message.id == message_id, m.Message.session_id == session_id)
        )
        if msg is None:
            raise NotFound(f"message {message_id!r} not found in this session")
        return msg

    async def _role(self, s: AsyncSession, p: Principal, session_id: str) -> Role | None:
        role = await s.scalar(
            select(m.Participant.role).where(
                m.Participant.session_id == session_id, m.Participant.user_id == p.user_id
            )
        )
        return Role(role) if role is not None else None

    async def _tags(self, s: AsyncSession, session_id: str) -> list[str]:
        return list(
            (
                await s.scalars(
                    select(m.SessionTag.tag).where(m.SessionTag.session_id == session_id)
                )
            ).all()
        )

    async def _tags_of(self, s: AsyncSession, ids: list[str]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        if ids:
            rows = await s.execute(
                select(m.SessionTag.session_id, m.SessionTag.tag).where(
                    m.SessionTag.session_id.in_(ids)
                )
            )
            for sid, tag in rows:
                out.setdefault(sid, []).append(tag)
        return out


def _event(
    p: Principal, session_id: str, seq: int, name: str, data: dict[str, Any], now: Any
) -> m.Event:
    return m.Event(
        session_id=session_id,
        seq=seq,
        tenant_id=p.tenant_id,
        name=name,
        actor_id=p.user_id,
        data=data,
        created_at=now,
    )

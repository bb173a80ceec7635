"""Synchronous, tenant-scoped lookups used inside units of work (see ``storage.database``)."""

from __future__ import annotations

import re
from typing import Any, NamedTuple, cast

from sqlalchemy import ColumnElement, Table, and_, bindparam, or_, select
from sqlalchemy.orm import Session

from parley.errors import NotFound
from parley.governance.auth import Principal
from parley.governance.policy import Access, Action, Visibility
from parley.sessions.rules import Role
from parley.storage import models as m

_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def plausible_id(value: str) -> bool:
    """Session and message ids are UUIDs; anything else cannot name a row (and some inputs,
    such as NUL characters, could not even be sent to PostgreSQL as a parameter)."""
    return bool(_ID_RE.match(value))


# Built once: this runs on every read and write of a session, and building the statement
# object costs more CPU than executing its cached compiled form.
_ACCESS = (
    select(m.Session, m.Participant.role, m.SessionRemoval.user_id)
    .outerjoin(
        m.Participant,
        and_(
            m.Participant.session_id == m.Session.id,
            m.Participant.tenant_id == bindparam("tid"),
            m.Participant.user_id == bindparam("uid"),
        ),
    )
    .outerjoin(
        m.SessionRemoval,
        and_(
            m.SessionRemoval.session_id == m.Session.id,
            m.SessionRemoval.tenant_id == bindparam("tid"),
            m.SessionRemoval.user_id == bindparam("uid"),
        ),
    )
    .where(m.Session.id == bindparam("sid"), m.Session.tenant_id == bindparam("tid"))
)
_ACCESS_LOCKED = _ACCESS.with_for_update(of=m.Session)


_S = cast(Table, m.Session.__table__)
# The caller's role in, and removal from, the session row of the enclosing statement (bound
# parameters ``tid`` and ``uid``): the access facts of the Core read and write paths.
CALLER_ROLE = (
    select(m.Participant.role)
    .where(
        m.Participant.session_id == _S.c.id,
        m.Participant.tenant_id == bindparam("tid"),
        m.Participant.user_id == bindparam("uid"),
    )
    .scalar_subquery()
)
CALLER_REMOVED = (
    select(m.SessionRemoval.user_id)
    .where(
        m.SessionRemoval.session_id == _S.c.id,
        m.SessionRemoval.tenant_id == bindparam("tid"),
        m.SessionRemoval.user_id == bindparam("uid"),
    )
    .scalar_subquery()
)
_FACTS = select(
    _S.c.last_seq, _S.c.history_rev, _S.c.visibility, CALLER_ROLE, CALLER_REMOVED
).where(_S.c.id == bindparam("sid"), _S.c.tenant_id == bindparam("tid"))


class ReadFacts(NamedTuple):
    """What a reader of a session learns in one statement (:func:`readable_facts`)."""

    last_seq: int
    history_rev: int  # bumped when stored events are rewritten (``models.Session``)
    access: Access


def readable_facts(s: Session, p: Principal, session_id: str) -> ReadFacts:
    """The session's last seq, history revision and the caller's access, if they may read it
    (else exactly 'not found', as :func:`session_access`). One Core statement, no ORM object:
    subscribing runs this for every client of a reconnect storm."""
    if not plausible_id(session_id):
        raise NotFound(f"session {session_id[:80]!r} not found")
    params = {"tid": p.tenant_id, "uid": p.user_id, "sid": session_id}
    found = s.connection().execute(_FACTS, params).first()
    if found is None:
        raise NotFound(f"session {session_id!r} not found")
    last_seq, history_rev, visibility, role, removed = found
    access = Access(p, Visibility(visibility), Role(role) if role else None, removed is not None)
    access.check(Action.READ, session_id)
    return ReadFacts(int(last_seq), int(history_rev), access)


def readable_sessions_filter(p: Principal) -> ColumnElement[bool]:
    """A condition on ``sessions`` rows that holds exactly for the sessions ``p`` may read:
    tenant admins read all of their tenant; others their own sessions and the non-private
    ones they were not removed from (``governance.policy``)."""
    in_tenant = m.Session.tenant_id == p.tenant_id
    if p.is_admin:
        return in_tenant
    mine = select(m.Participant.session_id).where(
        m.Participant.tenant_id == p.tenant_id, m.Participant.user_id == p.user_id
    )
    removed = select(m.SessionRemoval.session_id).where(
        m.SessionRemoval.tenant_id == p.tenant_id, m.SessionRemoval.user_id == p.user_id
    )
    return and_(
        in_tenant,
        or_(
            m.Session.id.in_(mine),
            and_(m.Session.visibility != Visibility.PRIVATE.value, m.Session.id.not_in(removed)),
        ),
    )


def session_access(
    s: Session, p: Principal, session_id: str, *, lock: bool = False
) -> tuple[m.Session, Access]:
    """The session if it is in the caller's tenant, with the caller's access to it, in one
    query (the caller's participant row and removal ride along as outer joins). Raises
    'not found' for another tenant's session and for one the caller may not read.

    ``lock`` takes the row lock that serializes writers of one session (PostgreSQL); on SQLite
    the write transaction already holds the database's write lock.
    """
    if not plausible_id(session_id):
        raise NotFound(f"session {session_id[:80]!r} not found")
    q = _ACCESS_LOCKED if lock else _ACCESS
    found = s.execute(q, {"tid": p.tenant_id, "uid": p.user_id, "sid": session_id}).first()
    if found is None:
        raise NotFound(f"session {session_id!r} not found")
    row, role, removed = found
    access = Access(
        p, Visibility(row.visibility), Role(role) if role else None, removed is not None
    )
    access.check(Action.READ, session_id)
    return row, access


def locked_session(s: Session, tenant_id: str, session_id: str) -> m.Session:
    """The session locked for writing, with no read check: only for callers that hold another
    authorisation (an invitation, a share link). 'Not found' as for any other lookup."""
    if not plausible_id(session_id):
        raise NotFound(f"session {session_id[:80]!r} not found")
    row = s.scalar(
        select(m.Session)
        .where(m.Session.id == session_id, m.Session.tenant_id == tenant_id)
        .with_for_update()
    )
    if row is None:
        raise NotFound(f"session {session_id!r} not found")
    return row


def session_row(s: Session, p: Principal, session_id: str, *, lock: bool = False) -> m.Session:
    """The session if the caller may read it (see :func:`session_access`); otherwise exactly
    'not found'."""
    return session_access(s, p, session_id, lock=lock)[0]


def message_row(s: Session, session_id: str, message_id: str, tenant_id: str) -> m.Message:
    if not plausible_id(message_id):
        raise NotFound(f"message {message_id[:80]!r} not found in this session")
    msg = s.scalar(
        select(m.Message).where(
            m.Message.id == message_id,
            m.Message.session_id == session_id,
            m.Message.tenant_id == tenant_id,
        )
    )
    if msg is None:
        raise NotFound(f"message {message_id!r} not found in this session")
    return msg


def role_of(s: Session, user_id: str, session_id: str, tenant_id: str) -> Role | None:
    role = s.scalar(
        select(m.Participant.role).where(
            m.Participant.session_id == session_id,
            m.Participant.user_id == user_id,
            m.Participant.tenant_id == tenant_id,
        )
    )
    return Role(role) if role is not None else None


def message_by_client_id(
    s: Session, session_id: str, author_id: str, client_id: str, tenant_id: str
) -> m.Message | None:
    return s.scalar(
        select(m.Message).where(
            m.Message.tenant_id == tenant_id,
            m.Message.session_id == session_id,
            m.Message.author_id == author_id,
            m.Message.client_id == client_id,
        )
    )


def tags_of(s: Session, session_ids: list[str], tenant_id: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {sid: [] for sid in session_ids}
    if session_ids:
        rows = s.execute(
            select(m.SessionTag.session_id, m.SessionTag.tag).where(
                m.SessionTag.tenant_id == tenant_id, m.SessionTag.session_id.in_(session_ids)
            )
        )
        for sid, tag in rows:
            out[sid].append(tag)
    return out


def new_event(
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

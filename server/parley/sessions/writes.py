"""The message write path in SQLAlchemy Core, inside the session service's unit of work.

Posting a message is the hottest write of the server. Through the ORM it cost about 2.4 ms of
CPU (identity map, flush planning, one SELECT of the session and one of the ``client_id``
before every insert); here it is four cached statements:

1. ``UPDATE sessions SET last_seq = last_seq + 1 ... RETURNING`` the new ``last_seq`` with the
   facts the access rules need (status, visibility, the caller's role and removal, as scalar
   subqueries). The UPDATE takes the row lock that serializes the session's writers
   (PostgreSQL; on SQLite the writer holds the database lock), so the facts are exactly those
   the write commits against, in every process: there is no cache to keep right. A refusal
   raises, and the rollback undoes the increment.
2. ``INSERT`` of the message, with no SELECT of its ``client_id`` first: a retry hits the
   unique constraint and the caller reads the first result (retries pay, first sends do not).
3. ``INSERT`` of its events, and of their tenant feed rows (``storage.feed_log.record``: Core
   inserts into ``events`` skip the ORM flush hook that writes them otherwise).

Encryption at rest applies as on the ORM path (``seal_values``); the search index and the
analysis queue are database triggers, which fire for these inserts as for any other.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import BigInteger, Table, bindparam, insert, select, update
from sqlalchemy.orm import Session

from parley.errors import NotFound
from parley.governance.auth import Principal
from parley.governance.crypto.columns import seal_values
from parley.governance.policy import Access, Action, Visibility
from parley.sessions.queries import CALLER_REMOVED, CALLER_ROLE, plausible_id
from parley.sessions.rules import Role
from parley.storage import feed_log
from parley.storage import models as m

_S = cast(Table, m.Session.__table__)
_P = cast(Table, m.Participant.__table__)
_M = cast(Table, m.Message.__table__)
_E = cast(Table, m.Event.__table__)

# Built once: building a statement costs more CPU than running its cached compiled form.
_CLAIM = (
    update(_S)
    .where(_S.c.id == bindparam("sid"), _S.c.tenant_id == bindparam("tid"))
    .values(
        last_seq=_S.c.last_seq + bindparam("n", type_=BigInteger),
        updated_at=bindparam("now", type_=_S.c.updated_at.type),
    )
    .returning(_S.c.last_seq, _S.c.status, _S.c.visibility, CALLER_ROLE, CALLER_REMOVED)
)
_PARENT = select(_M.c.id).where(
    _M.c.id == bindparam("mid"),
    _M.c.session_id == bindparam("sid"),
    _M.c.tenant_id == bindparam("tid"),
)
_INSERT_MESSAGE = insert(_M)
_INSERT_EVENT = insert(_E)
_INSERT_PARTICIPANT = insert(_P)


@dataclass(slots=True)
class Claim:
    """The seqs taken for a write and the caller's access, as of the locked row."""

    last_seq: int  # the session's last seq after the increment
    status: str
    access: Access


def claim_seqs(s: Session, p: Principal, session_id: str, n: int, now: datetime) -> Claim:
    """Take ``n`` seqs of the session (the row lock of the write) and read the caller's
    access with them. Raises ``NotFound`` when the session is not in the caller's tenant or
    the caller may not read it; other refusals are the caller's to make (and the rollback
    gives the seqs back)."""
    if not plausible_id(session_id):
        raise NotFound(f"session {session_id[:80]!r} not found")
    params = {"sid": session_id, "tid": p.tenant_id, "uid": p.user_id, "n": n, "now": now}
    found = s.connection().execute(_CLAIM, params).first()
    if found is None:
        raise NotFound(f"session {session_id!r} not found")
    last_seq, status, visibility, role, removed = found
    access = Access(p, Visibility(visibility), Role(role) if role else None, removed is not None)
    access.check(Action.READ, session_id)
    return Claim(int(last_seq), status, access)


def parent_exists(s: Session, tenant_id: str, session_id: str, parent_id: str) -> bool:
    """Whether ``parent_id`` names a message of the session."""
    if not plausible_id(parent_id):
        return False
    params = {"mid": parent_id, "sid": session_id, "tid": tenant_id}
    return s.connection().execute(_PARENT, params).first() is not None


def insert_participant(
    s: Session, tenant_id: str, session_id: str, user_id: str, role: Role, now: datetime
) -> None:
    s.connection().execute(
        _INSERT_PARTICIPANT,
        {
            "session_id": session_id,
            "user_id": user_id,
            "tenant_id": tenant_id,
            "role": role.value,
            "joined_at": now,
        },
    )


def event_row(
    p: Principal, session_id: str, seq: int, name: str, data: dict[str, Any], now: datetime
) -> dict[str, Any]:
    """An event row for :func:`insert_events` (as ``queries.new_event`` for the ORM)."""
    return {
        "session_id": session_id,
        "seq": seq,
        "tenant_id": p.tenant_id,
        "name": name,
        "actor_id": p.user_id,
        "data": data,
        "created_at": now,
    }


def insert_message(s: Session, row: dict[str, Any]) -> None:
    """Insert one message row (its columns by table key: ``metadata``, not ``meta``). A
    repeated ``(session_id, author_id, client_id)`` raises ``IntegrityError``."""
    (sealed,) = seal_values(s, m.Message, [row])
    s.connection().execute(_INSERT_MESSAGE, sealed)


def insert_events(s: Session, rows: list[dict[str, Any]]) -> None:
    """Insert event rows and their tenant feed rows, in this transaction."""
    sealed = seal_values(s, m.Event, rows)
    s.connection().execute(_INSERT_EVENT, sealed[0] if len(sealed) == 1 else sealed)
    feed_log.record(s, rows)

"""The tenant feed: a tenant-wide position for every durable event, written in the event's own
transaction, and the reads that consume it in commit order.

Writing: a flush hook sees every ``events`` row a unit of work adds and inserts one
``event_feed`` row per event in the same flush, so the feed can never miss a committed event
nor hold one that was rolled back. No service needs to know.

Reading in commit order: ``(txid, id)`` is the cursor. On SQLite one writer commits at a time
and ``id`` grows with commit order (``txid`` is always 0). On PostgreSQL, ids are allocated
before commit, so a row with a smaller id can become visible after a larger one; a reader
therefore only takes rows whose transaction is older than every transaction still running
(``txid < xmin`` of its snapshot) and orders by ``(txid, id)``. Every row committed later has
a larger ``txid`` than anything read, so a cursor never skips a row. The price: a long
writing transaction anywhere in the PostgreSQL cluster holds readers back until it ends
(:func:`held_back` tells them to keep looking).

Events must be added as ORM objects (``session.add(m.Event(...))``) for the hook to see them;
a bulk Core insert into ``events`` would bypass the feed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, event, func, insert, or_, select
from sqlalchemy.orm import Session, UOWTransaction
from sqlalchemy.sql.elements import ColumnElement

from parley.sessions.views import event_view
from parley.storage import models as m

_installed = False


@dataclass(frozen=True, slots=True, order=True)
class FeedCursor:
    """A position in a tenant's feed; ``str()`` is its wire form (``"<txid>.<id>"``)."""

    txid: int = 0
    id: int = 0

    def __str__(self) -> str:
        return f"{self.txid}.{self.id}"

    @classmethod
    def parse(cls, value: str) -> FeedCursor:
        """Read a cursor from its wire form; raise ValueError when it is not one."""
        txid, sep, ident = value.strip().partition(".")
        if not sep or not txid.isdigit() or not ident.isdigit() or len(value) > 48:
            raise ValueError(f"not a feed cursor: {value[:60]!r}")
        return cls(int(txid), int(ident))


@dataclass(frozen=True, slots=True)
class FeedItem:
    """One durable event at its feed position."""

    cursor: FeedCursor
    tenant_id: str
    session_id: str
    seq: int
    name: str
    created_at: datetime
    frame: dict[str, Any]  # the event frame exactly as subscribers of the session get it


def install() -> None:
    """Register the flush hook that writes feed rows (once per process)."""
    global _installed
    if not _installed:
        event.listen(Session, "after_flush", _write_feed_rows)
        _installed = True


def _write_feed_rows(session: Session, _flush: UOWTransaction) -> None:
    events = [obj for obj in session.new if isinstance(obj, m.Event)]
    record(session, [{k: getattr(obj, k) for k in _FIELDS} for obj in events])


_FIELDS = ("tenant_id", "session_id", "seq", "name", "created_at")


def record(session: Session, events: list[dict[str, Any]]) -> None:
    """Feed rows for ``events`` (their column values), in this transaction. The flush hook
    calls it for ORM events; writers of bulk ``insert(m.Event)`` must call it themselves."""
    rows = [{k: e[k] for k in _FIELDS} for e in events]
    if rows:
        rows.sort(key=lambda r: (r["session_id"], r["seq"]))
        session.connection().execute(insert(m.FeedEntry), rows)


def _visible(s: Session) -> ColumnElement[bool]:
    """Rows no still-running transaction can add to or precede (always true on SQLite)."""
    if s.get_bind().dialect.name != "postgresql":
        return m.FeedEntry.txid >= 0
    return m.FeedEntry.txid < func.txid_snapshot_xmin(func.txid_current_snapshot())


def _after(cursor: FeedCursor) -> ColumnElement[bool]:
    return or_(
        m.FeedEntry.txid > cursor.txid,
        and_(m.FeedEntry.txid == cursor.txid, m.FeedEntry.id > cursor.id),
    )


def read_after(
    s: Session, cursor: FeedCursor, *, tenant_id: str | None = None, limit: int = 200
) -> list[FeedItem]:
    """Feed items after ``cursor`` in commit order, of one tenant or of all."""
    q = (
        select(m.FeedEntry, m.Event)
        .join(
            m.Event,
            and_(
                m.Event.tenant_id == m.FeedEntry.tenant_id,
                m.Event.session_id == m.FeedEntry.session_id,
                m.Event.seq == m.FeedEntry.seq,
            ),
        )
        .where(_after(cursor), _visible(s))
        .order_by(m.FeedEntry.txid, m.FeedEntry.id)
        .limit(limit)
    )
    if tenant_id is not None:
        q = q.where(m.FeedEntry.tenant_id == tenant_id)
    return [
        FeedItem(
            FeedCursor(entry.txid, entry.id),
            entry.tenant_id,
            entry.session_id,
            entry.seq,
            entry.name,
            entry.created_at,
            event_view(ev),
        )
        for entry, ev in s.execute(q).all()
    ]


def held_back(s: Session, cursor: FeedCursor, *, tenant_id: str | None = None) -> bool:
    """Whether rows after ``cursor`` are committed but not yet readable (PostgreSQL: an older
    transaction, possibly unrelated, is still running). Readers then look again soon instead
    of waiting for the next commit's nudge, which may never come."""
    if s.get_bind().dialect.name != "postgresql":
        return False
    q = select(m.FeedEntry.id).where(_after(cursor), ~_visible(s))
    if tenant_id is not None:
        q = q.where(m.FeedEntry.tenant_id == tenant_id)
    return s.execute(q.limit(1)).first() is not None


def head(s: Session, *, tenant_id: str | None = None) -> FeedCursor:
    """The newest readable position (where a reader that wants only new events starts)."""
    q = select(m.FeedEntry.txid, m.FeedEntry.id).where(_visible(s))
    if tenant_id is not None:
        q = q.where(m.FeedEntry.tenant_id == tenant_id)
    row = s.execute(q.order_by(m.FeedEntry.txid.desc(), m.FeedEntry.id.desc()).limit(1)).first()
    return FeedCursor(int(row[0]), int(row[1])) if row else FeedCursor()

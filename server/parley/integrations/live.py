"""Live tenant feeds: one principal's stream of the tenant's durable events, filtered and
permission-checked, resumable from a feed cursor. Server-Sent Events and the socket's
``feed_subscribe`` both read through :class:`FeedReader`.

Each reader keeps its own cursor and reads storage after it, so resuming, catching up and
following live are one loop, and the order is the tenant feed's commit order. Readers sleep
until a commit of their tenant nudges them (``signal.py``) or the poll interval passes.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from functools import partial
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from parley import metrics
from parley.errors import InvalidRequest
from parley.governance.auth import Principal
from parley.hub.connection import Connection
from parley.hub.events import OutEvent
from parley.integrations import retention
from parley.integrations.filters import FeedFilter
from parley.integrations.signal import FeedSignal, wait
from parley.sessions.queries import readable_sessions_filter, tags_of
from parley.storage import feed_log
from parley.storage import models as m
from parley.storage.database import Database
from parley.storage.feed_log import FeedCursor, FeedItem

log = structlog.get_logger("parley.integrations")
BATCH = 200
HELD_BACK_RETRY = 0.1  # seconds: committed rows wait for an older transaction to end


def parse_cursor(value: str, field: str = "cursor") -> FeedCursor:
    try:
        return FeedCursor.parse(value)
    except ValueError:
        raise InvalidRequest(
            f"{field} {value[:60]!r} is not a feed position (it looks like '12.345')"
        ) from None


@dataclass(slots=True)
class _Batch:
    items: list[FeedItem]
    cursor: FeedCursor
    full: bool
    held_back: bool = False  # committed rows not readable yet: look again soon


def _read_visible(
    s: Session, *, principal: Principal, flt: FeedFilter, cursor: FeedCursor
) -> _Batch:
    raw = feed_log.read_after(s, cursor, tenant_id=principal.tenant_id, limit=BATCH)
    if not raw:
        return _Batch(
            [], cursor, False, feed_log.held_back(s, cursor, tenant_id=principal.tenant_id)
        )
    ids = sorted({i.session_id for i in raw})
    # The same read rule as everywhere (sessions.queries): deleted sessions drop out too.
    readable = set(
        s.scalars(
            select(m.Session.id).where(m.Session.id.in_(ids), readable_sessions_filter(principal))
        ).all()
    )
    tags = tags_of(s, ids, principal.tenant_id) if flt.tags else {}
    items = [
        i
        for i in raw
        if i.session_id in readable
        and flt.matches(i.name, i.session_id, tags.get(i.session_id, ()))
    ]
    full = len(raw) == BATCH
    held = not full and feed_log.held_back(s, raw[-1].cursor, tenant_id=principal.tenant_id)
    return _Batch(items, raw[-1].cursor, full, held)


@dataclass(frozen=True, slots=True)
class Resync:
    """A resume from before the tenant's retention watermark: events between ``requested``
    and ``resumed`` may have been deleted, so the reader starts at ``resumed`` and the client
    must reload the state it keeps (sessions, messages) instead of trusting its feed."""

    requested: FeedCursor
    resumed: FeedCursor
    retention_seconds: float

    def data(self) -> dict[str, Any]:
        """What the client is told (the data of a ``feed.resync`` event)."""
        return {
            "requested": str(self.requested),
            "resumed": str(self.resumed),
            "retention_seconds": self.retention_seconds,
            "message": (
                f"events after {self.requested} up to {self.resumed} are no longer kept (the "
                "feed keeps read events for its retention period): reload your state over "
                "REST, then follow the feed from here"
            ),
        }


class FeedReader:
    """One subscriber's position in its tenant feed (``resync`` set when it resumed from a
    position retention has deleted past)."""

    def __init__(
        self,
        db: Database,
        signal: FeedSignal,
        principal: Principal,
        flt: FeedFilter,
        cursor: FeedCursor,
        poll_interval: float,
    ) -> None:
        self.db = db
        self.signal = signal
        self.principal = principal
        self.filter = flt
        self.cursor = cursor
        self.poll_interval = poll_interval
        self.resync: Resync | None = None

    async def next(self, max_wait: float) -> list[FeedItem]:
        """The next visible items after the cursor; empty after ``max_wait`` without any."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max_wait
        while True:
            wake = self.signal.waiter(self.principal.tenant_id)
            batch = await self.db.read(
                partial(
                    _read_visible, principal=self.principal, flt=self.filter, cursor=self.cursor
                )
            )
            self.cursor = batch.cursor
            if batch.items:
                return batch.items
            if batch.full:
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                return []
            pause = HELD_BACK_RETRY if batch.held_back else self.poll_interval
            await wait(wake, min(remaining, pause))


def feed_frame(item: FeedItem) -> dict[str, Any]:
    """The socket frame of one feed item."""
    return {"type": "feed", "cursor": str(item.cursor), "event": item.frame}


RESYNC_EVENT = "feed.resync"


def resync_frame(resync: Resync) -> dict[str, Any]:
    """The socket frame telling a feed subscriber that events it asked for are gone."""
    return {
        "type": "feed",
        "cursor": str(resync.resumed),
        "event": {
            "type": "event",
            "session": None,
            "seq": None,
            "event": RESYNC_EVENT,
            "data": resync.data(),
        },
    }


class LiveFeeds:
    """Opens readers; runs the socket's feed subscriptions (one per connection)."""

    def __init__(
        self, db: Database, signal: FeedSignal, poll_interval: float, retention: float = 0.0
    ) -> None:
        self.db = db
        self.signal = signal
        self.poll_interval = poll_interval
        self.retention = retention
        self._sockets: dict[int, asyncio.Task[None]] = {}

    async def reader(
        self, principal: Principal, flt: FeedFilter, cursor: FeedCursor | None
    ) -> FeedReader:
        """A reader after ``cursor``, or after the newest event when it is None. A cursor
        before the tenant's retention watermark starts at the watermark, with ``resync``."""
        if cursor is None:
            cursor = await self.db.read(partial(feed_log.head, tenant_id=principal.tenant_id))
            return FeedReader(self.db, self.signal, principal, flt, cursor, self.poll_interval)
        mark = await self.db.read(partial(retention.watermark, tenant_id=principal.tenant_id))
        if mark is None or cursor >= mark:
            return FeedReader(self.db, self.signal, principal, flt, cursor, self.poll_interval)
        reader = FeedReader(self.db, self.signal, principal, flt, mark, self.poll_interval)
        reader.resync = Resync(cursor, mark, self.retention)
        log.info("feed resume before the retention watermark", tenant=principal.tenant_id,
                 requested=str(cursor), resumed=str(mark))  # fmt: skip
        return reader

    async def subscribe_socket(
        self, conn: Connection, principal: Principal, flt: FeedFilter, cursor: FeedCursor | None
    ) -> FeedCursor:
        """Start (or replace) the connection's feed; returns where it starts."""
        self.unsubscribe_socket(conn)
        reader = await self.reader(principal, flt, cursor)
        start = reader.cursor
        self._sockets[id(conn)] = asyncio.create_task(self._pump(conn, reader))
        return start

    def unsubscribe_socket(self, conn: Connection) -> bool:
        task = self._sockets.pop(id(conn), None)
        if task is None:
            return False
        task.cancel()
        return True

    async def stop(self) -> None:
        tasks = list(self._sockets.values())
        self._sockets.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _pump(self, conn: Connection, reader: FeedReader) -> None:
        metrics.FEED_STREAMS.inc()
        failures = 0
        try:
            if reader.resync is not None:
                notice = resync_frame(reader.resync)
                await conn.send_event_waiting(OutEvent.from_frame(notice))
            while conn.is_open:
                try:
                    items = await reader.next(self.poll_interval)
                except Exception:  # storage hiccup: the cursor is kept, so nothing is lost
                    failures += 1
                    log.exception("socket feed read failed", conn=conn.id)
                    await asyncio.sleep(min(10.0, 0.2 * 2**failures))
                    continue
                failures = 0
                for item in items:
                    # Waits for room like replay does: a catch-up must not overflow the queue.
                    await conn.send_event_waiting(OutEvent.from_frame(feed_frame(item)))
        finally:
            metrics.FEED_STREAMS.dec()
            if self._sockets.get(id(conn)) is asyncio.current_task():
                del self._sockets[id(conn)]

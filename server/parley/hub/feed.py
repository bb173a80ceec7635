"""A session's feed on one process: restores ``seq`` order, fills gaps, fans out locally."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from parley import metrics
from parley.errors import CloseCode
from parley.hub.connection import Connection
from parley.hub.events import OutEvent

log = structlog.get_logger("parley.hub")

EventsAfter = Callable[[str, int, int], Awaitable[list[dict[str, Any]]]]

# Recent events kept per feed, to answer ``since_seq`` resumes without a storage read: a client
# that lost its connection for a moment usually misses a few events, and in a reconnect storm
# every client of a session asks for the same few. Bounded in number and age.
RECENT_EVENTS = 64
RECENT_SECONDS = 30.0


class Subscription:
    """A connection's place in a feed before it is live.

    While it replays from storage, events wait in ``buffer``. After the replay, ``floor`` is the
    last seq the client has; if the feed is still behind that (storage can be ahead of the
    broker), events up to ``floor`` are skipped and the first one after it makes the
    subscription live.
    """

    __slots__ = ("buffer", "conn", "floor")

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.buffer: list[OutEvent] = []
        self.floor: int | None = None


class SessionFeed:
    """Delivers a session's durable events to local subscribers exactly once and in ``seq`` order.

    Events from the broker may arrive out of order (concurrent writers publish after their own
    commits) or not at all (the broker is at most once). Out-of-order events wait in ``pending``;
    a gap that does not close within ``gap_grace`` seconds is read from storage.
    """

    def __init__(
        self,
        tenant_id: str,
        session_id: str,
        channel: str,
        events_after: EventsAfter,
        *,
        gap_grace: float = 0.1,
        max_buffer: int = 2048,
    ) -> None:
        self.tenant_id = tenant_id
        self.session_id = session_id
        self.channel = channel
        self.live: dict[Connection, None] = {}
        self.replaying: dict[Connection, Subscription] = {}
        self.delivered: int | None = None  # None until initialised from storage
        self.pending: dict[int, OutEvent] = {}
        self.closed = False
        self._events_after = events_after
        self._gap_grace = gap_grace
        self._max_buffer = max_buffer
        self._gap_task: asyncio.Task[None] | None = None
        self._resync_task: asyncio.Task[None] | None = None
        # The last delivered events, consecutive seqs, with when they were delivered; valid for
        # the session's stored history revision ``history`` (``models.Session.history_rev``).
        self._recent: deque[tuple[float, OutEvent]] = deque(maxlen=RECENT_EVENTS)
        self.history: int | None = None
        # Events up to this seq were stored before the newest known purge, so what the broker
        # carries of them may be content the purge blanked: they are never kept in memory.
        self._purged_through = 0

    def __len__(self) -> int:
        return len(self.live) + len(self.replaying)

    def initialise(self, last_seq: int) -> None:
        """Start ordering after ``last_seq`` (read from storage after the broker subscription)."""
        self.delivered = last_seq
        stale = [s for s in self.pending if s <= last_seq]
        for s in stale:
            del self.pending[s]
        self._drain()

    # -- input ------------------------------------------------------------------------------

    def accept(self, event: OutEvent) -> None:
        """Take one event from the broker (or from storage, when filling a gap)."""
        if not event.durable:
            self._fanout(event, include_replaying=False)
            return
        seq = event.seq
        if self.delivered is None:
            self.pending[seq] = event
            return
        if seq <= self.delivered:
            return  # already delivered: a duplicate from a gap fill or the broker
        if seq == self.delivered + 1:
            self._deliver(event)
            if self.pending:
                self._drain()
            return
        self.pending[seq] = event
        self._schedule_gap_fill()

    def _drain(self) -> None:
        assert self.delivered is not None
        while self.pending:
            event = self.pending.pop(self.delivered + 1, None)
            if event is None:
                break
            self._deliver(event)
        if self.pending:
            self._schedule_gap_fill()

    def _deliver(self, event: OutEvent) -> None:
        self.delivered = event.seq
        recent = self._recent
        if recent and recent[-1][1].seq != event.seq - 1:
            recent.clear()
        if event.seq > self._purged_through:
            recent.append((time.monotonic(), event))
        self._fanout(event, include_replaying=True)

    def note_history(self, history: int, last_seq: int) -> None:
        """A subscriber read the session's stored history revision ``history`` and its
        ``last_seq`` with its access. A newer revision means stored events were rewritten (a
        purge) since the recent events were delivered: they are dropped, and so are events up
        to ``last_seq`` still on their way through the broker (committed before the purge,
        they carry what it blanked). The first revision a feed learns counts as new when it
        is not 0: the purge may have come after the feed started."""
        if self.history is None or history > self.history:
            self._recent.clear()
            if history:
                self._purged_through = max(self._purged_through, last_seq)
            self.history = history

    def recent_after(self, since_seq: int, last_seq: int, history: int) -> list[OutEvent] | None:
        """The delivered events after ``since_seq`` when memory holds exactly what storage
        answered the caller's read: every event up to its ``last_seq``, under the same stored
        history revision ``history``. None when storage must be read."""
        if history != self.history:
            return None
        if self.delivered is None or since_seq > self.delivered or last_seq > self.delivered:
            return None
        if since_seq == self.delivered:
            return []
        recent = self._recent
        horizon = time.monotonic() - RECENT_SECONDS
        while recent and recent[0][0] < horizon:
            recent.popleft()
        if not recent or recent[0][1].seq > since_seq + 1 or recent[-1][1].seq != self.delivered:
            return None
        return [event for _, event in recent if event.seq > since_seq]

    def _fanout(self, event: OutEvent, *, include_replaying: bool) -> None:
        written = 0  # frames written at once, counted once for the fan-out
        for conn in self.live:
            if conn.send_event(event, count=False):
                written += 1
        if written:
            metrics.FRAMES_OUT.inc(written)
        if not include_replaying:
            # Ephemeral events (stream deltas, typing): a subscription that was acked and only
            # waits for the feed to reach its floor is live for them; one still replaying is
            # not (its ack, which comes first, is not out yet).
            for sub in self.replaying.values():
                if sub.floor is not None:
                    sub.conn.send_event(event)
        elif self.replaying:
            promoted: list[Subscription] = []
            for sub in self.replaying.values():
                if sub.floor is not None:
                    if event.seq > sub.floor:
                        sub.conn.send_event(event)
                        promoted.append(sub)
                elif len(sub.buffer) >= self._max_buffer:
                    sub.conn.close(CloseCode.SLOW_CONSUMER, "too many events during replay")
                else:
                    sub.buffer.append(event)
            for sub in promoted:
                self._promote(sub)
        metrics.EVENTS_DELIVERED.inc()
        metrics.FANOUT_LATENCY.observe(max(0.0, time.time() - event.published_at))

    # -- gaps -------------------------------------------------------------------------------

    def _schedule_gap_fill(self) -> None:
        if self._gap_task is None and not self.closed:
            self._gap_task = asyncio.get_running_loop().create_task(self._fill_gaps())

    async def _fill_gaps(self) -> None:
        delay = self._gap_grace
        try:
            while self.pending and not self.closed:
                await asyncio.sleep(delay)
                if not self.pending or self.delivered is None:
                    continue
                missing_from = self.delivered
                if missing_from + 1 in self.pending:
                    self._drain()
                    continue
                try:
                    frames = await self._events_after(self.session_id, missing_from, 500)
                except Exception as exc:
                    log.warning(
                        "gap fill failed; retrying", session=self.session_id, error=str(exc)
                    )
                    delay = min(delay * 2, 5.0)
                    continue
                metrics.GAP_FILLS.inc()
                log.info(
                    "filling seq gap from storage",
                    session=self.session_id,
                    after=missing_from,
                    fetched=len(frames),
                )
                for frame in frames:
                    if self.delivered is not None and frame["seq"] == self.delivered + 1:
                        self._deliver(OutEvent.from_frame(frame))
                self.pending = {s: e for s, e in self.pending.items() if s > (self.delivered or 0)}
                self._drain()
                delay = self._gap_grace
        finally:
            self._gap_task = None

    def resync(self) -> None:
        """Catch up from storage: the broker was interrupted and may have lost events."""
        if not self.closed and self.delivered is not None and self._resync_task is None:
            self._resync_task = asyncio.get_running_loop().create_task(self._catch_up())

    async def _catch_up(self) -> None:
        try:
            await self._catch_up_pages()
        finally:
            self._resync_task = None

    async def _catch_up_pages(self) -> None:
        delay = self._gap_grace
        while not self.closed and self.delivered is not None:
            try:
                frames = await self._events_after(self.session_id, self.delivered, 500)
            except Exception as exc:
                log.warning("resync failed; retrying", session=self.session_id, error=str(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            for frame in frames:
                self.accept(OutEvent.from_frame(frame))
            if len(frames) < 500:
                return

    # -- subscribers ------------------------------------------------------------------------

    def add_replaying(self, conn: Connection) -> Subscription:
        self.live.pop(conn, None)
        sub = Subscription(conn)
        self.replaying[conn] = sub
        return sub

    def go_live(self, sub: Subscription, after_seq: int) -> None:
        """The client has everything up to ``after_seq``: send what arrived during the replay
        after it, then deliver live, never an event at or below ``after_seq``."""
        conn = sub.conn
        for event in sub.buffer:
            if event.seq > after_seq:
                conn.send_event(event)
                after_seq = event.seq
        sub.buffer.clear()
        if self.delivered is not None and self.delivered >= after_seq:
            self._promote(sub)
        else:
            sub.floor = after_seq  # storage was ahead of the broker; wait for the feed

    def _promote(self, sub: Subscription) -> None:
        if self.replaying.pop(sub.conn, None) is not None:
            self.live[sub.conn] = None

    def is_subscribed(self, conn: Connection) -> bool:
        return conn in self.live or conn in self.replaying

    def remove(self, conn: Connection) -> None:
        self.live.pop(conn, None)
        self.replaying.pop(conn, None)

    def close(self) -> None:
        self.closed = True
        for task in (self._gap_task, self._resync_task):
            if task is not None:
                task.cancel()

"""The hub of one process: local connections, session feeds, and publishing through the broker.

Every event takes the same path, even in a single process: ``publish`` hands it to the broker;
the broker calls back every process that has subscribers, including this one; the session's
feed puts it in ``seq`` order and queues the same bytes on every local subscriber.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

import structlog

from parley import metrics
from parley.broker.base import Broker
from parley.errors import CloseCode, ErrorCode, NotFound, ParleyError
from parley.governance.auth import Principal
from parley.hub.connection import Connection
from parley.hub.events import OutEvent
from parley.hub.feed import EventsAfter, SessionFeed
from parley.ids import iso, utcnow
from parley.presence.base import Change, Member, PresenceStore
from parley.presence.memory import MemoryPresenceStore
from parley.protocol.server_frames import error

log = structlog.get_logger("parley.hub")

LastSeq = Callable[[str], Awaitable[int]]
CanRead = Callable[[Principal, str], Awaitable[bool]]
# Durable events after which some subscribers may have lost the right to read the session.
ACCESS_EVENTS = frozenset({"participant.left", "participant.updated", "session.updated"})
LastSeqs = Callable[[list[str]], Awaitable[dict[str, int]]]
REPLAY_PAGE = 500


def session_channel(tenant_id: str, session_id: str) -> str:
    return f"parley:{tenant_id}:session:{session_id}"


def presence_key(tenant_id: str, session_id: str) -> str:
    return f"parley:{tenant_id}:presence:{session_id}"


class Hub:
    """Implements the session service's ``Publisher`` and serves subscriptions."""

    def __init__(
        self,
        broker: Broker,
        *,
        events_after: EventsAfter,
        last_seq: LastSeq,
        last_seqs: LastSeqs | None = None,
        presence: PresenceStore | None = None,
        gap_grace: float = 0.1,
        max_replay_buffer: int = 2048,
    ) -> None:
        self.broker = broker
        self.presence = presence or MemoryPresenceStore()
        self.node_id = f"{os.getpid()}-{secrets.token_hex(4)}"
        self._members: dict[Connection, dict[str, tuple[str, Member]]] = {}
        self._tick: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self.connections: set[Connection] = set()
        self._events_after = events_after
        self._last_seq = last_seq
        self._last_seqs = last_seqs
        self._gap_grace = gap_grace
        self._max_replay_buffer = max_replay_buffer
        self._feeds: dict[str, SessionFeed] = {}
        self._ready: dict[str, asyncio.Future[None]] = {}
        self._subscriptions: dict[Connection, dict[str, SessionFeed]] = {}
        # Broker subscribe/unsubscribe of one channel must not interleave; they are rare
        # (first and last local subscriber of a session), so one lock is enough.
        self._channel_lock = asyncio.Lock()
        broker.on_resync(self._resync_all)
        # Whether a principal may still read a session (the app wires the session service);
        # asked after membership or visibility changes, on every process that has subscribers.
        self.can_read: CanRead | None = None

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` in the background, keeping a reference until it is done."""
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def start(self) -> None:
        """Start the presence heartbeat (refresh own members, expire crashed processes')."""
        self._tick = asyncio.get_running_loop().create_task(self._presence_tick())

    def _resync_all(self) -> None:
        """The broker was interrupted: every feed reads what it may have missed from storage."""
        feeds = list(self._feeds.values())
        for feed in feeds:
            feed.resync()
        metrics.RESYNCS.inc(len(feeds))
        log.info("resyncing session feeds from storage", feeds=len(feeds))

    # -- publishing (the session service's Publisher) ---------------------------------------

    async def publish(
        self, tenant_id: str, session_id: str, frames: Sequence[dict[str, Any]]
    ) -> None:
        channel = session_channel(tenant_id, session_id)
        for frame in frames:
            await self.broker.publish(channel, OutEvent.from_frame(frame).envelope())
        metrics.EVENTS_PUBLISHED.labels(kind="durable").inc(len(frames))

    async def publish_ephemeral(
        self, tenant_id: str, session_id: str, name: str, data: dict[str, Any]
    ) -> None:
        channel = session_channel(tenant_id, session_id)
        feed = self._feeds.get(channel)
        frame = {
            "type": "event",
            "session": session_id,
            "seq": (feed.delivered or 0) if feed else 0,
            "event": name,
            "data": data,
            "ephemeral": True,
            "ts": iso(utcnow()),
        }
        await self.broker.publish(channel, OutEvent.from_frame(frame).envelope())
        metrics.EVENTS_PUBLISHED.labels(kind="ephemeral").inc()

    def _on_message(self, channel: str, payload: bytes) -> None:
        feed = self._feeds.get(channel)
        if feed is None:
            return
        try:
            event = OutEvent.from_envelope(payload)
        except Exception as exc:  # a foreign or corrupt payload must not break the broker loop
            log.error("dropping undecodable broker payload", channel=channel, error=str(exc))
            return
        try:
            feed.accept(event)
            name = event.frame.get("event")
            if name == "session.deleted":
                self._drop_feed_subscribers(feed)
            elif name in ACCESS_EVENTS:
                self._access_event(feed, event.frame)
        except Exception:  # never let one delivery fault reach the publisher or the broker
            log.exception("local delivery failed", channel=channel)

    # -- connections ------------------------------------------------------------------------

    def add_connection(self, conn: Connection) -> None:
        self.connections.add(conn)
        conn.on_close = self.detach
        metrics.CONNECTIONS.set(len(self.connections))

    def detach(self, conn: Connection) -> None:
        """Stop delivering to ``conn`` at once (it is closing); feeds left empty go later."""
        feeds = list(self._subscriptions.pop(conn, {}).values())
        metrics.SUBSCRIPTIONS.dec(len(feeds))
        for feed in feeds:
            feed.remove(conn)
            if not len(feed):
                self._spawn(self._release(feed))
        for session_id in list(self._members.get(conn, {})):
            self._spawn(self._leave_presence(conn, session_id))

    async def remove_connection(self, conn: Connection) -> None:
        self.connections.discard(conn)
        metrics.CONNECTIONS.set(len(self.connections))
        feeds = list(self._subscriptions.pop(conn, {}).values())
        metrics.SUBSCRIPTIONS.dec(len(feeds))
        for feed in feeds:
            feed.remove(conn)
            await self._release(feed)
        for session_id in list(self._members.get(conn, {})):
            await self._leave_presence(conn, session_id)
        self._members.pop(conn, None)

    def subscribed(self, conn: Connection, session_id: str) -> bool:
        return session_id in self._subscriptions.get(conn, {})

    # -- subscriptions ----------------------------------------------------------------------

    async def subscribe(
        self,
        conn: Connection,
        tenant_id: str,
        session_id: str,
        since_seq: int | None,
        on_ready: Callable[[int, int, list[dict[str, str]]], None],
        *,
        last_seq: int,
        history: int,
    ) -> None:
        """Subscribe ``conn``; replay events after ``since_seq``, then go live.
        ``last_seq`` and ``history``: the session's last seq and history revision as the
        caller read them with its access (the floor of a subscription without ``since_seq``
        when the feed is behind storage; whether the feed's recent events may answer the
        replay instead of storage).

        ``on_ready(seq, replayed, present_users)`` runs after the replay and before the first
        live event, so the client's ack separates the two. No event is skipped or sent twice:
        live events that arrive during the replay are held and sent after it, minus those the
        replay covered.
        """
        feed = await self._feed(tenant_id, session_id)
        subs = self._subscriptions.setdefault(conn, {})
        if subs.get(session_id) is None:
            metrics.SUBSCRIPTIONS.inc()
        subs[session_id] = feed
        sub = feed.add_replaying(conn)
        feed.note_history(history, last_seq)
        try:
            if since_seq is None:
                # Every event after what the feed delivered reaches this subscription through
                # the feed (held until it goes live); the caller's read of storage may be
                # ahead of the feed (events not yet published), and then it is the floor.
                floor = max(feed.delivered or 0, last_seq)
                replayed = 0
            else:
                recent = feed.recent_after(since_seq, last_seq, history)
                if recent is None:
                    floor, replayed = await self._replay(conn, session_id, since_seq)
                else:
                    floor, replayed = await self._replay_recent(conn, since_seq, recent)
        except BaseException:
            feed.remove(conn)
            if subs.pop(session_id, None) is not None:
                metrics.SUBSCRIPTIONS.dec()
            await self._release(feed)
            raise
        if not conn.is_open:
            return
        if feed.closed or not feed.is_subscribed(conn):
            raise NotFound(f"session {session_id!r} was deleted")
        present = await self._join_presence(conn, tenant_id, session_id)
        if not conn.is_open or not feed.is_subscribed(conn):
            return
        on_ready(floor, replayed, present)
        feed.go_live(sub, floor)

    async def _replay_recent(
        self, conn: Connection, since_seq: int, events: list[OutEvent]
    ) -> tuple[int, int]:
        metrics.REPLAYS.labels(source="memory").inc()
        for event in events:
            await conn.send_event_waiting(event)
        return (events[-1].seq if events else since_seq), len(events)

    async def _replay(self, conn: Connection, session_id: str, since_seq: int) -> tuple[int, int]:
        metrics.REPLAYS.labels(source="storage").inc()
        floor, replayed = since_seq, 0
        while conn.is_open:
            frames = await self._events_after(session_id, floor, REPLAY_PAGE)
            for frame in frames:
                await conn.send_event_waiting(OutEvent.from_frame(frame))
                floor = frame["seq"]
            replayed += len(frames)
            if len(frames) < REPLAY_PAGE:
                break
        return floor, replayed

    async def unsubscribe(self, conn: Connection, session_id: str) -> bool:
        """Drop one subscription. False when ``conn`` was not subscribed to the session."""
        feed = self._subscriptions.get(conn, {}).pop(session_id, None)
        if feed is None:
            return False
        metrics.SUBSCRIPTIONS.dec()
        feed.remove(conn)
        await self._leave_presence(conn, session_id)
        await self._release(feed)
        return True

    # -- presence ---------------------------------------------------------------------------

    def _member(self, conn: Connection) -> Member:
        p = conn.principal
        assert p is not None
        return Member(p.user_id, p.name, str(p.kind), f"{self.node_id}:{conn.id}")

    async def _join_presence(
        self, conn: Connection, tenant_id: str, session_id: str
    ) -> list[dict[str, str]]:
        key = presence_key(tenant_id, session_id)
        member = self._member(conn)
        try:
            change = await self.presence.update(key, add=member)
            present = await self.presence.present(key)
        except Exception as exc:  # presence is best effort; the subscription still works
            log.warning("presence unavailable", error=str(exc))
            return []
        self._members.setdefault(conn, {})[session_id] = (key, member)
        await self._announce(tenant_id, session_id, change)
        return present

    async def _leave_presence(self, conn: Connection, session_id: str) -> None:
        entry = self._members.get(conn, {}).pop(session_id, None)
        if entry is None:
            return
        key, member = entry
        p = conn.principal
        assert p is not None
        try:
            change = await self.presence.update(key, remove=member)
        except Exception as exc:
            log.warning("presence unavailable", error=str(exc))
            return
        await self._announce(p.tenant_id, session_id, change)

    async def _announce(self, tenant_id: str, session_id: str, change: Change) -> None:
        for user in change.joined:
            await self.publish_ephemeral(tenant_id, session_id, "presence.joined", user)
        for user_id in change.left:
            await self.publish_ephemeral(
                tenant_id, session_id, "presence.left", {"user_id": user_id}
            )

    async def _audit_feeds(self) -> None:
        """Catch up feeds that are behind storage. Gaps are normally noticed when a later event
        arrives, or announced by the broker after an outage; but when a process dies between a
        commit and its publish, the newest events of a session are simply never published,
        and nothing later may come. One query per heartbeat finds those feeds."""
        if self._last_seqs is None or not self._feeds:
            return
        feeds = list(self._feeds.values())
        try:
            stored = await self._last_seqs([f.session_id for f in feeds])
        except Exception as exc:
            log.warning("feed audit failed", error=str(exc))
            return
        behind = [
            f
            for f in feeds
            if f.delivered is not None
            and stored.get(f.session_id, 0) > f.delivered
            and not f.pending
        ]
        for feed in behind:
            feed.resync()
        if behind:
            metrics.RESYNCS.inc(len(behind))
            log.info("feeds behind storage caught up", feeds=len(behind))

    async def present(self, tenant_id: str, session_id: str) -> list[dict[str, str]]:
        """The users present in a session, on every process."""
        return await self.presence.present(presence_key(tenant_id, session_id))

    async def _presence_tick(self) -> None:
        """Refresh this process's members and expire those of processes that stopped; check
        that no feed is behind storage."""
        while True:
            await asyncio.sleep(self.presence.ttl / 3)
            await self._audit_feeds()
            try:
                await self.presence.refresh(
                    [entry for members in self._members.values() for entry in members.values()]
                )
                for feed in list(self._feeds.values()):
                    key = presence_key(feed.tenant_id, feed.session_id)
                    change = await self.presence.update(key)
                    await self._announce(feed.tenant_id, feed.session_id, change)
            except Exception as exc:
                log.warning("presence heartbeat failed", error=str(exc))

    async def _feed(self, tenant_id: str, session_id: str) -> SessionFeed:
        channel = session_channel(tenant_id, session_id)
        feed = self._feeds.get(channel)
        if feed is not None:
            await asyncio.shield(self._ready[channel])
            return feed
        feed = SessionFeed(
            tenant_id,
            session_id,
            channel,
            self._events_after,
            gap_grace=self._gap_grace,
            max_buffer=self._max_replay_buffer,
        )
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._feeds[channel] = feed
        self._ready[channel] = ready
        metrics.FEEDS.set(len(self._feeds))
        try:
            async with self._channel_lock:
                await self.broker.subscribe(channel, self._on_message)
            # Read the position only once the subscription is active: every event committed
            # after this read is then certain to arrive through the broker.
            feed.initialise(await self._last_seq(session_id))
        except BaseException as exc:
            self._forget(feed)
            ready.set_exception(exc)
            ready.exception()  # mark retrieved; waiters re-raise it themselves
            async with self._channel_lock:
                await self.broker.unsubscribe(channel)
            raise
        ready.set_result(None)
        return feed

    async def _release(self, feed: SessionFeed) -> None:
        """Tear the feed down when its last local subscriber has left."""
        if len(feed) or self._feeds.get(feed.channel) is not feed:
            return
        self._forget(feed)
        async with self._channel_lock:
            if feed.channel not in self._feeds:  # nobody re-created it meanwhile
                await self.broker.unsubscribe(feed.channel)

    def _forget(self, feed: SessionFeed) -> None:
        feed.close()
        if self._feeds.get(feed.channel) is feed:
            del self._feeds[feed.channel]
            self._ready.pop(feed.channel, None)
        metrics.FEEDS.set(len(self._feeds))

    def _access_event(self, feed: SessionFeed, frame: dict[str, Any]) -> None:
        data = frame.get("data") or {}
        name = frame.get("event")
        if name == "session.updated":
            if "visibility" not in (data.get("changed") or []):
                return
            user_id, reason = None, "the session's visibility changed"
        elif name == "participant.left":
            user_id = data.get("user_id")
            removed = data.get("removed_by")
            reason = f"removed from the session by {removed}" if removed else "left the session"
        else:
            user_id = (data.get("participant") or {}).get("user_id")
            reason = "the role changed"
        self._spawn(self._revalidate(feed, user_id, reason))

    async def _revalidate(self, feed: SessionFeed, user_id: str | None, reason: str) -> None:
        """Drop the subscriptions of ``user_id`` (everyone's when None) that may no longer read
        the session, each with an ``access_revoked`` error naming the reason."""
        if self.can_read is None:
            return
        verdicts: dict[Principal, bool] = {}
        for conn in [*feed.live, *feed.replaying]:
            p = conn.principal
            if p is None or (user_id is not None and p.user_id != user_id):
                continue
            if p not in verdicts:
                try:
                    verdicts[p] = await self.can_read(p, feed.session_id)
                except Exception as exc:
                    log.warning("access check failed", error=str(exc))
                    continue
            if verdicts[p] or not self.subscribed(conn, feed.session_id):
                continue
            await self.unsubscribe(conn, feed.session_id)
            conn.send_frame(
                error(
                    None,
                    ParleyError(
                        f"you may no longer read this session: {reason}",
                        code=ErrorCode.ACCESS_REVOKED,
                        details={"session": feed.session_id, "reason": reason},
                    ),
                )
            )
            log.info("subscription revoked", session=feed.session_id, user=p.user_id)

    def _drop_feed_subscribers(self, feed: SessionFeed) -> None:
        for conn in [*feed.live, *feed.replaying]:
            feed.remove(conn)
            if self._subscriptions.get(conn, {}).pop(feed.session_id, None) is not None:
                metrics.SUBSCRIPTIONS.dec()
        self._spawn(self._release(feed))

    # -- lifecycle --------------------------------------------------------------------------

    async def shutdown(self, flush_timeout: float) -> None:
        """Close every connection with 1012 after flushing its queue (bounded by the timeout)."""
        if self._tick is not None:
            self._tick.cancel()
            self._tick = None
        conns = list(self.connections)
        for conn in conns:
            conn.close(
                CloseCode.SERVICE_RESTART, "server restarting; reconnect and resume", flush=True
            )
        if conns:
            await asyncio.gather(*(c.wait_closed(flush_timeout) for c in conns))
            log.info("hub closed connections", count=len(conns))

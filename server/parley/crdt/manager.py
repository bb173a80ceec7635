"""The documents of one process: rooms, their storage, and their broker channel.

Life of a room::

    LOADING ──► READY ──► CLOSING ──► CLOSED
       │  subscribe to the doc channel, then load from storage; clients wait (never served
       │  before the load finished); broker messages that arrive meanwhile are held
       └─► FAILED: waiting clients get ``document_unavailable``; the next join tries again

    READY: messages go through ``Room.receive``; what must leave the process is queued and a
    writer task sends it: updates and presence to the broker, updates to the store (group
    commit), annotation events to the session's event log. The last client leaving starts an
    idle timer; closing drains the queues, stores anything storage lacks, compacts, and only
    then lets a new room for the same document load.

Across processes (channel ``parley:{tenant}:doc:{session}``, msgpack ``[kind, process, body]``):

    "u" updates   another process accepted them from its clients: apply and relay, never store
    "a" presence  [[client id, state JSON or None], ...] of that process's clients
    "h" hello     [state vector, wants presence]: answer with what the sender lacks ("u") and,
                  when asked, our clients' presence ("a"); sent on opening and every
                  ``doc_resync_interval`` seconds, so an update the broker lost is recovered

Exactly one process stores an update: the one whose client sent it. A process that crashes
before its batch is stored leaves the update in the memory of the others, which store it when
their room closes (``DocStore.reconcile``); its clients' presence expires everywhere within
``doc_awareness_timeout`` because their renewals stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol

import structlog
from prometheus_client import Counter, Gauge
from pycrdt import Doc
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from parley.broker.base import Broker
from parley.config import Settings
from parley.crdt import schema
from parley.crdt.awareness import REMOTE
from parley.crdt.room import Access, Effects, Limits, Peer, Room
from parley.crdt.store import DocStore
from parley.crdt.updates import has_structs, merged_chunks
from parley.errors import CloseCode, ErrorCode, NotFound, ParleyError
from parley.governance.auth import Principal
from parley.protocol.codec import pack, unpack
from parley.sessions.annotations import AnnotationEvents
from parley.sessions.queries import session_access
from parley.sessions.rules import Role, SessionStatus
from parley.storage.database import Database

log = structlog.get_logger("parley.crdt")

ROOMS = Gauge("parley_doc_rooms", "Session documents held in memory on this process.")
UPDATES = Counter(
    "parley_doc_updates_total", "Document updates from local clients, by outcome.", ["outcome"]
)
STORED_BYTES = Counter("parley_doc_stored_bytes_total", "Bytes of document updates stored.")
COMPACTIONS = Counter("parley_doc_compactions_total", "Document compactions that completed.")
# Looked up once: ``labels()`` per update cost as much as checking the update.
UPDATES_APPLIED = UPDATES.labels(outcome="applied")

RETRY_MAX = 5.0


def doc_channel(tenant_id: str, session_id: str) -> str:
    return f"parley:{tenant_id}:doc:{session_id}"


def unavailable() -> ParleyError:
    return ParleyError(
        "the document could not be loaded; try again later",
        code=ErrorCode.DOCUMENT_UNAVAILABLE,
    )


class ManagedPeer(Peer, Protocol):
    """A peer of a transport: it knows its session, and the manager can end it."""

    session_id: str

    def end(self, code: CloseCode, error: ParleyError) -> None:
        """Tell the client why and stop serving it this document."""


class State(Enum):
    LOADING = "loading"
    READY = "ready"
    CLOSING = "closing"
    CLOSED = "closed"
    FAILED = "failed"


@dataclass(eq=False)
class Handle:
    """A room and everything the manager keeps beside it."""

    tenant_id: str
    session_id: str
    channel: str
    room: Room
    state: State = State.LOADING
    ready: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    early: list[Any] = field(default_factory=list)  # broker messages that came during the load
    to_store: list[bytes] = field(default_factory=list)
    to_publish: list[bytes] = field(default_factory=list)
    presence_out: dict[int, str | None] = field(default_factory=dict)
    raw_out: list[bytes] = field(default_factory=list)
    events: list[tuple[Principal, list[tuple[str, dict[str, Any]]]]] = field(default_factory=list)
    log_rows: int = 0
    log_bytes: int = 0
    relay_soon: bool = False  # the room's deferred relays go out at the next loop iteration
    # Access re-reads under way (``revalidate``): clients' next messages wait for them, so a
    # downgrade applies to the first update after it was announced, whatever the read takes.
    revalidating: set[asyncio.Task[None]] = field(default_factory=set)
    gone: bool = False  # the session was deleted: nothing more to store
    writer: asyncio.Task[None] | None = None
    ticker: asyncio.Task[None] | None = None
    opener: asyncio.Task[None] | None = None
    closer: asyncio.Task[None] | None = None
    compactor: asyncio.Task[None] | None = None

    def idle(self) -> bool:
        return not (self.to_store or self.to_publish or self.presence_out or self.raw_out) and (
            not self.events
        )


class DocManager:
    """Rooms of this process, keyed by broker channel."""

    def __init__(
        self,
        db: Database,
        broker: Broker,
        annotations: AnnotationEvents,
        settings: Settings,
        *,
        process_id: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.store = DocStore(db)
        self.broker = broker
        self.annotations = annotations
        self.settings = settings
        self.limits = Limits(
            max_update_bytes=settings.doc_max_update_bytes,
            max_doc_bytes=settings.doc_max_bytes,
            max_awareness_bytes=settings.doc_max_awareness_bytes,
        )
        self.process_id = process_id or secrets.token_hex(8)
        self.clock = clock
        self.rooms: dict[str, Handle] = {}
        self._where: dict[ManagedPeer, Handle] = {}
        self._stopping = False
        self._background: set[asyncio.Task[None]] = set()

    # -- joining and leaving ----------------------------------------------------------------

    async def access(self, p: Principal, session_id: str) -> Access:
        """The caller's document access. Non-participants of the tenant read like viewers.
        Raises ``NotFound`` for a missing session or one of another tenant."""
        now = self.clock()

        def work(s: Session) -> Access:
            row, access = session_access(s, p, session_id)
            role = access.effective_role or Role.VIEWER  # session_access refused the rest
            return Access(role, row.status != SessionStatus.ACTIVE.value, now)

        return await self.db.read(work)

    async def join(self, peer: ManagedPeer, on_ready: Callable[[], None] | None = None) -> None:
        """Attach ``peer`` (its ``access`` already read) to its session's room, loading the
        document first if this process does not hold it. ``on_ready`` runs just before the
        room sends its first messages. Raises ``document_unavailable`` if the load fails."""
        handle = await self._acquire(peer.principal.tenant_id, peer.session_id)
        if on_ready is not None:
            on_ready()
        self._where[peer] = handle
        handle.room.join(peer)

    async def receive(self, peer: ManagedPeer, data: bytes) -> None:
        """One y-protocol message from ``peer``. Raises the refusal, if any (never applied)."""
        handle = self._where.get(peer)
        if handle is None or handle.state is not State.READY:
            raise ParleyError("not joined to this document", code=ErrorCode.NOT_SUBSCRIBED)
        if handle.revalidating:
            await asyncio.wait(list(handle.revalidating))
            if self._where.get(peer) is not handle:
                return  # its access was revoked meanwhile
        if self.clock() - peer.access.checked_at >= self.settings.doc_role_ttl:
            peer.access = await self.access(peer.principal, handle.session_id)
            if self._where.get(peer) is not handle:
                return  # left while the role was read
        try:
            effects = handle.room.receive(peer, data)
        except ParleyError as exc:
            UPDATES.labels(outcome=str(exc.code)).inc()
            raise
        if effects.update is not None:
            UPDATES_APPLIED.inc()
        self._carry_out(handle, effects, peer.principal)
        self._relay_soon(handle)

    def leave(self, peer: ManagedPeer) -> None:
        """``peer`` is gone; its presence ends for everyone now."""
        handle = self._where.pop(peer, None)
        if handle is None:
            return
        self._carry_out(handle, handle.room.leave(peer), peer.principal)
        if self._stopping:
            return
        if not handle.room.peers and handle.state is State.READY and handle.closer is None:
            handle.closer = asyncio.get_running_loop().create_task(self._close_when_idle(handle))

    # -- rooms ------------------------------------------------------------------------------

    async def _acquire(self, tenant_id: str, session_id: str) -> Handle:
        if self._stopping:
            raise ParleyError("the server is shutting down", code=ErrorCode.DOCUMENT_UNAVAILABLE)
        channel = doc_channel(tenant_id, session_id)
        while True:
            handle = self.rooms.get(channel)
            if handle is None:
                # Relays are deferred to the end of the loop iteration: updates that arrive
                # together reach each client as one merged update, not one message each.
                room = Room(tenant_id, session_id, self.limits, defer_relays=True)
                handle = Handle(tenant_id, session_id, channel, room)
                self.rooms[channel] = handle
                ROOMS.set(len(self.rooms))
                handle.opener = asyncio.get_running_loop().create_task(self._open(handle))
            if handle.state in (State.CLOSING, State.CLOSED):
                await handle.closed.wait()
                continue
            try:
                await asyncio.shield(handle.ready)
            except Exception:
                raise unavailable() from None
            if handle.state is State.READY:
                return handle

    async def _open(self, handle: Handle) -> None:
        try:
            await self.broker.subscribe(handle.channel, self._on_broker)
            # Subscribed first: anything published from now on reaches us, so the document
            # below plus what arrives through the broker is complete.
            stored = await self.store.read(handle.session_id)
            state = await self.store.merged(stored.parts)
            handle.room.load(state)
        except Exception:
            log.exception("loading a document failed", session=handle.session_id)
            handle.state = State.FAILED
            handle.ready.set_exception(unavailable())
            handle.ready.exception()  # retrieved: each waiter raises its own error
            self._forget(handle)
            with contextlib.suppress(Exception):
                await self.broker.unsubscribe(handle.channel)
            return
        handle.log_rows = len(stored.rows)
        handle.log_bytes = sum(len(d) for _, d in stored.rows)
        handle.state = State.READY
        for message in handle.early:
            try:
                self._dispatch(handle, message)
            except Exception:
                log.exception("dropping a document message", channel=handle.channel)
        handle.early.clear()
        loop = asyncio.get_running_loop()
        handle.writer = loop.create_task(self._write_loop(handle))
        handle.ticker = loop.create_task(self._tick_loop(handle))
        self._hello(handle, presence=True)
        handle.ready.set_result(None)
        if self._needs_compaction(handle):
            self._compact_soon(handle)
        if self._stopping:  # stop() ran while this loaded
            await self._close(handle)

    def _forget(self, handle: Handle) -> None:
        if self.rooms.get(handle.channel) is handle:
            del self.rooms[handle.channel]
        ROOMS.set(len(self.rooms))
        handle.closed.set()

    async def _close_when_idle(self, handle: Handle) -> None:
        try:
            await asyncio.sleep(self.settings.doc_idle_seconds)
            if handle.room.peers or handle.state is not State.READY:
                return
            await self._close(handle)
        finally:
            handle.closer = None

    async def _close(self, handle: Handle) -> None:
        """Drain, store what storage lacks, compact, then let the document go."""
        handle.state = State.CLOSING
        try:
            if handle.ticker is not None:
                handle.ticker.cancel()
            handle.wake.set()
            if handle.writer is not None:
                await handle.writer
            if handle.compactor is not None:
                await handle.compactor
            with contextlib.suppress(Exception):
                await self.broker.unsubscribe(handle.channel)
            if not handle.gone:
                await self._settle(handle)
        finally:
            handle.state = State.CLOSED
            self._forget(handle)

    async def _settle(self, handle: Handle) -> None:
        try:
            if await self.store.reconcile(
                handle.tenant_id, handle.session_id, handle.room.encode_state()
            ):
                handle.log_rows += 1
                log.info("stored document changes storage lacked", session=handle.session_id)
            if handle.log_rows:
                await self._compact(handle)
        except IntegrityError:
            log.info("the session of a document was deleted", session=handle.session_id)
        except Exception:
            log.exception("settling a document failed", session=handle.session_id)

    # -- carrying out effects ---------------------------------------------------------------

    def _carry_out(self, handle: Handle, effects: Effects, principal: Principal) -> None:
        if not effects:
            return
        if effects.update is not None:
            handle.to_store.append(effects.update)
            handle.to_publish.append(effects.update)
        handle.presence_out.update(effects.awareness)
        if effects.events:
            handle.events.append((principal, effects.events))
        handle.wake.set()

    def _relay_soon(self, handle: Handle) -> None:
        if handle.room.relays_pending and not handle.relay_soon:
            handle.relay_soon = True
            asyncio.get_running_loop().call_soon(self._relay_now, handle)

    def _relay_now(self, handle: Handle) -> None:
        handle.relay_soon = False
        handle.room.flush_relays()

    async def _write_loop(self, handle: Handle) -> None:
        """Publish, then store (group commit: what piled up during a write goes in the next),
        then record annotation events. Ends once the room is closing and everything is out."""
        delay, failures = 0.05, 0
        while True:
            if handle.idle():
                if handle.state is not State.READY:
                    return
                handle.wake.clear()
                await handle.wake.wait()
                continue
            await self._publish_pending(handle)
            try:
                await self._store_pending(handle)
                await self._record_events(handle)
            except Exception:
                failures += 1
                if handle.state is not State.READY and (self._stopping or failures >= 5):
                    # Closing with storage down: give up rather than hold the document forever.
                    # Its clients still have these changes and send them again on their next
                    # sync, which stores them.
                    log.exception("dropping unsaved document changes", session=handle.session_id)
                    return
                log.exception(
                    "storing document changes failed; retrying", session=handle.session_id
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)
                continue
            delay, failures = 0.05, 0

    async def _publish_pending(self, handle: Handle) -> None:
        messages: list[bytes] = []
        if handle.to_publish:
            batch, handle.to_publish = handle.to_publish, []
            messages.append(pack(("u", self.process_id, merged_chunks(batch))))
        if handle.presence_out:
            presence, handle.presence_out = handle.presence_out, {}
            messages.append(pack(("a", self.process_id, list(presence.items()))))
        messages.extend(handle.raw_out)
        handle.raw_out.clear()
        for payload in messages:
            try:
                await self.broker.publish(handle.channel, payload)
            except Exception as exc:  # at most once anyway; the next hello repairs it
                log.warning("publishing document changes failed", error=str(exc))

    async def _store_pending(self, handle: Handle) -> None:
        if not handle.to_store or handle.gone:
            handle.to_store.clear()
            return
        batch = handle.to_store
        n = len(batch)  # more may arrive while this is written; they go in the next batch
        rows = merged_chunks(batch[:n])
        try:
            await self.store.append(handle.tenant_id, handle.session_id, *rows)
        except IntegrityError:
            self._session_gone(handle)
            return
        del batch[:n]
        size = sum(len(r) for r in rows)
        handle.log_rows += len(rows)
        handle.log_bytes += size
        STORED_BYTES.inc(size)
        if self._needs_compaction(handle):
            self._compact_soon(handle)

    async def _record_events(self, handle: Handle) -> None:
        while handle.events and not handle.gone:
            principal, events = handle.events[0]
            try:
                await self.annotations.record(principal, handle.session_id, events)
            except NotFound:
                self._session_gone(handle)
                return
            handle.events.pop(0)

    def _session_gone(self, handle: Handle) -> None:
        log.info("the session of a document was deleted", session=handle.session_id)
        handle.gone = True
        handle.to_store.clear()
        handle.events.clear()
        error = NotFound(f"session {handle.session_id!r} was deleted")
        for peer in [p for p, h in self._where.items() if h is handle]:
            self.leave(peer)
            peer.end(CloseCode.DOC_NOT_FOUND, error)

    # -- compaction -------------------------------------------------------------------------

    def _needs_compaction(self, handle: Handle) -> bool:
        s = self.settings
        return handle.log_rows >= s.doc_compact_updates or handle.log_bytes >= s.doc_compact_bytes

    def _compact_soon(self, handle: Handle) -> None:
        if handle.compactor is None and handle.state is State.READY:
            handle.compactor = asyncio.get_running_loop().create_task(self._compact_task(handle))

    async def _compact_task(self, handle: Handle) -> None:
        try:
            await self._compact(handle)
        except Exception:
            log.exception("compacting a document failed", session=handle.session_id)
        finally:
            handle.compactor = None

    async def _compact(self, handle: Handle) -> None:
        rows, size = handle.log_rows, handle.log_bytes
        if await self.store.compact(handle.tenant_id, handle.session_id):
            COMPACTIONS.inc()
        # Rows appended during the compaction stay in the log; count them as roughly that.
        handle.log_rows = max(0, handle.log_rows - rows)
        handle.log_bytes = max(0, handle.log_bytes - size)

    # -- the broker -------------------------------------------------------------------------

    def _on_broker(self, channel: str, payload: bytes) -> None:
        handle = self.rooms.get(channel)
        if handle is None:
            return
        try:
            message = unpack(payload)
            if message[1] == self.process_id:
                return  # our own, already applied and relayed here
            if handle.state is State.LOADING:
                handle.early.append(message)
            elif handle.state is State.READY:
                self._dispatch(handle, message)
        except Exception:  # a broker handler must not raise
            log.exception("dropping a document message", channel=channel)

    def _dispatch(self, handle: Handle, message: Any) -> None:
        kind, origin, body = message[0], str(message[1]), message[2]
        room = handle.room
        if kind == "u":
            for update in body:
                room.apply_remote(update)
            self._relay_soon(handle)
        elif kind == "a":
            room.apply_remote_awareness([(int(c), s) for c, s in body], REMOTE + origin)
        elif kind == "r":  # someone's access changed (``announce_access_change``)
            task = asyncio.get_running_loop().create_task(
                self.revalidate(handle, str(body) if body else None)
            )
            self._background.add(task)
            task.add_done_callback(self._background.discard)
            handle.revalidating.add(task)
            task.add_done_callback(handle.revalidating.discard)
        elif kind == "h":
            state_vector, wants_presence = body
            missing = room.doc.get_update(state_vector)
            if has_structs(missing):
                handle.raw_out.append(pack(("u", self.process_id, [missing])))
            if wants_presence:
                mine = room.awareness.local()
                if mine:
                    body_out = [(e.client_id, e.state) for e in mine]
                    handle.raw_out.append(pack(("a", self.process_id, body_out)))
            if handle.raw_out:
                handle.wake.set()

    def _hello(self, handle: Handle, *, presence: bool) -> None:
        handle.raw_out.append(pack(("h", self.process_id, (handle.room.state_vector(), presence))))
        handle.wake.set()

    async def _tick_loop(self, handle: Handle) -> None:
        """Expire presence that was not renewed, and exchange state vectors now and then."""
        s = self.settings
        tick = max(0.05, min(1.0, s.doc_awareness_timeout / 4, s.doc_resync_interval))
        last_hello = self.clock()
        while handle.state is State.READY:
            await asyncio.sleep(tick)
            effects = handle.room.expire(s.doc_awareness_timeout)
            if effects:
                # Only our clients' removals mean anything to other processes.
                handle.presence_out.update(effects.awareness)
                handle.wake.set()
            if self.clock() - last_hello >= s.doc_resync_interval:
                last_hello = self.clock()
                self._hello(handle, presence=False)

    # -- access changes ---------------------------------------------------------------------

    async def announce_access_change(
        self, tenant_id: str, session_id: str, user_id: str | None
    ) -> None:
        """Tell every process holding the document that ``user_id``'s access (everyone's when
        None) changed: each re-reads it for its local clients (the session service calls this
        after removals, role and visibility changes)."""
        payload = pack(("r", "governance", user_id or ""))
        await self.broker.publish(doc_channel(tenant_id, session_id), payload)

    async def revalidate(self, handle: Handle, user_id: str | None) -> None:
        """Re-read the access of local clients of ``handle`` (of ``user_id`` only, unless
        None): a downgrade applies to their next update; a client who may no longer read the
        session is disconnected from the document with ``access_revoked``."""
        peers = [
            peer
            for peer, h in self._where.items()
            if h is handle and (user_id is None or peer.principal.user_id == user_id)
        ]
        for peer in peers:
            try:
                access = await self.access(peer.principal, handle.session_id)
            except NotFound:
                self.leave(peer)
                peer.end(
                    CloseCode.DOC_FORBIDDEN,
                    ParleyError(
                        "you may no longer read this session",
                        code=ErrorCode.ACCESS_REVOKED,
                        details={"session": handle.session_id},
                    ),
                )
                continue
            except Exception as exc:
                log.warning("access check failed", error=str(exc))
                continue
            peer.access = access

    # -- reads outside a room ---------------------------------------------------------------

    async def document(self, p: Principal, session_id: str) -> dict[str, Any]:
        """The document as JSON, plus storage figures: from memory when this process holds it,
        else from storage. Raises ``NotFound`` like every session read."""
        await self.access(p, session_id)
        handle = self.rooms.get(doc_channel(p.tenant_id, session_id))
        if handle is not None and handle.state is State.READY:
            state = handle.room.encode_state()
            view = schema.document_view(handle.room.doc)
        else:
            state = await self.store.load(session_id)
            view = await asyncio.to_thread(_view_of, state)
        stats = await self.store.stats(session_id)
        view["size"] = {
            "document_bytes": len(state),
            "stored_bytes": stats.stored_bytes,
            "stored_updates": stats.log_rows,
        }
        return view

    # -- changes made by the server ---------------------------------------------------------

    async def apply_server_update(self, p: Principal, session_id: str, update: bytes) -> None:
        """Store a change the server itself made (an import, a template) and hand it to every
        process holding the document, this one included; annotations it completes are
        recorded as ``annotation.*`` events by ``p``. Raises ``NotFound`` like every write."""
        await self.access(p, session_id)
        await self.store.append(p.tenant_id, session_id, update)
        channel = doc_channel(p.tenant_id, session_id)
        # Not our process id: a room of this process applies it too (rooms drop their own echo).
        await self.broker.publish(channel, pack(("u", "server:" + self.process_id, [update])))
        doc: Doc[Any] = Doc()
        schema.define_roots(doc)
        doc.apply_update(update)
        events: list[tuple[str, dict[str, Any]]] = []
        for view in schema.annotations_view(doc):
            if view["message_id"]:
                events.append(("annotation.created", {"annotation": view}))
                if view["resolved"]:
                    events.append(("annotation.resolved", {"annotation": view}))
        await self.annotations.record(p, session_id, events)

    # -- lifecycle --------------------------------------------------------------------------

    async def stop(self, flush_timeout: float = 10.0) -> None:
        """Flush every room: what is queued is stored, what storage lacks is stored, then the
        rooms close. Clients still attached are told the server is restarting."""
        self._stopping = True
        error = ParleyError("the server is restarting", code=ErrorCode.DOCUMENT_UNAVAILABLE)
        for peer in list(self._where):
            self.leave(peer)
            peer.end(CloseCode.SERVICE_RESTART, error)
        closing: list[Awaitable[Any]] = []
        for handle in list(self.rooms.values()):
            if handle.state is State.READY:
                if handle.closer is not None:
                    handle.closer.cancel()  # still waiting out the idle time: close it now
                closing.append(self._close(handle))
            else:  # loading (it closes itself once loaded) or already closing
                closing.append(handle.closed.wait())
        if closing:
            try:
                async with asyncio.timeout(flush_timeout):
                    await asyncio.gather(*closing, return_exceptions=True)
            except TimeoutError:
                log.error("documents did not flush in time", rooms=len(closing))
        log.info("documents flushed", rooms=len(closing))


def _view_of(state: bytes) -> dict[str, Any]:
    doc: Doc[Any] = Doc()
    schema.define_roots(doc)
    doc.apply_update(state)
    return schema.document_view(doc)

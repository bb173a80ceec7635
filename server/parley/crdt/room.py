"""One session document on one process: the Yjs doc, its presence table and its local clients.

The room is the sync logic of y-websocket, with permissions, limits and presence ownership, and
nothing else: it never awaits. Messages for its own clients go to :meth:`Peer.send`, which only
queues; what must leave the process (updates to store and to publish, presence to publish,
annotation events) is returned as :class:`Effects` for the manager to carry out.

Refusals raise :class:`~parley.errors.ParleyError`; the transport turns them into an ``error``
frame (``/ws``) or a y-protocol "permission denied" message (``/yjs``). A refused update is
never applied, stored or relayed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
from pycrdt import Doc, Map, TransactionEvent

from parley.crdt import schema
from parley.crdt import yprotocol as y
from parley.crdt.awareness import LOCAL, AwarenessTable
from parley.crdt.guard import check_write
from parley.crdt.schema import ANNOTATIONS, Scope
from parley.crdt.updates import (
    EMPTY_UPDATE,
    decode_state_vector,
    has_structs,
    inspect_update,
    left_pending,
    merged_chunks,
    novel_part,
)
from parley.errors import (
    Conflict,
    ErrorCode,
    Forbidden,
    InvalidRequest,
    ParleyError,
    ProtocolError,
)
from parley.governance.auth import Principal
from parley.sessions.rules import Role


@dataclass(slots=True)
class Access:
    """What a client may do in the document, as last read from storage."""

    role: Role
    archived: bool
    checked_at: float = 0.0

    @property
    def scope(self) -> Scope:
        return schema.scope_for(self.role, archived=self.archived)


class Peer(Protocol):
    """A client of a room, on ``/yjs`` or multiplexed on ``/ws``."""

    key: str  # unique on this process
    principal: Principal
    access: Access

    def send(self, message: bytes) -> None:
        """Queue one y-protocol message for the client; never blocks."""


# Under load one loop iteration can handle thousands of updates; relaying every few hundred
# keeps what deferring adds to an update's delivery to a few milliseconds.
MAX_DEFERRED_RELAYS = 256


@dataclass(frozen=True, slots=True)
class Limits:
    max_update_bytes: int = 128 * 1024
    max_doc_bytes: int = 8 * 1024 * 1024
    max_awareness_bytes: int = 8 * 1024


@dataclass(slots=True)
class Effects:
    """What the manager must do after a message: store and publish ``update``, publish
    ``awareness`` (client id -> state or None), record annotation ``events``."""

    update: bytes | None = None
    awareness: list[tuple[int, str | None]] = field(default_factory=list)
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return self.update is not None or bool(self.awareness) or bool(self.events)


@dataclass(slots=True)
class _PeerState:
    client_id: int | None = None  # the awareness client id this connection speaks for


def bad_message(detail: str) -> ProtocolError:
    return ProtocolError(detail, code=ErrorCode.BAD_DOC_MESSAGE)


class Room:
    """The document of one session on this process, and its local clients."""

    def __init__(
        self,
        tenant_id: str,
        session_id: str,
        limits: Limits,
        *,
        clock: Callable[[], float] = time.time,
        defer_relays: bool = False,
    ) -> None:
        self.tenant_id = tenant_id
        self.session_id = session_id
        self.limits = limits
        self.doc: Doc[Any] = Doc()
        self.roots = schema.define_roots(self.doc)
        self.awareness = AwarenessTable()
        self.peers: dict[Peer, _PeerState] = {}
        self.size_estimate = 0  # an upper bound of the encoded document size
        self._clock = clock
        self._changed = False
        self._touched: set[str] = set()
        self._announced: dict[str, tuple[bool, bool]] = {}
        # With ``defer_relays``, accepted updates wait here (with the peer they came from, None
        # for another process) until ``flush_relays``: each peer then gets the batch as a few
        # merged updates instead of one message per update.
        self._defer_relays = defer_relays
        self._relays: list[tuple[Peer | None, bytes]] = []
        self._state: tuple[bytes, dict[int, int]] = (b"", {})  # see _decoded
        self._pending_possible = False  # see _note_pending
        self.roots[ANNOTATIONS].observe_deep(self._on_annotations)

    # -- observers (they run inside apply_update) -------------------------------------------

    def _on_transaction(self, _event: TransactionEvent) -> None:
        self._changed = True

    def _on_annotations(self, events: list[Any]) -> None:
        for event in events:
            if event.path:
                self._touched.add(str(event.path[0]))
            else:
                self._touched.update(str(k) for k in event.keys)

    # -- loading ----------------------------------------------------------------------------

    def load(self, state: bytes) -> None:
        """Apply the stored state before anyone joins (raises ValueError if it is corrupt)."""
        if state and state != EMPTY_UPDATE:
            self.doc.apply_update(state)
            self._note_pending(state)
        self.size_estimate = len(state)
        self._touched.clear()
        for view in schema.annotations_view(self.doc):
            self._announced[view["id"]] = schema.annotation_status(view)

    def encode_state(self) -> bytes:
        return self.doc.get_update()

    def state_vector(self) -> bytes:
        return self.doc.get_state()

    # -- clients ----------------------------------------------------------------------------

    def join(self, peer: Peer) -> None:
        """Start syncing ``peer``: our state vector, then everyone present (late joiners see the
        others at once)."""
        self.flush_relays()
        self.peers[peer] = _PeerState()
        peer.send(y.sync_step1(self.doc.get_state()))
        present = self.awareness.snapshot()
        if present:
            peer.send(y.awareness_message(y.encode_awareness(present)))

    def leave(self, peer: Peer) -> Effects:
        """``peer`` is gone: its presence ends for everyone at once."""
        effects = Effects()
        if self.peers.pop(peer, None) is None:
            return effects
        ended = self.awareness.remove_owner(LOCAL + peer.key, self._clock())
        if ended:
            self._broadcast(y.awareness_message(y.encode_awareness(ended)))
            effects.awareness = [(e.client_id, None) for e in ended]
        return effects

    def receive(self, peer: Peer, data: bytes) -> Effects:
        """Handle one y-protocol message from a local client."""
        if peer not in self.peers:
            raise ParleyError("not joined to this document", code=ErrorCode.NOT_SUBSCRIBED)
        try:
            message = y.parse_message(data)
        except y.YProtocolError as exc:
            raise bad_message(f"not a y-protocol message: {exc}") from None
        effects = Effects()
        if isinstance(message, y.SyncStep2 | y.SyncUpdate):
            self._write(peer, message.update, effects)
            return effects
        # What this peer is sent next must not overtake the updates it is still owed.
        self.flush_relays()
        if isinstance(message, y.SyncStep1):
            try:
                missing = self.doc.get_update(message.state_vector)
            except ValueError:
                raise bad_message("sync step 1 carries an invalid state vector") from None
            peer.send(y.sync_step2(missing))
        elif isinstance(message, y.AwarenessMessage):
            self._presence(peer, message.update, effects)
        elif isinstance(message, y.QueryAwareness):
            peer.send(y.awareness_message(y.encode_awareness(self.awareness.snapshot())))
        # Auth messages from clients mean nothing to the server.
        return effects

    # -- document updates -------------------------------------------------------------------

    def _write(self, peer: Peer, update: bytes, effects: Effects) -> None:
        if len(update) > self.limits.max_update_bytes:
            raise ProtocolError(
                f"the update is {len(update)} bytes; the limit is {self.limits.max_update_bytes}",
                code=ErrorCode.UPDATE_TOO_LARGE,
            )
        if update == EMPTY_UPDATE:
            return
        state_vector = self.doc.get_state()
        try:
            novel = novel_part(update, state_vector)
            structs = has_structs(novel)
            info = inspect_update(novel) if structs else None
        except y.YProtocolError as exc:
            raise bad_message(str(exc)) from None
        if info is not None:
            unknown = sorted(info.roots - schema.ROOTS.keys())
            if unknown:
                raise Forbidden(
                    f"the document has no root type {unknown[0]!r}",
                    details={"roots": sorted(schema.ROOTS)},
                )
            known = self._decoded(state_vector)
            if info.depends_on_missing(known):
                # A client's own connection delivers everything it built on, so this means an
                # earlier change of this client was refused (Yjs numbers a client's changes
                # consecutively): nothing it writes can be integrated until it reloads.
                raise Conflict(
                    "the update builds on changes the server refused or does not have; "
                    "reload the document to write again"
                )
        access = peer.access
        if access.scope is not Scope.EVERYTHING:
            try:
                if not check_write(self.doc, novel, access.scope, peer.principal.user_id):
                    return
            except Forbidden:
                if access.archived:
                    raise Conflict(
                        "the session is archived", code=ErrorCode.SESSION_ARCHIVED
                    ) from None
                raise
        elif novel == EMPTY_UPDATE:
            return
        self._check_size(len(novel))
        if not self._apply(novel, structs=structs):
            return
        if info is not None and not self._pending_possible:
            # Nothing it needs is missing and nothing waited to be integrated, so the new state
            # vector is the old one advanced to the end of each of its clients' ranges.
            for client, (_, end) in info.ranges.items():
                known[client] = max(known.get(client, 0), end)
            self._state = (self.doc.get_state(), known)
        self.size_estimate += len(novel)
        self._relay(novel, peer)
        effects.update = novel
        effects.events = self._annotation_changes(announce=True)

    def _decoded(self, state_vector: bytes) -> dict[int, int]:
        """The document's state vector as a dict, owned by the room: decoding it in Python
        costs O(clients) per update, so ``_write`` advances it instead for the next update."""
        encoded, decoded = self._state
        if state_vector != encoded:
            decoded = decode_state_vector(state_vector)
            self._state = (state_vector, decoded)
        return decoded

    def _note_pending(self, update: bytes) -> None:
        """After applying an unchecked update (stored state, another process's): if parts of
        it wait for changes the document lacks, a later update may integrate them, and the
        state vector can no longer be derived from the updates accepted here."""
        if left_pending(update, self.doc):
            self._pending_possible = True

    def _check_size(self, incoming: int) -> None:
        limit = self.limits.max_doc_bytes
        if self.size_estimate + incoming <= limit:
            return
        # The estimate only grows; measure for real before refusing.
        self.size_estimate = len(self.doc.get_update())
        if self.size_estimate + incoming > limit:
            raise InvalidRequest(
                f"the document would exceed its limit of {limit} bytes "
                f"(it is {self.size_estimate} bytes)",
                code=ErrorCode.DOCUMENT_TOO_LARGE,
            )

    def _apply(self, update: bytes, *, structs: bool) -> bool:
        """Apply; True when the update is to be relayed and stored: always when it has
        ``structs``, else only when one of its deletions took effect."""
        if structs:
            self._apply_update(update)
            return True
        # A transaction observer costs as much as the apply itself, so it is attached only
        # while it is needed: when the update is deletions alone.
        self._changed = False
        subscription = self.doc.observe(self._on_transaction)
        try:
            self._apply_update(update)
        finally:
            self.doc.unobserve(subscription)
        return self._changed

    def _apply_update(self, update: bytes) -> None:
        try:
            self.doc.apply_update(update)
        except ValueError as exc:
            raise bad_message(f"the update cannot be applied: {exc}") from None

    def apply_remote(self, update: bytes) -> bool:
        """An update another process accepted: apply and relay it to our clients."""
        try:
            novel = novel_part(update, self.doc.get_state())
        except y.YProtocolError:
            return False
        if novel == EMPTY_UPDATE:
            return False
        changed = self._apply(novel, structs=has_structs(novel))
        self._note_pending(novel)
        self._annotation_changes(announce=False)
        if changed:
            self.size_estimate += len(novel)
            self._relay(novel, None)
        return changed

    def _annotation_changes(self, *, announce: bool) -> list[tuple[str, dict[str, Any]]]:
        """Annotations that became complete or resolved in the last apply. Only the process
        whose client made the change announces it (``announce``), so each is recorded once."""
        events: list[tuple[str, dict[str, Any]]] = []
        if not self._touched:
            return events
        root: Map[Any] = self.roots[ANNOTATIONS]
        for key in sorted(self._touched):
            view = schema.annotation_view(key, root.get(key)) if key in root else None
            created, resolved = schema.annotation_status(view)
            was_created, was_resolved = self._announced.get(key, (False, False))
            self._announced[key] = (created or was_created, resolved)
            if not announce or view is None:
                continue
            if created and not was_created:
                events.append(("annotation.created", {"annotation": view}))
            if created and resolved and not was_resolved:
                events.append(("annotation.resolved", {"annotation": view}))
        self._touched.clear()
        return events

    # -- presence ---------------------------------------------------------------------------

    def _presence(self, peer: Peer, update: bytes, effects: Effects) -> None:
        try:
            entries = y.decode_awareness(update)
        except y.YProtocolError as exc:
            raise bad_message(f"not an awareness update: {exc}") from None
        state = self.peers[peer]
        if state.client_id is None:
            # A connection speaks for one client: the one in its first single-entry message.
            # Stock clients re-send others' entries they hear about; those are dropped.
            if len(entries) != 1:
                return
            state.client_id = entries[0].client_id
        now = self._clock()
        relayed: list[y.AwarenessEntry] = []
        echoed: list[y.AwarenessEntry] = []
        for entry in entries:
            if entry.client_id != state.client_id:
                continue
            stamped = None
            if entry.state is not None:
                if len(entry.state) > self.limits.max_awareness_bytes:
                    raise ProtocolError(
                        f"the awareness state is {len(entry.state)} bytes; "
                        f"the limit is {self.limits.max_awareness_bytes}",
                        code=ErrorCode.UPDATE_TOO_LARGE,
                    )
                try:
                    stamped = schema.stamp_awareness(entry.state, peer.principal)
                except (ValueError, orjson.JSONDecodeError):
                    raise bad_message("an awareness state must be a JSON object") from None
            out = self.awareness.set_local(entry.client_id, stamped, LOCAL + peer.key, now)
            if out is not None:
                relayed.append(out)
                # The sender gets its own clock back: it ignores the echo, which still tells
                # y-websocket's watchdog that the connection is alive.
                echoed.append(y.AwarenessEntry(entry.client_id, entry.clock, stamped))
        if relayed:
            self._broadcast(y.awareness_message(y.encode_awareness(relayed)), exclude=peer)
            peer.send(y.awareness_message(y.encode_awareness(echoed)))
            effects.awareness = [(e.client_id, e.state) for e in relayed]

    def apply_remote_awareness(self, entries: list[tuple[int, str | None]], origin: str) -> None:
        """Presence relayed by another process (``origin``)."""
        now = self._clock()
        relayed = [
            out
            for cid, state in entries
            if (out := self.awareness.set_remote(cid, state, origin, now)) is not None
        ]
        if relayed:
            self._broadcast(y.awareness_message(y.encode_awareness(relayed)))

    def end_presence_of(self, origin: str) -> None:
        """Every entry relayed by ``origin`` ends (that process said it is leaving)."""
        ended = self.awareness.remove_owner(origin, self._clock())
        if ended:
            self._broadcast(y.awareness_message(y.encode_awareness(ended)))

    def expire(self, timeout: float) -> Effects:
        """End presence not renewed within ``timeout`` seconds (a crashed process's clients)."""
        effects = Effects()
        ended = self.awareness.expire(self._clock(), timeout)
        if ended:
            self._broadcast(y.awareness_message(y.encode_awareness(ended)))
            effects.awareness = [(e.client_id, None) for e in ended]
        return effects

    # -- fan-out ----------------------------------------------------------------------------

    @property
    def relays_pending(self) -> bool:
        """Whether deferred relays wait for :meth:`flush_relays`."""
        return bool(self._relays)

    def _relay(self, update: bytes, origin: Peer | None) -> None:
        if self._defer_relays:
            self._relays.append((origin, update))
            if len(self._relays) >= MAX_DEFERRED_RELAYS:
                self.flush_relays()
        else:
            self._broadcast(y.sync_update(update), exclude=origin)

    def flush_relays(self) -> None:
        """Send the deferred updates: each peer gets those that did not come from it, merged
        (a merge of updates is itself a valid update, so stock clients apply it as usual)."""
        if not self._relays:
            return
        relays, self._relays = self._relays, []
        # Each sender's updates are merged once; a peer's message merges the other senders'
        # parts (merging is superlinear, and a few merged parts merge faster than their updates).
        by_origin: dict[Peer | None, list[bytes]] = {}
        for origin, update in relays:
            by_origin.setdefault(origin, []).append(update)
        parts = {origin: merged_chunks(updates) for origin, updates in by_origin.items()}
        # One message list per distinct set: every part (key None), or all but a sender's own.
        messages: dict[Peer | None, list[bytes]] = {}
        for peer in self.peers:
            key = peer if peer in parts else None
            out = messages.get(key)
            if out is None:
                chosen = [
                    u for origin, p in parts.items() if key is None or origin is not key for u in p
                ]
                out = [y.sync_update(u) for u in merged_chunks(chosen)] if chosen else []
                messages[key] = out
            for message in out:
                peer.send(message)

    def _broadcast(self, message: bytes, *, exclude: Peer | None = None) -> None:
        self.flush_relays()
        for peer in self.peers:
            if peer is not exclude:
                peer.send(message)

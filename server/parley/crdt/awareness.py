"""The presence (awareness) table of one document on one process. No I/O.

Why not ``pycrdt.Awareness``: it holds a state of its own for the server (a phantom "user"
every client sees), and it keeps the clocks clients send. Here the server has no state, each
entry has an owner, and the server numbers the clocks it relays itself:

* **Owners.** An entry belongs to the local connection that announced it (``peer:<key>``) or to
  the process that relayed it (``proc:<id>``). When a connection closes, its entries end at once.
  A local connection beats a remote claim (the client moved here); a removal from a process
  that no longer owns the entry is stale and ignored.
* **Clocks.** Yjs clients accept an awareness entry only when its clock is higher than the one
  they know, and they remember clocks of clients that left. A client that reconnects reuses its
  old clock, so peers that saw it leave would ignore it until its next renewal (15 s). The
  relayed clock is therefore ``max(previous + 1, now in ms)``: always higher than anything this
  or an earlier room relayed for that client, so a rejoin shows up at once.
* **Expiry.** An entry not renewed within the timeout ends (Yjs clients renew every 15 s and
  drop entries older than 30 s themselves). This is what makes the presence of a crashed
  process go away: its clients' renewals stop arriving.
"""

from __future__ import annotations

from dataclasses import dataclass

from parley.crdt.yprotocol import AwarenessEntry

LOCAL = "peer:"
REMOTE = "proc:"


@dataclass(slots=True)
class Presence:
    clock: int
    state: str | None  # JSON text; None once the client is gone
    owner: str | None
    updated: float


class AwarenessTable:
    """Client id -> presence, with the ownership and clock rules above."""

    def __init__(self) -> None:
        self.entries: dict[int, Presence] = {}

    def _clock(self, client_id: int, now: float) -> int:
        current = self.entries.get(client_id)
        return max(current.clock + 1 if current else 0, int(now * 1000))

    def owner_of(self, client_id: int) -> str | None:
        entry = self.entries.get(client_id)
        return entry.owner if entry else None

    def set_local(
        self, client_id: int, state: str | None, owner: str, now: float
    ) -> AwarenessEntry | None:
        """A local connection (``owner``) set its client's state; None means it left.

        Returns the entry to relay, or None when nothing changed for anyone.
        """
        current = self.entries.get(client_id)
        if state is None and (current is None or current.state is None):
            return None
        clock = self._clock(client_id, now)
        self.entries[client_id] = Presence(clock, state, owner if state else None, now)
        return AwarenessEntry(client_id, clock, state)

    def set_remote(
        self, client_id: int, state: str | None, origin: str, now: float
    ) -> AwarenessEntry | None:
        """Another process (``origin``) relayed a client's state; None means it left."""
        current = self.entries.get(client_id)
        if current is not None and current.owner is not None:
            if current.owner.startswith(LOCAL):
                return None  # the client is connected here: its own word wins
            if state is None and current.owner != origin:
                return None  # a late removal from the process it left
        if state is None and (current is None or current.state is None):
            return None
        # A renewal with an unchanged state is relayed too: Yjs clients drop entries whose clock
        # has not moved for 30 s.
        clock = self._clock(client_id, now)
        self.entries[client_id] = Presence(clock, state, origin if state else None, now)
        return AwarenessEntry(client_id, clock, state)

    def remove_owner(self, owner: str, now: float) -> list[AwarenessEntry]:
        """End every entry of ``owner`` (a connection closed, a process is gone)."""
        return self._end([cid for cid, e in self.entries.items() if e.owner == owner], now)

    def expire(self, now: float, timeout: float) -> list[AwarenessEntry]:
        """End every entry not renewed within ``timeout`` seconds."""
        stale = [
            cid
            for cid, e in self.entries.items()
            if e.state is not None and now - e.updated >= timeout
        ]
        return self._end(stale, now)

    def _end(self, client_ids: list[int], now: float) -> list[AwarenessEntry]:
        out = []
        for cid in client_ids:
            clock = self._clock(cid, now)
            self.entries[cid] = Presence(clock, None, None, now)
            out.append(AwarenessEntry(cid, clock, None))
        return out

    def snapshot(self) -> list[AwarenessEntry]:
        """Every present client, for a late joiner or a query."""
        return [
            AwarenessEntry(cid, e.clock, e.state)
            for cid, e in self.entries.items()
            if e.state is not None
        ]

    def local(self) -> list[AwarenessEntry]:
        """The present clients connected to this process (what other processes ask for)."""
        return [
            AwarenessEntry(cid, e.clock, e.state)
            for cid, e in self.entries.items()
            if e.state is not None and e.owner is not None and e.owner.startswith(LOCAL)
        ]

    def present(self) -> int:
        return sum(1 for e in self.entries.values() if e.state is not None)

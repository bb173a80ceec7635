"""Per-session resume position and duplicate filter (no I/O).

The server promises each durable event once, in ``seq`` order, on a live subscription, and an
exact replay after ``since_seq`` on resubscribe. Across a reconnect the SDK may still see an
event twice (it arrived just before the socket dropped, and the replay repeats it), so it
keeps the last seq it handled per session and lets through only newer ones.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class SeqTracker:
    """The newest durable ``seq`` handled for one session (None: nothing seen yet)."""

    last_seq: int | None = None
    duplicates: int = 0  # events dropped because they were already handled
    gaps: int = 0  # events that skipped ahead (should not happen; logged by the client)

    def accept(self, seq: int) -> bool:
        """True when the durable event ``seq`` is new and should be handled."""
        if self.last_seq is not None:
            if seq <= self.last_seq:
                self.duplicates += 1
                return False
            if seq > self.last_seq + 1:
                self.gaps += 1
        self.last_seq = seq
        return True

    def acked(self, seq: int) -> None:
        """A subscribe ack: the subscription is live from ``seq``. A subscription "from now"
        starts the position here; an earlier position is never moved back."""
        if self.last_seq is None or seq > self.last_seq:
            self.last_seq = seq

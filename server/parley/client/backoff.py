"""Reconnect delays: exponential backoff with full jitter (no I/O, so it is easy to test).

Full jitter (a uniform draw between 0 and the exponential cap) spreads a crowd of bots that
lost the same server, so they do not all come back in the same instant.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Delays ``uniform(min_delay, min(max_delay, base * factor**attempt))``; :meth:`reset`
    after a connection that worked."""

    base: float = 0.5
    factor: float = 2.0
    max_delay: float = 30.0
    min_delay: float = 0.05
    rng: random.Random = field(default_factory=random.Random, repr=False)
    attempt: int = 0

    def next_delay(self) -> float:
        """The delay before the next attempt; each call counts one more failed attempt."""
        cap = min(self.max_delay, self.base * self.factor**self.attempt)
        self.attempt += 1
        return self.rng.uniform(min(self.min_delay, cap), cap)

    def reset(self) -> None:
        self.attempt = 0

"""A token bucket: ``rate`` tokens per second, at most ``burst`` saved up. Pure logic."""

from __future__ import annotations


class TokenBucket:
    __slots__ = ("_last", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._tokens = float(burst)
        self._last = now

    def take(self, now: float) -> float:
        """Spend one token. Returns 0 when allowed, else the seconds until one is available."""
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self.rate

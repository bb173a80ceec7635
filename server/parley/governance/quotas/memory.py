"""Quota counters in this process's memory: the embedded store for one process."""

from __future__ import annotations

import math
import time


class MemoryQuotaStore:
    def __init__(self) -> None:
        self._windows: dict[str, tuple[int, int]] = {}  # key -> (window index, count)
        self._sets: dict[str, dict[str, float]] = {}  # key -> member -> expiry

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def hit(self, key: str, window: float, limit: int) -> float:
        now = time.time()
        index = math.floor(now / window)
        current, count = self._windows.get(key, (index, 0))
        if current != index:
            count = 0
        if count >= limit:
            return (index + 1) * window - now
        self._windows[key] = (index, count + 1)
        return 0.0

    async def count(self, key: str, window: float) -> int:
        index = math.floor(time.time() / window)
        current, count = self._windows.get(key, (index, 0))
        return count if current == index else 0

    def _live(self, key: str) -> dict[str, float]:
        members = self._sets.setdefault(key, {})
        now = time.monotonic()
        for member in [m for m, expiry in members.items() if expiry <= now]:
            del members[member]
        return members

    async def acquire(self, key: str, member: str, limit: int, ttl: float) -> bool:
        # Expired leases only matter at the limit: pruning (a scan of the tenant's leases) on
        # every connect made a storm of n connections cost O(n^2).
        members = self._sets.setdefault(key, {})
        if member not in members and len(members) >= limit:
            members = self._live(key)
        if member not in members and len(members) >= limit:
            return False
        members[member] = time.monotonic() + ttl
        return True

    async def renew(self, key: str, members: list[str], ttl: float) -> None:
        live = self._live(key)
        expiry = time.monotonic() + ttl
        for member in members:
            if member in live:
                live[member] = expiry

    async def release(self, key: str, member: str) -> None:
        self._sets.get(key, {}).pop(member, None)

    async def size(self, key: str) -> int:
        return len(self._live(key))

"""The quota store interface and its contract: counters shared by every process of a tenant.

Contract (``tests/conformance/test_quota_contract.py`` checks it on memory and Redis):

* ``hit(key, window, limit)`` counts one event in the fixed window of ``window`` seconds that
  contains now, atomically across processes. It returns 0.0 when the event is within ``limit``
  (and counts it), else the seconds until the window ends (and does not count it).
* ``count(key, window)`` is the number of events counted in the current window.
* ``acquire(key, member, limit, ttl)`` adds ``member`` to a set of at most ``limit`` members
  and answers whether it did; members expire ``ttl`` seconds after their last ``acquire`` or
  ``renew``, so a process that died frees its slots by itself. Acquiring a member already in
  the set renews it and succeeds.
* ``release(key, member)`` removes it; ``size(key)`` counts the live members.
"""

from __future__ import annotations

from typing import Protocol


class QuotaStore(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def hit(self, key: str, window: float, limit: int) -> float:
        """Count one event if within ``limit``; else the seconds until the window ends."""

    async def count(self, key: str, window: float) -> int:
        """Events counted in the current window of ``key``."""

    async def acquire(self, key: str, member: str, limit: int, ttl: float) -> bool:
        """Add ``member`` to the set ``key`` if it has fewer than ``limit`` live members."""

    async def renew(self, key: str, members: list[str], ttl: float) -> None:
        """Keep these members of ``key`` alive for another ``ttl`` seconds."""

    async def release(self, key: str, member: str) -> None:
        """Remove ``member`` from the set ``key`` (nothing if absent)."""

    async def size(self, key: str) -> int:
        """Live members of the set ``key``."""

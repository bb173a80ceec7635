"""Presence for one process. The same rules as Redis, with a dict."""

from __future__ import annotations

import time

from parley.presence.base import Change, Member


class MemoryPresenceStore:
    def __init__(self, ttl: float = 30.0) -> None:
        self.ttl = ttl
        self._sessions: dict[str, dict[Member, float]] = {}

    async def start(self) -> None:
        """Nothing to connect."""

    async def stop(self) -> None:
        self._sessions.clear()

    async def update(
        self, key: str, *, add: Member | None = None, remove: Member | None = None
    ) -> Change:
        now = time.monotonic()
        members = self._sessions.setdefault(key, {})
        before = {m.user_id for m in members}
        for member in [m for m, expiry in members.items() if expiry < now]:
            del members[member]
        if add is not None:
            members[add] = now + self.ttl
        if remove is not None:
            members.pop(remove, None)
        after = {m.user_id: m for m in members}
        if not members:
            del self._sessions[key]
        return Change(
            joined=[m.user() for uid, m in after.items() if uid not in before],
            left=sorted(before - after.keys()),
        )

    async def refresh(self, members: list[tuple[str, Member]]) -> None:
        expiry = time.monotonic() + self.ttl
        for key, member in members:
            session = self._sessions.get(key)
            if session is not None and member in session:
                session[member] = expiry

    async def present(self, key: str) -> list[dict[str, str]]:
        now = time.monotonic()
        users = {m.user_id: m for m, e in self._sessions.get(key, {}).items() if e >= now}
        return [m.user() for m in users.values()]

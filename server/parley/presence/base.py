"""The presence store interface and its contract.

A *member* is one connection's subscription to a session. A *user* is present in a session
while at least one of their members is live. Members expire unless refreshed, so the members of
a process that crashed disappear by themselves within the time-to-live.

Contract (``tests/conformance/test_presence_contract.py`` checks it):

* ``update`` applies one change atomically across all processes and reports which users it made
  appear (``joined``) and disappear (``left``), counting expired members as gone. Every
  appearance and disappearance is reported exactly once, to exactly one caller, so one process
  announces it.
* ``refresh`` extends the life of members; members not refreshed within ``ttl`` seconds expire.
* ``present`` lists the users with at least one live member, in no particular order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Member:
    """One connection of one user in one session."""

    user_id: str
    name: str
    kind: str
    connection: str  # unique across processes: process id + connection id

    def user(self) -> dict[str, str]:
        return {"user_id": self.user_id, "name": self.name, "kind": self.kind}


@dataclass(slots=True)
class Change:
    joined: list[dict[str, str]] = field(default_factory=list)
    left: list[str] = field(default_factory=list)


class PresenceStore(Protocol):
    ttl: float

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def update(
        self, key: str, *, add: Member | None = None, remove: Member | None = None
    ) -> Change:
        """Add or remove one member of the session ``key`` (or neither: just expire members)."""

    async def refresh(self, members: list[tuple[str, Member]]) -> None:
        """Keep these (session key, member) pairs alive for another ``ttl`` seconds."""

    async def present(self, key: str) -> list[dict[str, str]]:
        """The users currently present in the session ``key``."""

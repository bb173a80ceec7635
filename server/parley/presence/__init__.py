"""Presence: who is connected to each session, across every hub process."""

from parley.presence.base import Change, Member, PresenceStore

__all__ = ["Change", "Member", "PresenceStore", "create_presence_store"]


def create_presence_store(broker_url: str) -> PresenceStore:
    """Presence lives beside the broker: in memory for one process, in Redis for many."""
    scheme = broker_url.split("://", 1)[0].lower()
    if scheme in ("redis", "rediss", "unix"):
        from parley.presence.redis import RedisPresenceStore

        return RedisPresenceStore(broker_url)
    from parley.presence.memory import MemoryPresenceStore

    return MemoryPresenceStore()

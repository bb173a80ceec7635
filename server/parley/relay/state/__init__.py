"""Stream state for resume, leases, slots and queues: in memory or in Redis."""

from parley.relay.state.base import (
    APPEND_LOST,
    APPEND_MISSING,
    BeginResult,
    BeginStatus,
    BusyPolicy,
    Renewal,
    StreamInfo,
    StreamStore,
)

__all__ = [
    "APPEND_LOST",
    "APPEND_MISSING",
    "BeginResult",
    "BeginStatus",
    "BusyPolicy",
    "Renewal",
    "StreamInfo",
    "StreamStore",
    "create_stream_store",
]


def create_stream_store(broker_url: str, *, ttl: float = 15.0) -> StreamStore:
    """Stream state lives beside the broker: in memory for one process, in Redis for many."""
    scheme = broker_url.split("://", 1)[0].lower()
    if scheme in ("redis", "rediss", "unix"):
        from parley.relay.state.redis import RedisStreamStore

        return RedisStreamStore(broker_url, ttl=ttl)
    from parley.relay.state.memory import MemoryStreamStore

    return MemoryStreamStore(ttl=ttl)

"""Event brokers: how events of a session reach every hub process that has subscribers."""

from parley.broker.base import Broker, MessageHandler

__all__ = ["Broker", "MessageHandler", "create_broker"]


def create_broker(url: str, *, sharded: bool = False) -> Broker:
    """The broker for a ``PARLEY_BROKER_URL``: ``memory://`` (one process) or
    ``redis://``/``rediss://`` (many processes; ``sharded`` for Redis Cluster)."""
    scheme = url.split("://", 1)[0].lower()
    if scheme == "memory":
        from parley.broker.memory import MemoryBroker

        return MemoryBroker()
    if scheme in ("redis", "rediss", "unix"):
        from parley.broker.redis import RedisBroker

        return RedisBroker(url, sharded=sharded)
    raise ValueError(f"unsupported broker URL scheme {scheme!r}; use memory:// or redis://")

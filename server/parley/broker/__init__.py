"""Event brokers: how events of a session reach every hub process that has subscribers."""

from parley.broker.base import Broker, MessageHandler

__all__ = ["Broker", "MessageHandler", "create_broker"]


def create_broker(url: str) -> Broker:
    """The broker for a ``PARLEY_BROKER_URL``: ``memory://`` (one process)."""
    scheme = url.split("://", 1)[0].lower()
    if scheme == "memory":
        from parley.broker.memory import MemoryBroker

        return MemoryBroker()
    raise ValueError(f"unsupported broker URL scheme {scheme!r}; use memory://")

"""Tenant quotas: counters in a :class:`QuotaStore` (memory or Redis) and the rules using them."""

from parley.governance.quotas.base import QuotaStore

__all__ = ["QuotaStore", "create_quota_store"]


def create_quota_store(broker_url: str) -> QuotaStore:
    """Counters live beside the broker: in memory for one process, in Redis for many."""
    scheme = broker_url.split("://", 1)[0].lower()
    if scheme in ("redis", "rediss", "unix"):
        from parley.governance.quotas.redis import RedisQuotaStore

        return RedisQuotaStore(broker_url)
    from parley.governance.quotas.memory import MemoryQuotaStore

    return MemoryQuotaStore()

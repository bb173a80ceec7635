"""Quota counters in Redis, shared by every process: Lua scripts keep each check atomic.

Windows are keys ``<key>:<window index>`` that expire with their window. Connection sets are
sorted sets scored by expiry time (ms), like presence.
"""

from __future__ import annotations

import math
import time
from typing import Any

import redis.asyncio as aioredis

# KEYS[1]: window counter. ARGV: limit, ttl (ms). Returns the count after, or -1 if refused.
_HIT = """
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n >= tonumber(ARGV[1]) then return -1 end
n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return n
"""

# KEYS[1]: the set. ARGV: now (ms), expiry (ms), limit, member. Returns 1 if acquired.
_ACQUIRE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZSCORE', KEYS[1], ARGV[4]) == false and
   redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[4])
redis.call('PEXPIREAT', KEYS[1], ARGV[2])
return 1
"""

_PREFIX = "parley:quota:"


class RedisQuotaStore:
    def __init__(self, url: str) -> None:
        self.url = url
        self._client: aioredis.Redis | None = None
        self._hit: Any = None
        self._acquire: Any = None

    async def start(self) -> None:
        pool = aioredis.BlockingConnectionPool.from_url(
            self.url, max_connections=32, timeout=10, socket_connect_timeout=5
        )
        self._client = aioredis.Redis(connection_pool=pool)
        self._hit = self._client.register_script(_HIT)
        self._acquire = self._client.register_script(_ACQUIRE)

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    @property
    def client(self) -> aioredis.Redis:
        if self._client is None:
            raise RuntimeError("quota store not started")
        return self._client

    async def hit(self, key: str, window: float, limit: int) -> float:
        now = time.time()
        index = math.floor(now / window)
        end = (index + 1) * window
        ttl_ms = max(1, math.ceil((end - now) * 1000)) + 1000
        n = int(await self._hit(keys=[f"{_PREFIX}{key}:{index}"], args=[limit, ttl_ms]))
        return 0.0 if n >= 0 else end - now

    async def count(self, key: str, window: float) -> int:
        index = math.floor(time.time() / window)
        value = await self.client.get(f"{_PREFIX}{key}:{index}")
        return int(value or 0)

    async def acquire(self, key: str, member: str, limit: int, ttl: float) -> bool:
        now = int(time.time() * 1000)
        expiry = now + int(ttl * 1000)
        done = await self._acquire(keys=[_PREFIX + key], args=[now, expiry, limit, member])
        return bool(int(done))

    async def renew(self, key: str, members: list[str], ttl: float) -> None:
        if not members:
            return
        expiry = int(time.time() * 1000) + int(ttl * 1000)
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.zadd(_PREFIX + key, dict.fromkeys(members, expiry), xx=True)
            pipe.pexpireat(_PREFIX + key, expiry)
            await pipe.execute()

    async def release(self, key: str, member: str) -> None:
        await self.client.zrem(_PREFIX + key, member)

    async def size(self, key: str) -> int:
        now = int(time.time() * 1000)
        return int(await self.client.zcount(_PREFIX + key, f"({now}", "+inf"))

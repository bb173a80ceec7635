"""Presence in Redis: one sorted set per session, members scored by their expiry time.

A Lua script applies each change atomically, so when several processes race, each user's
arrival and departure is reported to exactly one of them.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
import redis.asyncio as aioredis

from parley.presence.base import Change, Member

# KEYS[1]: the session's set. ARGV: now (ms), expiry (ms), key ttl (ms), add, remove.
# Returns {joined members (JSON), left user ids}.
_UPDATE = """
local function users(list)
  local out = {}
  for _, m in ipairs(list) do out[cjson.decode(m)['u']] = m end
  return out
end
local before = users(redis.call('ZRANGE', KEYS[1], 0, -1))
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1])
if ARGV[4] ~= '' then redis.call('ZADD', KEYS[1], ARGV[2], ARGV[4]) end
if ARGV[5] ~= '' then redis.call('ZREM', KEYS[1], ARGV[5]) end
local after = users(redis.call('ZRANGE', KEYS[1], 0, -1))
if next(after) ~= nil then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
local joined, left = {}, {}
for u, m in pairs(after) do if before[u] == nil then table.insert(joined, m) end end
for u, _ in pairs(before) do if after[u] == nil then table.insert(left, u) end end
return {joined, left}
"""


def _encode(member: Member) -> str:
    return orjson.dumps(
        {"u": member.user_id, "n": member.name, "k": member.kind, "c": member.connection}
    ).decode()


def _user(raw: bytes | str) -> dict[str, str]:
    data = orjson.loads(raw)
    return {"user_id": data["u"], "name": data["n"], "kind": data["k"]}


class RedisPresenceStore:
    def __init__(self, url: str, ttl: float = 30.0) -> None:
        self.url = url
        self.ttl = ttl
        self._client: aioredis.Redis | None = None
        self._script: Any = None

    async def start(self) -> None:
        # A burst of disconnects runs many presence updates at once: wait for a pooled
        # connection instead of failing with "Too many connections".
        pool = aioredis.BlockingConnectionPool.from_url(
            self.url, max_connections=32, timeout=10, socket_connect_timeout=5
        )
        self._client = aioredis.Redis(connection_pool=pool)
        self._script = self._client.register_script(_UPDATE)

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    async def update(
        self, key: str, *, add: Member | None = None, remove: Member | None = None
    ) -> Change:
        now = int(time.time() * 1000)
        ttl_ms = int(self.ttl * 1000)
        joined, left = await self._script(
            keys=[key],
            args=[
                now,
                now + ttl_ms,
                ttl_ms * 2,
                _encode(add) if add else "",
                _encode(remove) if remove else "",
            ],
        )
        return Change(
            joined=[_user(m) for m in joined],
            left=sorted(u.decode() if isinstance(u, bytes) else u for u in left),
        )

    async def refresh(self, members: list[tuple[str, Member]]) -> None:
        if not members or self._client is None:
            return
        expiry = int((time.time() + self.ttl) * 1000)
        pipe = self._client.pipeline(transaction=False)
        for key, member in members:
            pipe.zadd(key, {_encode(member): expiry}, xx=True)
            pipe.pexpire(key, int(self.ttl * 2000))
        await pipe.execute()

    async def present(self, key: str) -> list[dict[str, str]]:
        assert self._client is not None
        now = int(time.time() * 1000)
        raw = await self._client.zrangebyscore(key, now, "+inf")
        users = {u["user_id"]: u for u in (_user(m) for m in raw if isinstance(m, bytes | str))}
        return list(users.values())

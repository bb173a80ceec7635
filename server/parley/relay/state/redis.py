"""The stream-state store in Redis, shared by every hub process.

Keys (``{T}`` is the tenant, in braces so a tenant's keys share a hash slot)::

    parley:relay:{T}:s:<stream>     hash: info (JSON), owner, stop
    parley:relay:{T}:t:<stream>     string: the text so far (APPEND; offsets in UTF-8 bytes)
    parley:relay:{T}:slot:<slot>    string: the stream holding (session, assistant)
    parley:relay:{T}:q:<slot>       list: queued streams (info JSON), next first
    parley:relay:{T}:qref:<stream>  string: the slot a queued stream waits in (for stop)
    parley:relay:{T}:sess:<session> sorted set: running streams of a session by start time
    parley:relay:{T}:run            sorted set: running streams of the tenant by lease expiry
    parley:relay:{T}:done:<stream>  string: a finished stream's tombstone (for late owners)
    parley:relay:leases             sorted set: "<tenant>/<stream>" by lease expiry (the reaper)

Every change is one Lua script, so racing processes see each step whole. Every key carries an
expiry (``max_age``), so nothing outlives a cluster that died entirely. Like presence, this needs
one Redis (or a primary); Redis Cluster is not supported for these keys.
"""

from __future__ import annotations

import time
from typing import Any

import redis.asyncio as aioredis

from parley.relay.state.base import (
    BeginResult,
    BeginStatus,
    BusyPolicy,
    Renewal,
    StreamInfo,
)

PREFIX = "parley:relay:"
LEASES = PREFIX + "leases"

# Shared Lua: key builders and "start running this stream" (used by begin, finish, restore).
_LIB = """
local P = 'parley:relay:'
local function k(t, kind, id) return P .. '{' .. t .. '}:' .. kind .. ':' .. id end
local function krun(t) return P .. '{' .. t .. '}:run' end
local function run(t, sid, info, created, owner, now, ttl, age)
  local d = cjson.decode(info)
  redis.call('SET', k(t, 'slot', d['session_id'] .. ':' .. d['assistant_id']), sid, 'PX', age)
  redis.call('HSET', k(t, 's', sid), 'info', info, 'owner', owner)
  redis.call('HDEL', k(t, 's', sid), 'stop')
  redis.call('PEXPIRE', k(t, 's', sid), age)
  redis.call('SET', k(t, 't', sid), '', 'PX', age)
  redis.call('ZADD', k(t, 'sess', d['session_id']), created, sid)
  redis.call('PEXPIRE', k(t, 'sess', d['session_id']), age)
  local exp = now + ttl
  redis.call('ZADD', krun(t), exp, sid)
  redis.call('PEXPIRE', krun(t), age)
  redis.call('ZADD', P .. 'leases', exp, t .. '/' .. sid)
end
"""

# ARGV: tenant, stream, info, created_ms, owner, now_ms, ttl_ms, age_ms, policy, queue_limit,
# tenant_limit, slot. Returns {status, position, holder, dropped infos...}.
_BEGIN = (
    _LIB
    + """
local t, sid, info = ARGV[1], ARGV[2], ARGV[3]
local now, ttl, age = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local slot_key, q = k(t, 'slot', ARGV[12]), k(t, 'q', ARGV[12])
local holder = redis.call('GET', slot_key)
if holder and redis.call('EXISTS', k(t, 's', holder)) == 0 then holder = false end
if not holder then
  if redis.call('ZCOUNT', krun(t), now, '+inf') >= tonumber(ARGV[11]) then
    return {'limit', 0, ''}
  end
  run(t, sid, info, tonumber(ARGV[4]), ARGV[5], now, ttl, age)
  return {'started', 0, ''}
end
local policy = ARGV[9]
if policy == 'reject' then return {'busy', 0, holder} end
if policy == 'interrupt' then
  local out = {'queued', 1, holder}
  for _, e in ipairs(redis.call('LRANGE', q, 0, -1)) do
    redis.call('DEL', k(t, 'qref', cjson.decode(e)['stream_id']))
    table.insert(out, e)
  end
  redis.call('DEL', q)
  redis.call('RPUSH', q, info)
  redis.call('PEXPIRE', q, age)
  redis.call('SET', k(t, 'qref', sid), ARGV[12], 'PX', age)
  redis.call('HSETNX', k(t, 's', holder), 'stop', 'interrupted')
  return out
end
local n = redis.call('LLEN', q)
if n >= tonumber(ARGV[10]) then return {'busy', 0, holder} end
redis.call('RPUSH', q, info)
redis.call('PEXPIRE', q, age)
redis.call('SET', k(t, 'qref', sid), ARGV[12], 'PX', age)
return {'queued', n + 1, ''}
"""
)

# ARGV: tenant, stream, text. Returns the new length, -2 (finished/claimed), -1 (forgotten).
_APPEND = (
    _LIB
    + """
local t, sid = ARGV[1], ARGV[2]
if redis.call('EXISTS', k(t, 't', sid)) == 1 then
  return redis.call('APPEND', k(t, 't', sid), ARGV[3])
end
if redis.call('EXISTS', k(t, 'done', sid)) == 1 or redis.call('EXISTS', k(t, 's', sid)) == 1 then
  return -2
end
return -1
"""
)

# ARGV: tenant, stream, info, created_ms, owner, now_ms, ttl_ms, age_ms, text.
_RESTORE = (
    _LIB
    + """
local t, sid = ARGV[1], ARGV[2]
if redis.call('EXISTS', k(t, 'done', sid)) == 1 then return 0 end
run(t, sid, ARGV[3], tonumber(ARGV[4]), ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[7]),
    tonumber(ARGV[8]))
redis.call('SET', k(t, 't', sid), ARGV[9], 'PX', tonumber(ARGV[8]))
return 1
"""
)

# ARGV: owner, now_ms, ttl_ms, then tenant, stream pairs. Returns per pair {state, stop}:
# state 0 renewed, 1 lost, 2 missing.
_RENEW = (
    _LIB
    + """
local out = {}
local exp = tonumber(ARGV[2]) + tonumber(ARGV[3])
for i = 4, #ARGV, 2 do
  local t, sid = ARGV[i], ARGV[i + 1]
  local h = k(t, 's', sid)
  local owner = redis.call('HGET', h, 'owner')
  if owner == ARGV[1] then
    redis.call('ZADD', krun(t), exp, sid)
    redis.call('ZADD', P .. 'leases', exp, t .. '/' .. sid)
    table.insert(out, 0)
    table.insert(out, redis.call('HGET', h, 'stop') or '')
  elseif owner or redis.call('EXISTS', k(t, 'done', sid)) == 1 then
    table.insert(out, 1)
    table.insert(out, '')
  else
    table.insert(out, 2)
    table.insert(out, '')
  end
end
return out
"""
)

# ARGV: tenant, session, stream, reason. Returns {state, info}.
_STOP = (
    _LIB
    + """
local t, sess, sid = ARGV[1], ARGV[2], ARGV[3]
local info = redis.call('HGET', k(t, 's', sid), 'info')
if info then
  if cjson.decode(info)['session_id'] ~= sess then return {'unknown', ''} end
  redis.call('HSETNX', k(t, 's', sid), 'stop', ARGV[4])
  return {'running', info}
end
local slot = redis.call('GET', k(t, 'qref', sid))
if slot then
  local q = k(t, 'q', slot)
  for _, e in ipairs(redis.call('LRANGE', q, 0, -1)) do
    local d = cjson.decode(e)
    if d['stream_id'] == sid and d['session_id'] == sess then
      redis.call('LREM', q, 1, e)
      redis.call('DEL', k(t, 'qref', sid))
      return {'dequeued', e}
    end
  end
end
return {'unknown', ''}
"""
)

# ARGV: tenant, stream, session, slot, next owner, now_ms, ttl_ms, age_ms, tombstone_ms.
# Returns the info JSON of the next stream, started, or false.
_FINISH = (
    _LIB
    + """
local t, sid = ARGV[1], ARGV[2]
local now, ttl, age = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
redis.call('DEL', k(t, 's', sid), k(t, 't', sid))
redis.call('SET', k(t, 'done', sid), '1', 'PX', ARGV[9])
redis.call('ZREM', k(t, 'sess', ARGV[3]), sid)
redis.call('ZREM', krun(t), sid)
redis.call('ZREM', P .. 'leases', t .. '/' .. sid)
local slot_key, q = k(t, 'slot', ARGV[4]), k(t, 'q', ARGV[4])
if redis.call('GET', slot_key) ~= sid then return false end
local nxt = redis.call('LPOP', q)
if not nxt then
  redis.call('DEL', slot_key)
  return false
end
local d = cjson.decode(nxt)
redis.call('DEL', k(t, 'qref', d['stream_id']))
run(t, d['stream_id'], nxt, math.floor(d['created_at'] * 1000), ARGV[5], now, ttl, age)
return nxt
"""
)

# ARGV: tenant, stream, owner, now_ms, ttl_ms. Returns the info JSON, or false.
_CLAIM = (
    _LIB
    + """
local t, sid = ARGV[1], ARGV[2]
local now = tonumber(ARGV[4])
local h = k(t, 's', sid)
if redis.call('EXISTS', h) == 0 then
  redis.call('ZREM', krun(t), sid)
  redis.call('ZREM', P .. 'leases', t .. '/' .. sid)
  return false
end
local score = redis.call('ZSCORE', krun(t), sid)
if score and tonumber(score) > now then return false end
redis.call('HSET', h, 'owner', ARGV[3])
local exp = now + tonumber(ARGV[5])
redis.call('ZADD', krun(t), exp, sid)
redis.call('ZADD', P .. 'leases', exp, t .. '/' .. sid)
return redis.call('HGET', h, 'info')
"""
)


def _key(tenant_id: str, kind: str, ident: str) -> str:
    return f"{PREFIX}{{{tenant_id}}}:{kind}:{ident}"


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisStreamStore:
    def __init__(self, url: str, ttl: float = 15.0, max_age: float = 24 * 3600.0) -> None:
        self.url = url
        self.ttl = ttl
        self.max_age = max_age
        self._client: aioredis.Redis | None = None
        self._scripts: dict[str, Any] = {}

    async def start(self) -> None:
        # A bounded socket timeout: a stream's flush must fail (and go on) rather than hang
        # when Redis is unreachable; deltas still reach subscribers through the broker.
        # Wait for a pooled connection under bursts rather than fail ("Too many connections").
        pool = aioredis.BlockingConnectionPool.from_url(
            self.url, max_connections=32, timeout=10, socket_connect_timeout=5, socket_timeout=5
        )
        self._client = aioredis.Redis(connection_pool=pool)
        for name, source in (
            ("begin", _BEGIN),
            ("append", _APPEND),
            ("restore", _RESTORE),
            ("renew", _RENEW),
            ("stop", _STOP),
            ("finish", _FINISH),
            ("claim", _CLAIM),
        ):
            self._scripts[name] = self._client.register_script(source)

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    @property
    def _r(self) -> aioredis.Redis:
        assert self._client is not None, "start() the store first"
        return self._client

    def _times(self) -> tuple[int, int, int]:
        return int(time.time() * 1000), int(self.ttl * 1000), int(self.max_age * 1000)

    async def begin(
        self,
        info: StreamInfo,
        *,
        owner: str,
        policy: BusyPolicy,
        queue_limit: int,
        tenant_limit: int,
    ) -> BeginResult:
        now, ttl, age = self._times()
        reply = await self._scripts["begin"](
            args=[
                info.tenant_id,
                info.stream_id,
                info.dumps(),
                int(info.created_at * 1000),
                owner,
                now,
                ttl,
                age,
                str(policy),
                queue_limit,
                tenant_limit,
                info.slot,
            ]
        )
        status, position, holder = _s(reply[0]), int(reply[1]), _s(reply[2])
        return BeginResult(
            BeginStatus(status),
            position=position or None,
            holder=holder or None,
            dropped=tuple(StreamInfo.loads(e) for e in reply[3:]),
        )

    async def append(self, tenant_id: str, stream_id: str, text: str) -> int:
        return int(await self._scripts["append"](args=[tenant_id, stream_id, text]))

    async def restore(self, info: StreamInfo, owner: str, text: str) -> None:
        now, ttl, age = self._times()
        await self._scripts["restore"](
            args=[
                info.tenant_id,
                info.stream_id,
                info.dumps(),
                int(info.created_at * 1000),
                owner,
                now,
                ttl,
                age,
                text,
            ]
        )

    async def get(self, tenant_id: str, stream_id: str) -> tuple[StreamInfo, str] | None:
        async with self._r.pipeline(transaction=True) as pipe:
            pipe.hget(_key(tenant_id, "s", stream_id), "info")
            pipe.get(_key(tenant_id, "t", stream_id))
            info, text = await pipe.execute()
        if info is None:
            return None
        return StreamInfo.loads(info), (text or b"").decode()

    async def active(self, tenant_id: str, session_id: str) -> list[tuple[StreamInfo, str]]:
        ids = await self._r.zrange(_key(tenant_id, "sess", session_id), 0, -1)
        if not ids:
            return []
        async with self._r.pipeline(transaction=True) as pipe:
            for sid in ids:
                pipe.hget(_key(tenant_id, "s", _s(sid)), "info")
                pipe.get(_key(tenant_id, "t", _s(sid)))
            values = await pipe.execute()
        out: list[tuple[StreamInfo, str]] = []
        for i in range(0, len(values), 2):
            if values[i] is not None:
                out.append((StreamInfo.loads(values[i]), (values[i + 1] or b"").decode()))
        return out

    async def renew(self, owner: str, streams: list[tuple[str, str]]) -> list[Renewal]:
        if not streams:
            return []
        now, ttl, _ = self._times()
        args: list[Any] = [owner, now, ttl]
        for tenant_id, stream_id in streams:
            args += [tenant_id, stream_id]
        reply = await self._scripts["renew"](args=args)
        out: list[Renewal] = []
        for i, (tenant_id, stream_id) in enumerate(streams):
            state, stop = int(reply[2 * i]), _s(reply[2 * i + 1])
            out.append(
                Renewal(tenant_id, stream_id, stop or None, lost=state == 1, missing=state == 2)
            )
        return out

    async def request_stop(
        self, tenant_id: str, session_id: str, stream_id: str, reason: str
    ) -> tuple[str, StreamInfo | None]:
        state, info = await self._scripts["stop"](args=[tenant_id, session_id, stream_id, reason])
        state = _s(state)
        return state, StreamInfo.loads(info) if state != "unknown" else None

    async def finish(self, info: StreamInfo, next_owner: str) -> StreamInfo | None:
        now, ttl, age = self._times()
        tombstone = int(max(self.ttl * 8, 120) * 1000)
        nxt = await self._scripts["finish"](
            args=[
                info.tenant_id,
                info.stream_id,
                info.session_id,
                info.slot,
                next_owner,
                now,
                ttl,
                age,
                tombstone,
            ]
        )
        return StreamInfo.loads(nxt) if nxt else None

    async def expired(self) -> list[tuple[str, str]]:
        members = await self._r.zrangebyscore(LEASES, "-inf", int(time.time() * 1000))
        out: list[tuple[str, str]] = []
        for member in members:
            tenant_id, _, stream_id = _s(member).partition("/")
            if stream_id:
                out.append((tenant_id, stream_id))
        return out

    async def claim(self, tenant_id: str, stream_id: str, owner: str) -> StreamInfo | None:
        now, ttl, _ = self._times()
        info = await self._scripts["claim"](args=[tenant_id, stream_id, owner, now, ttl])
        return StreamInfo.loads(info) if info else None

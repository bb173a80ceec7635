"""The Redis broker: pub/sub across hub processes (redis-py asyncio with hiredis).

* One Redis connection carries all of a process's subscriptions; another publishes.
* Publishes are queued and written in pipelines by one task, so a burst of events costs one
  round trip, not one per event, and order per channel is kept.
* A payload published here is handed to this process's own handler at once (no round trip for
  local subscribers) and travels to Redis tagged with this process's id; the copy that comes
  back is recognised by the tag and dropped, so every process gets each payload exactly once.
* When the connection breaks, the broker reconnects with backoff, resubscribes every channel,
  and then calls the resync handler: payloads published meanwhile are lost (at most once), so
  the hub reads what it missed from storage.
* ``sharded=True`` uses ``SPUBLISH``/``SSUBSCRIBE`` (Redis 7+), which Redis Cluster routes to
  the shard owning the channel instead of broadcasting to every node.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
from collections import deque
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

from parley import metrics
from parley.broker.base import MessageHandler

log = structlog.get_logger("parley.broker")

_MAGIC = b"PRL1"
# A nudge: "payloads on this channel were lost; read what you missed from storage".
_NUDGE = b"PRLR"
_ORIGIN_LEN = 8
_HEADER = len(_MAGIC) + _ORIGIN_LEN
_MAX_BATCH = 512


class RedisBroker:
    """A :class:`~parley.broker.base.Broker` on Redis pub/sub."""

    def __init__(self, url: str, *, sharded: bool = False, node_id: bytes | None = None) -> None:
        self.url = url
        self.sharded = sharded
        self.node_id = node_id or os.urandom(_ORIGIN_LEN)
        self._handlers: dict[str, MessageHandler] = {}
        self._confirm: dict[str, asyncio.Future[None]] = {}
        self._queue: deque[tuple[str, bytes]] = deque()
        self._wakeup = asyncio.Event()
        self._client: aioredis.Redis | None = None
        self._pubsub: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self._subscribed = False
        self._publish_ok = True
        self._dropped_channels: set[str] = set()
        self._resync: Callable[[], None] | None = None
        self._stopping = False

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        self._client = aioredis.Redis.from_url(
            self.url, socket_connect_timeout=5, socket_keepalive=True, health_check_interval=15
        )
        await self._client.ping()
        await self._open_pubsub()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._read_loop(), name="parley-redis-reader"),
            loop.create_task(self._flush_loop(), name="parley-redis-publisher"),
        ]
        log.info("redis broker connected", sharded=self.sharded)

    async def stop(self) -> None:
        self._stopping = True
        self._wakeup.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, RedisError, OSError):
                await task
        await self._flush_once()
        await self._close_pubsub()
        if self._client is not None:
            await self._client.aclose()
        self._handlers.clear()
        self._subscribed = False

    def on_resync(self, handler: Callable[[], None]) -> None:
        """Call ``handler`` after an interruption in which payloads may have been lost."""
        self._resync = handler

    async def healthy(self) -> bool:
        return self._subscribed and self._publish_ok and not self._stopping

    # -- publish ----------------------------------------------------------------------------

    async def publish(self, channel: str, payload: bytes) -> None:
        handler = self._handlers.get(channel)
        if handler is not None:
            try:
                handler(channel, payload)
            except Exception:  # the contract says handlers must not raise; stay safe anyway
                log.exception("broker handler failed", channel=channel)
        self._queue.append((channel, _MAGIC + self.node_id + payload))
        self._wakeup.set()

    async def _flush_loop(self) -> None:
        while not self._stopping:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._queue and not self._stopping:
                await self._flush_once()

    async def _flush_once(self) -> None:
        if not self._queue or self._client is None:
            return
        batch = [self._queue.popleft() for _ in range(min(len(self._queue), _MAX_BATCH))]
        if self._dropped_channels:
            # Tell the other processes which channels lost payloads, so they catch up.
            nudges = [(ch, _NUDGE + self.node_id) for ch in sorted(self._dropped_channels)]
            batch = nudges + batch
            self._dropped_channels.clear()
        for _attempt in range(2):
            try:
                await self._execute(batch)
                self._publish_ok = True
                return
            except (RedisError, OSError) as exc:
                error = exc  # the first failure may be a stale pooled connection: retry once
        # At most once: the events are in storage; the nudge after recovery makes the other
        # processes read them from there.
        self._publish_ok = False
        self._dropped_channels.update(channel for channel, _ in batch)
        metrics.BROKER_DROPPED.inc(len(batch))
        log.warning("publishing to redis failed", error=str(error), dropped=len(batch))

    async def _execute(self, batch: list[tuple[str, bytes]]) -> None:
        assert self._client is not None
        command = "SPUBLISH" if self.sharded else "PUBLISH"
        pipe = self._client.pipeline(transaction=False)
        for channel, data in batch:
            pipe.execute_command(command, channel, data)
        await pipe.execute()

    # -- subscribe --------------------------------------------------------------------------

    async def subscribe(self, channel: str, handler: MessageHandler) -> None:
        known = channel in self._handlers
        self._handlers[channel] = handler
        if known or self._pubsub is None:
            return
        await self._send_subscribe([channel])

    async def unsubscribe(self, channel: str) -> None:
        if self._handlers.pop(channel, None) is None or self._pubsub is None:
            return
        try:
            if self.sharded:
                await self._pubsub.sunsubscribe(channel)
            else:
                await self._pubsub.unsubscribe(channel)
        except (RedisError, OSError) as exc:
            log.warning("redis unsubscribe failed", channel=channel, error=str(exc))

    async def _send_subscribe(self, channels: list[str]) -> None:
        """Subscribe and wait until Redis confirms, so later publishes are sure to arrive."""
        loop = asyncio.get_running_loop()
        waiters = []
        for channel in channels:
            fut = self._confirm.get(channel)
            if fut is None or fut.done():
                fut = loop.create_future()
                self._confirm[channel] = fut
            waiters.append(fut)
        if self.sharded:
            await self._pubsub.ssubscribe(*channels)
        else:
            await self._pubsub.subscribe(*channels)
        try:
            await asyncio.wait_for(asyncio.gather(*(asyncio.shield(w) for w in waiters)), 10)
        except TimeoutError:
            log.warning("redis did not confirm subscriptions in time", count=len(channels))

    async def _resubscribe_all(self) -> None:
        """Subscribe every channel again and wait for Redis to confirm them all. This runs in
        the reader task, so it reads the confirmations itself (dispatching any payloads)."""
        channels = set(self._handlers)
        if not channels:
            return
        if self.sharded:
            await self._pubsub.ssubscribe(*channels)
        else:
            await self._pubsub.subscribe(*channels)
        async with asyncio.timeout(10):
            while channels:
                message = await self._pubsub.get_message(timeout=None)
                if message is None:
                    continue
                if message["type"] in ("subscribe", "ssubscribe"):
                    name = message["channel"]
                    channels.discard(name.decode() if isinstance(name, bytes) else name)
                self._dispatch(message)

    # -- the reader ------------------------------------------------------------------------

    async def _open_pubsub(self) -> None:
        assert self._client is not None
        self._pubsub = self._client.pubsub(ignore_subscribe_messages=False)
        # An initial subscription is needed before get_message() may be called.
        await self._pubsub.subscribe("parley:__control__")
        self._subscribed = True

    async def _close_pubsub(self) -> None:
        if self._pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._pubsub.aclose()
            self._pubsub = None

    async def _read_loop(self) -> None:
        while not self._stopping:
            try:
                message = await self._pubsub.get_message(timeout=None)
            except (RedisError, OSError) as exc:
                if self._stopping:
                    return
                self._subscribed = False
                log.warning("redis subscription lost; reconnecting", error=str(exc))
                await self._reconnect()
                continue
            if message is not None:
                self._dispatch(message)

    def _dispatch(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        channel = message["channel"]
        if isinstance(channel, bytes):
            channel = channel.decode()
        if kind in ("message", "smessage"):
            data: bytes = message["data"]
            if data.startswith(_NUDGE):
                if data[len(_NUDGE) :] != self.node_id and self._resync is not None:
                    self._resync()
                return
            if not data.startswith(_MAGIC):
                return  # not ours: some other publisher shares the Redis
            if data[len(_MAGIC) : _HEADER] == self.node_id:
                return  # our own publish, already delivered locally
            handler = self._handlers.get(channel)
            if handler is not None:
                try:
                    handler(channel, data[_HEADER:])
                except Exception:
                    log.exception("broker handler failed", channel=channel)
        elif kind in ("subscribe", "ssubscribe"):
            fut = self._confirm.pop(channel, None)
            if fut is not None and not fut.done():
                fut.set_result(None)

    async def _reconnect(self) -> None:
        delay = 0.1
        while not self._stopping:
            await self._close_pubsub()
            try:
                await self._open_pubsub()
                await self._resubscribe_all()
            except (RedisError, OSError, TimeoutError) as exc:
                self._subscribed = False
                log.info("redis still unreachable", retry_in=round(delay, 2), error=str(exc))
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 5.0)
                continue
            metrics.BROKER_RECONNECTS.inc()
            log.info("redis subscription restored", channels=len(self._handlers))
            if self._resync is not None:
                self._resync()
            return

"""Wake-ups for readers of the tenant feed when events are committed, on every process.

The feed itself is in storage; this only says "look again". Each committed batch publishes
the tenant id on one broker channel, and every process wakes its local readers of that
tenant (and the background consumers, which read every tenant). The broker may lose a nudge
(at most once), so readers also look again every poll interval.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

import structlog

from parley.broker.base import Broker
from parley.sessions.service import Publisher

FEED_CHANNEL = "parley:feed"
log = structlog.get_logger("parley.integrations")


class FeedSignal:
    """Per-process wake-ups: take :meth:`waiter` before reading, wait on it after reading
    nothing, so no commit in between can go unnoticed."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self._tenants: dict[str, asyncio.Event] = {}
        self._any = asyncio.Event()

    async def start(self) -> None:
        await self.broker.subscribe(FEED_CHANNEL, self._on_message)

    async def stop(self) -> None:
        await self.broker.unsubscribe(FEED_CHANNEL)

    def waiter(self, tenant_id: str | None = None) -> asyncio.Event:
        """The event set by the next commit of ``tenant_id`` (of any tenant when None)."""
        if tenant_id is None:
            return self._any
        return self._tenants.setdefault(tenant_id, asyncio.Event())

    async def notify(self, tenant_id: str) -> None:
        """Tell every process that ``tenant_id`` committed events."""
        try:
            await self.broker.publish(FEED_CHANNEL, tenant_id.encode())
        except Exception as exc:  # readers poll as well; a lost nudge only delays them
            log.warning("feed nudge failed", error=str(exc))
        # Wake this process even if the broker did not deliver to it.
        self._wake(tenant_id)

    def _on_message(self, _channel: str, payload: bytes) -> None:
        self._wake(payload.decode("utf-8", "replace"))

    def _wake(self, tenant_id: str) -> None:
        event = self._tenants.pop(tenant_id, None)
        if event is not None:
            event.set()
        event, self._any = self._any, asyncio.Event()
        event.set()


async def wait(event: asyncio.Event, seconds: float) -> None:
    """Wait for ``event`` at most ``seconds`` (the poll interval)."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)


class NotifyingPublisher:
    """Forwards to ``inner`` (the hub); then nudges readers of the tenant feed."""

    def __init__(self, inner: Publisher, signal: FeedSignal) -> None:
        self.inner = inner
        self.signal = signal

    async def publish(
        self, tenant_id: str, session_id: str, frames: Sequence[dict[str, Any]]
    ) -> None:
        """Publish durable event frames of one session, in ``seq`` order."""
        try:
            await self.inner.publish(tenant_id, session_id, frames)
        finally:
            await self.signal.notify(tenant_id)

    async def publish_ephemeral(
        self, tenant_id: str, session_id: str, name: str, data: dict[str, Any]
    ) -> None:
        """Publish an event that is not stored (the feed holds durable events only)."""
        await self.inner.publish_ephemeral(tenant_id, session_id, name, data)

"""The in-memory broker: the embedded default for one process.

Several ``MemoryBroker`` instances may share one :class:`MemoryBus`, which lets tests run many
hubs in one process exactly as if they were separate processes on a real broker.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog

from parley.broker.base import MessageHandler

log = structlog.get_logger("parley.broker")


class MemoryBus:
    """The shared medium: channel -> the brokers subscribed to it."""

    def __init__(self) -> None:
        self.channels: dict[str, dict[MemoryBroker, MessageHandler]] = {}


class MemoryBroker:
    """Delivers synchronously, inside ``publish``, to every subscribed instance on its bus."""

    def __init__(self, bus: MemoryBus | None = None) -> None:
        self.bus = bus or MemoryBus()
        self._channels: set[str] = set()
        self._running = False

    async def start(self) -> None:
        self._running = True

    async def stop(self) -> None:
        for channel in list(self._channels):
            await self.unsubscribe(channel)
        self._running = False

    async def publish(self, channel: str, payload: bytes) -> None:
        subscribers = self.bus.channels.get(channel)
        if not subscribers:
            return
        for handler in list(subscribers.values()):
            try:
                handler(channel, payload)
            except Exception:  # a faulty subscriber must not stop delivery to the others
                log.exception("broker handler failed", channel=channel)

    async def subscribe(self, channel: str, handler: MessageHandler) -> None:
        self.bus.channels.setdefault(channel, {})[self] = handler
        self._channels.add(channel)

    async def unsubscribe(self, channel: str) -> None:
        self._channels.discard(channel)
        subscribers = self.bus.channels.get(channel)
        if subscribers is not None:
            subscribers.pop(self, None)
            if not subscribers:
                del self.bus.channels[channel]

    async def healthy(self) -> bool:
        return self._running

    def on_resync(self, handler: Callable[[], None]) -> None:
        """Nothing is ever lost in memory, so the handler is never called."""

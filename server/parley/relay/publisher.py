"""The publisher the session service publishes through: the hub, plus the relay's triggers.

Assistants answer messages (on mention, or every human message), so the relay must see every
committed ``message.created``. Wrapping the ``Publisher`` the service already calls after each
commit does that without touching the service: it sees exactly the committed events, once, on
the process that committed them (so a message triggers one answer, not one per process), and
only after they were handed to the hub (so ``message.created`` reaches subscribers before the
answer's ``stream.started``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from parley.sessions.service import Publisher

Observer = Callable[[str, str, Sequence[dict[str, Any]]], None]


class ObservingPublisher:
    """Forwards to ``inner`` (the hub); then shows committed durable frames to ``observer``."""

    def __init__(self, inner: Publisher, observer: Observer | None = None) -> None:
        self.inner = inner
        self.observer = observer

    async def publish(
        self, tenant_id: str, session_id: str, frames: Sequence[dict[str, Any]]
    ) -> None:
        """Publish durable event frames of one session, in ``seq`` order."""
        try:
            await self.inner.publish(tenant_id, session_id, frames)
        finally:
            # The events are committed whether or not the broker took them.
            if self.observer is not None:
                self.observer(tenant_id, session_id, frames)

    async def publish_ephemeral(
        self, tenant_id: str, session_id: str, name: str, data: dict[str, Any]
    ) -> None:
        """Publish an event that is not stored."""
        await self.inner.publish_ephemeral(tenant_id, session_id, name, data)

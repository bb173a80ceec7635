"""The broker interface and its contract.

A broker carries opaque byte payloads on named channels between hub processes. The hub owns
everything else: encoding, ordering by ``seq``, gap filling from storage, local fan-out.

Contract every implementation must keep (``tests/conformance/test_broker_contract.py`` checks it):

* **Who receives**: a payload published on a channel is delivered once to the handler of every
  broker instance (every process) subscribed to that channel when the publish is processed,
  *including the publishing instance itself*. Instances not subscribed receive nothing.
* **Order**: payloads from one publisher on one channel arrive in publish order. There is no
  order across publishers or across channels; the hub restores session order by ``seq``.
* **Guarantee**: at most once. A payload can be lost (a broker restart, a dropped connection);
  durable events are in storage, and the hub fills gaps from there. ``healthy()`` reports
  whether delivery is currently possible.
* **subscribe()** returns only once the subscription is active: a payload published after it
  returns is delivered. Subscribing twice to one channel replaces the handler.
* **Handlers** run on the event loop, must not block, and must not raise; the broker calls them
  one at a time, in arrival order.
* **Interruptions**: after a lost connection the broker reconnects by itself, resubscribes, and
  then calls the resync handler so the hub can read from storage what it may have missed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

MessageHandler = Callable[[str, bytes], None]


class Broker(Protocol):
    """Publish/subscribe of byte payloads on channels, across processes."""

    async def start(self) -> None:
        """Connect. Called once before any other method."""

    async def stop(self) -> None:
        """Disconnect and drop all subscriptions."""

    async def publish(self, channel: str, payload: bytes) -> None:
        """Send ``payload`` to every subscriber of ``channel`` (see the module contract)."""

    async def subscribe(self, channel: str, handler: MessageHandler) -> None:
        """Start delivering ``channel`` to ``handler``; active when this returns."""

    async def unsubscribe(self, channel: str) -> None:
        """Stop delivering ``channel``. Unknown channels are ignored."""

    async def healthy(self) -> bool:
        """True when publishes are currently being delivered."""

    def on_resync(self, handler: Callable[[], None]) -> None:
        """Register ``handler``, called (on the event loop) after the broker recovered from an
        interruption during which payloads may have been lost, once it is subscribed again."""

"""A committed event that was never published (its process died between commit and publish)
still reaches subscribers: the heartbeat's feed audit finds the feed behind storage."""

from __future__ import annotations

from collections.abc import Callable

from parley.broker.memory import MemoryBroker
from parley.config import Settings
from tests.support import start_server


class LosingBroker(MemoryBroker):
    """Loses the next publish, as a process killed right after its commit would."""

    lose_next = False

    async def publish(self, channel: str, payload: bytes) -> None:
        if self.lose_next:
            self.lose_next = False
            return
        await super().publish(channel, payload)


async def test_the_newest_event_is_delivered_even_if_its_publish_was_lost(
    sqlite_url: str, settings_factory: Callable[..., Settings]
) -> None:
    broker = LosingBroker()
    settings = settings_factory(database_url=sqlite_url, presence_ttl=0.3)
    async with start_server(settings, broker=broker) as server:
        sid = await server.create_session("alice")
        async with server.client("alice") as alice, server.client("bob") as bob:
            await bob.subscribe(sid)
            await alice.subscribe(sid)
            broker.lose_next = True
            ack = await alice.say(sid, "never published")
            (event,) = await bob.events(1, timeout=5)
            assert event["seq"] == ack["seq"]
            assert event["data"]["message"]["text"] == "never published"

"""The broker contract (see ``parley.broker.base``), run against every broker implementation.

A new broker joins by adding a factory to ``BROKERS``: a function returning ``n`` started
instances that talk to each other as separate processes would.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from parley.broker.base import Broker
from parley.broker.memory import MemoryBroker, MemoryBus

Factory = Callable[[int], Awaitable[list[Broker]]]


async def _memory(n: int) -> list[Broker]:
    bus = MemoryBus()
    brokers: list[Broker] = [MemoryBroker(bus) for _ in range(n)]
    for b in brokers:
        await b.start()
    return brokers


BROKERS: dict[str, Factory] = {"memory": _memory}


@pytest.fixture(params=sorted(BROKERS))
async def make_brokers(request: pytest.FixtureRequest) -> AsyncIterator[Factory]:
    made: list[Broker] = []

    async def make(n: int) -> list[Broker]:
        brokers = await BROKERS[request.param](n)
        made.extend(brokers)
        return brokers

    yield make
    for b in made:
        await b.stop()


class Collector:
    """A handler that records (channel, payload) and lets a test wait for a count."""

    def __init__(self) -> None:
        self.items: list[tuple[str, bytes]] = []
        self._changed = asyncio.Event()

    def __call__(self, channel: str, payload: bytes) -> None:
        self.items.append((channel, payload))
        self._changed.set()

    async def wait(self, count: int, timeout: float = 5.0) -> list[tuple[str, bytes]]:
        async with asyncio.timeout(timeout):
            while len(self.items) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.items

    async def settle(self, marker_broker: Broker, channel: str) -> None:
        """Wait until everything published before now on ``channel`` has arrived, by
        publishing a marker and waiting for it (a subscriber sees a publisher's order)."""
        marker = b"\x00marker\x00" + str(id(self)).encode()
        await marker_broker.publish(channel, marker)
        async with asyncio.timeout(5.0):
            while (channel, marker) not in self.items:
                self._changed.clear()
                await self._changed.wait()
        self.items.remove((channel, marker))


async def test_delivers_to_every_subscribed_instance_including_the_publisher(
    make_brokers: Factory,
) -> None:
    a, b, c = await make_brokers(3)
    got_a, got_b, got_c = Collector(), Collector(), Collector()
    await a.subscribe("ch", got_a)
    await b.subscribe("ch", got_b)
    await c.subscribe("other", got_c)

    await a.publish("ch", b"hello")

    assert await got_a.wait(1) == [("ch", b"hello")]
    assert await got_b.wait(1) == [("ch", b"hello")]
    await got_c.settle(c, "other")
    assert got_c.items == [], "an instance not subscribed to the channel receives nothing"


async def test_exactly_once_and_in_publish_order_per_publisher(make_brokers: Factory) -> None:
    a, b = await make_brokers(2)
    got = Collector()
    await b.subscribe("ch", got)
    payloads = [i.to_bytes(4, "big") for i in range(2000)]
    for p in payloads:
        await a.publish("ch", p)
    items = await got.wait(len(payloads))
    await got.settle(a, "ch")
    assert [p for _, p in items] == payloads


async def test_binary_payloads_arrive_intact(make_brokers: Factory) -> None:
    a, b = await make_brokers(2)
    got = Collector()
    await b.subscribe("ch", got)
    payload = bytes(range(256)) * 64
    await a.publish("ch", payload)
    assert (await got.wait(1))[0][1] == payload


async def test_unsubscribe_stops_delivery_and_unknown_channels_are_ignored(
    make_brokers: Factory,
) -> None:
    a, b = await make_brokers(2)
    got_b, got_a = Collector(), Collector()
    await b.subscribe("ch", got_b)
    await a.subscribe("ch", got_a)
    await a.publish("ch", b"1")
    await got_b.wait(1)
    await b.unsubscribe("ch")
    await b.unsubscribe("never-subscribed")
    await a.publish("ch", b"2")
    await got_a.wait(2)  # the publisher still gets it, so it went out
    assert got_b.items == [("ch", b"1")]


async def test_subscribing_twice_replaces_the_handler(make_brokers: Factory) -> None:
    (a,) = await make_brokers(1)
    first, second = Collector(), Collector()
    await a.subscribe("ch", first)
    await a.subscribe("ch", second)
    await a.publish("ch", b"x")
    await second.wait(1)
    await second.settle(a, "ch")
    assert first.items == []
    assert second.items == [("ch", b"x")]


async def test_channels_are_independent(make_brokers: Factory) -> None:
    a, b = await make_brokers(2)
    one, two = Collector(), Collector()
    await b.subscribe("one", one)
    await b.subscribe("two", two)
    await a.publish("one", b"1")
    await a.publish("two", b"2")
    assert await one.wait(1) == [("one", b"1")]
    assert await two.wait(1) == [("two", b"2")]


async def test_healthy_while_running(make_brokers: Factory) -> None:
    (a,) = await make_brokers(1)
    assert await a.healthy()
    await a.stop()
    assert not await a.healthy()

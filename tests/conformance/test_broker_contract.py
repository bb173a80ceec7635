"""The broker contract (see ``parley.broker.base``), run against every broker implementation.

A new broker joins by adding a factory to ``BROKERS``: a function returning ``n`` started
instances that talk to each other as separate processes would. Channel names are unique per
test, because a real Redis may be shared with other test runs.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from parley.broker.base import Broker
from parley.broker.memory import MemoryBroker, MemoryBus
from parley.broker.redis import RedisBroker
from tests.conftest import redis_url_or_skip

Factory = Callable[[int], Awaitable[list[Broker]]]


async def _memory(n: int) -> list[Broker]:
    bus = MemoryBus()
    brokers: list[Broker] = [MemoryBroker(bus) for _ in range(n)]
    for b in brokers:
        await b.start()
    return brokers


async def _redis(n: int, *, sharded: bool = False) -> list[Broker]:
    url = redis_url_or_skip()
    brokers: list[Broker] = [RedisBroker(url, sharded=sharded) for _ in range(n)]
    for b in brokers:
        await b.start()
    return brokers


async def _redis_sharded(n: int) -> list[Broker]:
    return await _redis(n, sharded=True)


BROKERS: dict[str, Factory] = {
    "memory": _memory,
    "redis": _redis,
    "redis-sharded": _redis_sharded,
}


@pytest.fixture
def ch() -> Callable[[str], str]:
    """Unique channel names for one test."""
    prefix = f"test:{uuid.uuid4().hex}:"
    return lambda name: prefix + name


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
    make_brokers: Factory, ch: Callable[[str], str]
) -> None:
    a, b, c = await make_brokers(3)
    got_a, got_b, got_c = Collector(), Collector(), Collector()
    await a.subscribe(ch("ch"), got_a)
    await b.subscribe(ch("ch"), got_b)
    await c.subscribe(ch("other"), got_c)

    await a.publish(ch("ch"), b"hello")

    assert await got_a.wait(1) == [(ch("ch"), b"hello")]
    assert await got_b.wait(1) == [(ch("ch"), b"hello")]
    await got_c.settle(c, ch("other"))
    assert got_c.items == [], "an instance not subscribed to the channel receives nothing"


async def test_exactly_once_and_in_publish_order_per_publisher(
    make_brokers: Factory, ch: Callable[[str], str]
) -> None:
    a, b = await make_brokers(2)
    got = Collector()
    await b.subscribe(ch("ch"), got)
    payloads = [i.to_bytes(4, "big") for i in range(2000)]
    for p in payloads:
        await a.publish(ch("ch"), p)
    items = await got.wait(len(payloads))
    await got.settle(a, ch("ch"))
    assert [p for _, p in items] == payloads


async def test_binary_payloads_arrive_intact(
    make_brokers: Factory, ch: Callable[[str], str]
) -> None:
    a, b = await make_brokers(2)
    got = Collector()
    await b.subscribe(ch("ch"), got)
    payload = bytes(range(256)) * 64
    await a.publish(ch("ch"), payload)
    assert (await got.wait(1))[0][1] == payload


async def test_unsubscribe_stops_delivery_and_unknown_channels_are_ignored(
    make_brokers: Factory, ch: Callable[[str], str]
) -> None:
    a, b = await make_brokers(2)
    got_b, got_a = Collector(), Collector()
    await b.subscribe(ch("ch"), got_b)
    await a.subscribe(ch("ch"), got_a)
    await a.publish(ch("ch"), b"1")
    await got_b.wait(1)
    await b.unsubscribe(ch("ch"))
    await b.unsubscribe(ch("never-subscribed"))
    await a.publish(ch("ch"), b"2")
    await got_a.wait(2)  # the publisher still gets it, so it went out
    assert got_b.items == [(ch("ch"), b"1")]


async def test_subscribing_twice_replaces_the_handler(
    make_brokers: Factory, ch: Callable[[str], str]
) -> None:
    (a,) = await make_brokers(1)
    first, second = Collector(), Collector()
    await a.subscribe(ch("ch"), first)
    await a.subscribe(ch("ch"), second)
    await a.publish(ch("ch"), b"x")
    await second.wait(1)
    await second.settle(a, ch("ch"))
    assert first.items == []
    assert second.items == [(ch("ch"), b"x")]


async def test_channels_are_independent(make_brokers: Factory, ch: Callable[[str], str]) -> None:
    a, b = await make_brokers(2)
    one, two = Collector(), Collector()
    await b.subscribe(ch("one"), one)
    await b.subscribe(ch("two"), two)
    await a.publish(ch("one"), b"1")
    await a.publish(ch("two"), b"2")
    assert await one.wait(1) == [(ch("one"), b"1")]
    assert await two.wait(1) == [(ch("two"), b"2")]


async def test_healthy_while_running(make_brokers: Factory, ch: Callable[[str], str]) -> None:
    (a,) = await make_brokers(1)
    assert await a.healthy()
    await a.stop()
    assert not await a.healthy()

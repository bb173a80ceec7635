"""The quota store contract (see ``parley.governance.quotas.base``), for every implementation."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from parley.governance.quotas.base import QuotaStore
from parley.governance.quotas.memory import MemoryQuotaStore
from parley.governance.quotas.redis import RedisQuotaStore
from tests.conftest import redis_url_or_skip

Factory = Callable[[], Awaitable[QuotaStore]]


@pytest.fixture(params=["memory", "redis"])
async def stores(request: pytest.FixtureRequest) -> AsyncIterator[Factory]:
    """Makes stores that share state like processes do (Redis) or one shared store (memory)."""
    made: list[QuotaStore] = []
    shared = MemoryQuotaStore()

    async def make() -> QuotaStore:
        if request.param == "memory":
            return shared
        store = RedisQuotaStore(redis_url_or_skip())
        await store.start()
        made.append(store)
        return store

    yield make
    for store in made:
        await store.stop()


def key() -> str:
    return "test-" + uuid.uuid4().hex


async def test_hit_counts_up_to_the_limit_then_says_how_long_to_wait(stores: Factory) -> None:
    store, k = await stores(), key()
    assert [await store.hit(k, 60, 3) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = await store.hit(k, 60, 3)
    assert 0 < wait <= 60
    assert await store.count(k, 60) == 3  # the refused event was not counted


async def test_concurrent_hits_from_two_processes_never_exceed_the_limit(stores: Factory) -> None:
    a, b, k = await stores(), await stores(), key()
    results = await asyncio.gather(*[(a if i % 2 else b).hit(k, 60, 5) for i in range(40)])
    assert sum(1 for r in results if r == 0.0) == 5
    assert await a.count(k, 60) == 5


async def test_keys_and_windows_are_independent(stores: Factory) -> None:
    store, k1, k2 = await stores(), key(), key()
    assert await store.hit(k1, 60, 1) == 0.0
    assert await store.hit(k1, 60, 1) > 0
    assert await store.hit(k2, 60, 1) == 0.0
    assert await store.count(key(), 60) == 0


async def test_a_short_window_frees_up(stores: Factory) -> None:
    store, k = await stores(), key()
    assert await store.hit(k, 0.2, 1) == 0.0
    wait = await store.hit(k, 0.2, 1)
    assert 0 < wait <= 0.2
    # The window ends on the clock, so wait for the clock: the retry-after it gave.
    await asyncio.sleep(wait)
    assert await store.hit(k, 0.2, 1) == 0.0


async def test_acquire_admits_up_to_the_limit_and_release_frees_a_slot(stores: Factory) -> None:
    a, b, k = await stores(), await stores(), key()
    assert await a.acquire(k, "c1", 2, 30)
    assert await b.acquire(k, "c2", 2, 30)
    assert not await a.acquire(k, "c3", 2, 30)
    assert await a.acquire(k, "c1", 2, 30)  # a member already in renews
    assert await b.size(k) == 2
    await a.release(k, "c1")
    await a.release(k, "absent")
    assert await b.size(k) == 1
    assert await b.acquire(k, "c3", 2, 30)


async def test_members_expire_unless_renewed(stores: Factory) -> None:
    store, k = await stores(), key()
    assert await store.acquire(k, "kept", 5, 0.3)
    assert await store.acquire(k, "dropped", 5, 0.3)
    async with asyncio.timeout(5):
        while await store.size(k) != 1:
            await store.renew(k, ["kept"], 0.3)
            await asyncio.sleep(0.05)
    assert await store.acquire(k, "other", 2, 30)
    assert not await store.acquire(k, "third", 2, 30)

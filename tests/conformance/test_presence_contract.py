"""The presence store contract (see ``parley.presence.base``), for every implementation."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from parley.presence.base import Member, PresenceStore
from parley.presence.memory import MemoryPresenceStore
from parley.presence.redis import RedisPresenceStore
from tests.conftest import redis_url_or_skip

Factory = Callable[[float], Awaitable[PresenceStore]]


async def _memory(ttl: float) -> PresenceStore:
    return MemoryPresenceStore(ttl)


async def _redis(ttl: float) -> PresenceStore:
    store = RedisPresenceStore(redis_url_or_skip(), ttl)
    await store.start()
    return store


STORES: dict[str, Factory] = {"memory": _memory, "redis": _redis}


@pytest.fixture(params=sorted(STORES))
async def make_store(request: pytest.FixtureRequest) -> AsyncIterator[Factory]:
    made: list[PresenceStore] = []

    async def make(ttl: float = 30.0) -> PresenceStore:
        store = await STORES[request.param](ttl)
        made.append(store)
        return store

    yield make
    for store in made:
        await store.stop()


@pytest.fixture
def key() -> str:
    return f"test:{uuid.uuid4().hex}:presence"


ANN_1 = Member("ann", "Ann", "human", "node1:c1")
ANN_2 = Member("ann", "Ann", "human", "node2:c7")
BOT = Member("bot", "Helper", "bot", "node1:c2")


async def test_users_appear_with_their_first_member_and_leave_with_their_last(
    make_store: Factory, key: str
) -> None:
    store = await make_store()
    assert (await store.update(key, add=ANN_1)).joined == [ANN_1.user()]
    assert (await store.update(key, add=ANN_2)).joined == [], "already present"
    assert (await store.update(key, add=BOT)).joined == [BOT.user()]
    assert sorted(u["user_id"] for u in await store.present(key)) == ["ann", "bot"]
    assert (await store.update(key, remove=ANN_1)).left == [], "ann is still on node2"
    assert (await store.update(key, remove=ANN_2)).left == ["ann"]
    assert await store.present(key) == [BOT.user()]
    assert (await store.update(key, remove=BOT)).left == ["bot"]
    assert await store.present(key) == []


async def test_members_not_refreshed_expire_and_are_reported_once(
    make_store: Factory, key: str
) -> None:
    store = await make_store(0.3)
    await store.update(key, add=ANN_1)
    await store.update(key, add=BOT)
    # bot's process stays alive and refreshes; ann's process "crashed"
    for _ in range(3):
        await asyncio.sleep(0.15)  # the passage of time is what this test is about
        await store.refresh([(key, BOT)])
    assert [u["user_id"] for u in await store.present(key)] == ["bot"]
    assert (await store.update(key)).left == ["ann"]
    assert (await store.update(key)).left == [], "reported exactly once"


async def test_concurrent_processes_report_each_arrival_once(key: str) -> None:
    """Only a shared store has concurrent processes: the Redis one."""
    one, two = await _redis(30.0), await _redis(30.0)
    try:
        changes = await asyncio.gather(
            *(
                store.update(key, add=Member("ann", "Ann", "human", f"n{i}:c"))
                for i, store in enumerate([one, two] * 5)
            )
        )
        assert sum(len(c.joined) for c in changes) == 1
    finally:
        await one.stop()
        await two.stop()

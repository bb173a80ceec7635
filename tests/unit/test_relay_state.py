"""The stream-state store contract, run against the memory and the Redis implementation."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator

import pytest

from parley.relay.state import (
    APPEND_LOST,
    APPEND_MISSING,
    BeginStatus,
    BusyPolicy,
    StreamInfo,
    StreamStore,
)
from parley.relay.state.memory import MemoryStreamStore
from parley.relay.state.redis import RedisStreamStore
from tests.conftest import redis_url_or_skip

TTL = 0.3


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[StreamStore]:
    s: StreamStore
    if request.param == "memory":
        s = MemoryStreamStore(ttl=TTL)
    else:
        s = RedisStreamStore(redis_url_or_skip(), ttl=TTL)
    await s.start()
    yield s
    await s.stop()


@pytest.fixture
def tenant() -> str:
    return "t" + secrets.token_hex(6)  # tests share one Redis: keep them apart


def info(tenant: str, n: int, *, session: str = "s1", assistant: str = "a1") -> StreamInfo:
    return StreamInfo(
        stream_id=f"stream-{n}",
        tenant_id=tenant,
        session_id=session,
        assistant_id=assistant,
        assistant_name="helper",
        assistant_user="assistant.a1",
        provider="scripted",
        model="scripted",
        prompt_id=f"m{n}",
        asked_by="alice",
        created_at=time.time() + n / 1000,
    )


async def begin(
    store: StreamStore,
    i: StreamInfo,
    policy: BusyPolicy = BusyPolicy.QUEUE,
    *,
    owner: str = "A",
    queue_limit: int = 2,
    tenant_limit: int = 10,
):  # type: ignore[no-untyped-def]
    return await store.begin(
        i, owner=owner, policy=policy, queue_limit=queue_limit, tenant_limit=tenant_limit
    )


async def test_slot_queue_and_hand_over(store: StreamStore, tenant: str) -> None:
    one, two, three, four = (info(tenant, n) for n in range(1, 5))
    assert (await begin(store, one)).status is BeginStatus.STARTED
    r2, r3 = await begin(store, two), await begin(store, three)
    assert (r2.status, r2.position, r3.position) == (BeginStatus.QUEUED, 1, 2)
    full = await begin(store, four)
    assert (full.status, full.holder) == (BeginStatus.BUSY, one.stream_id), "the queue is full"
    assert [i.stream_id for i, _ in await store.active(tenant, "s1")] == [one.stream_id]
    nxt = await store.finish(one, "B")
    assert nxt == two, "the next prompt starts as the slot is freed, atomically"
    renewed = await store.renew("B", [(tenant, two.stream_id)])
    assert not renewed[0].lost, "the process that finished the last one owns the next"
    assert await store.finish(two, "B") == three
    assert await store.finish(three, "B") is None
    assert (await begin(store, four)).status is BeginStatus.STARTED, "the slot is free again"


async def test_reject_interrupt_and_other_slots(store: StreamStore, tenant: str) -> None:
    one, two, three = info(tenant, 1), info(tenant, 2), info(tenant, 3)
    await begin(store, one)
    busy = await begin(store, two, BusyPolicy.REJECT)
    assert (busy.status, busy.holder) == (BeginStatus.BUSY, one.stream_id)
    await begin(store, two)  # queued
    cut = await begin(store, three, BusyPolicy.INTERRUPT)
    assert (cut.status, cut.position, cut.holder) == (BeginStatus.QUEUED, 1, one.stream_id)
    assert cut.dropped == (two,), "an interrupt replaces whatever waited"
    (renewal,) = await store.renew("A", [(tenant, one.stream_id)])
    assert renewal.stop == "interrupted"
    assert await store.finish(one, "A") == three
    other = info(tenant, 4, assistant="a2")
    assert (await begin(store, other)).status is BeginStatus.STARTED, "one slot per assistant"


async def test_tenant_limit(store: StreamStore, tenant: str) -> None:
    assert (await begin(store, info(tenant, 1), tenant_limit=1)).status is BeginStatus.STARTED
    limited = await begin(store, info(tenant, 2, assistant="a2"), tenant_limit=1)
    assert limited.status is BeginStatus.LIMIT
    other = info("x" + tenant, 3)
    assert (await begin(store, other, tenant_limit=1)).status is BeginStatus.STARTED


async def test_text_offsets_are_utf8_bytes(store: StreamStore, tenant: str) -> None:
    one = info(tenant, 1)
    await begin(store, one)
    assert await store.append(tenant, one.stream_id, "né") == 3
    assert await store.append(tenant, one.stream_id, "日本 😀") == 3 + 6 + 1 + 4
    got = await store.get(tenant, one.stream_id)
    assert got == (one, "né日本 😀")
    assert await store.active(tenant, "s1") == [(one, "né日本 😀")]
    assert await store.active(tenant, "other") == []
    await store.finish(one, "A")
    assert await store.get(tenant, one.stream_id) is None
    assert await store.append(tenant, one.stream_id, "late") == APPEND_LOST


async def test_stop_requests(store: StreamStore, tenant: str) -> None:
    one, two = info(tenant, 1), info(tenant, 2)
    await begin(store, one)
    await begin(store, two)
    assert await store.request_stop(tenant, "wrong-session", one.stream_id, "c") == (
        "unknown",
        None,
    )
    assert await store.request_stop(tenant, "s1", one.stream_id, "cancelled:bob") == (
        "running",
        one,
    )
    (r,) = await store.renew("A", [(tenant, one.stream_id)])
    assert r.stop == "cancelled:bob"
    assert await store.request_stop(tenant, "s1", two.stream_id, "c") == ("dequeued", two)
    assert await store.finish(one, "A") is None, "a dequeued prompt never starts"
    assert (await store.request_stop(tenant, "s1", "nope", "c"))[0] == "unknown"


async def test_leases_lapse_and_exactly_one_reaper_claims(store: StreamStore, tenant: str) -> None:
    one = info(tenant, 1)
    await begin(store, one, owner="dead")
    await store.append(tenant, one.stream_id, "partial")
    assert await store.claim(tenant, one.stream_id, "B") is None, "not lapsed yet"
    deadline = time.monotonic() + 5
    while (tenant, one.stream_id) not in await store.expired():
        assert time.monotonic() < deadline, "the lease never lapsed"
        await asyncio.sleep(TTL / 4)  # waiting for time itself to pass
    claims = await asyncio.gather(
        store.claim(tenant, one.stream_id, "B"), store.claim(tenant, one.stream_id, "C")
    )
    assert sorted(c is not None for c in claims) == [False, True]
    (old,) = await store.renew("dead", [(tenant, one.stream_id)])
    assert old.lost, "the late owner learns it lost the stream"
    assert (tenant, one.stream_id) not in await store.expired()
    assert (await store.get(tenant, one.stream_id)) == (one, "partial")


async def test_redis_forgetting_a_stream_is_repaired(tenant: str) -> None:
    store = RedisStreamStore(redis_url_or_skip(), ttl=5)
    await store.start()
    try:
        one = info(tenant, 1)
        await begin(store, one)
        await store.append(tenant, one.stream_id, "abc")
        keys = await store._r.keys(f"parley:relay:{{{tenant}}}:*")
        await store._r.delete(*keys)  # what a Redis restart without persistence does
        (r,) = await store.renew("A", [(tenant, one.stream_id)])
        assert r.missing
        assert not r.lost
        assert await store.append(tenant, one.stream_id, "d") == APPEND_MISSING
        await store.restore(one, "A", "abcd")
        assert await store.get(tenant, one.stream_id) == (one, "abcd")
        assert await store.append(tenant, one.stream_id, "e") == 5
        await store.finish(one, "A")
        await store.restore(one, "A", "zombie")
        assert await store.get(tenant, one.stream_id) is None, "a finished stream stays finished"
    finally:
        await store.stop()

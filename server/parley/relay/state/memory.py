"""The stream-state store in memory: one process (the embedded default), or several relays in
one test process sharing an instance. Every method runs without awaiting, so each is atomic."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

from parley.relay.state.base import (
    APPEND_LOST,
    BeginResult,
    BeginStatus,
    BusyPolicy,
    Renewal,
    StreamInfo,
)


@dataclass(slots=True)
class _Stream:
    info: StreamInfo
    owner: str
    expires: float
    text: bytearray = field(default_factory=bytearray)
    stop: str | None = None


class MemoryStreamStore:
    def __init__(self, ttl: float = 15.0, max_age: float = 24 * 3600.0) -> None:
        self.ttl = ttl
        self.max_age = max_age
        self._streams: dict[tuple[str, str], _Stream] = {}
        self._slots: dict[tuple[str, str], str] = {}  # (tenant, slot) -> stream id
        self._queues: dict[tuple[str, str], deque[StreamInfo]] = {}

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def _run(self, info: StreamInfo, owner: str) -> None:
        self._streams[(info.tenant_id, info.stream_id)] = _Stream(
            info, owner, time.time() + self.ttl
        )
        self._slots[(info.tenant_id, info.slot)] = info.stream_id

    async def begin(
        self,
        info: StreamInfo,
        *,
        owner: str,
        policy: BusyPolicy,
        queue_limit: int,
        tenant_limit: int,
    ) -> BeginResult:
        slot = (info.tenant_id, info.slot)
        holder = self._slots.get(slot)
        if holder is not None and (info.tenant_id, holder) not in self._streams:
            holder = None  # the holder ended without finish() (only after max_age in Redis)
        if holder is None:
            now = time.time()
            running = sum(
                1 for (t, _), s in self._streams.items() if t == info.tenant_id and s.expires > now
            )
            if running >= tenant_limit:
                return BeginResult(BeginStatus.LIMIT)
            self._run(info, owner)
            return BeginResult(BeginStatus.STARTED)
        if policy is BusyPolicy.REJECT:
            return BeginResult(BeginStatus.BUSY, holder=holder)
        queue = self._queues.setdefault(slot, deque())
        if policy is BusyPolicy.INTERRUPT:
            dropped = tuple(queue)
            queue.clear()
            current = self._streams[(info.tenant_id, holder)]
            current.stop = current.stop or "interrupted"
            queue.append(info)
            return BeginResult(BeginStatus.QUEUED, position=1, holder=holder, dropped=dropped)
        if len(queue) >= queue_limit:
            return BeginResult(BeginStatus.BUSY, holder=holder)
        queue.append(info)
        return BeginResult(BeginStatus.QUEUED, position=len(queue))

    async def append(self, tenant_id: str, stream_id: str, text: str) -> int:
        stream = self._streams.get((tenant_id, stream_id))
        if stream is None:
            return APPEND_LOST  # memory never forgets: a missing stream was finished
        stream.text += text.encode()
        return len(stream.text)

    async def restore(self, info: StreamInfo, owner: str, text: str) -> None:
        self._run(info, owner)
        self._streams[(info.tenant_id, info.stream_id)].text = bytearray(text.encode())

    async def get(self, tenant_id: str, stream_id: str) -> tuple[StreamInfo, str] | None:
        stream = self._streams.get((tenant_id, stream_id))
        return (stream.info, stream.text.decode()) if stream is not None else None

    async def active(self, tenant_id: str, session_id: str) -> list[tuple[StreamInfo, str]]:
        found = [
            (s.info, s.text.decode())
            for (t, _), s in self._streams.items()
            if t == tenant_id and s.info.session_id == session_id
        ]
        return sorted(found, key=lambda pair: (pair[0].created_at, pair[0].stream_id))

    async def renew(self, owner: str, streams: list[tuple[str, str]]) -> list[Renewal]:
        out: list[Renewal] = []
        expires = time.time() + self.ttl
        for tenant_id, stream_id in streams:
            stream = self._streams.get((tenant_id, stream_id))
            if stream is None or stream.owner != owner:
                out.append(Renewal(tenant_id, stream_id, None, lost=True))  # finished or claimed
                continue
            stream.expires = expires
            out.append(Renewal(tenant_id, stream_id, stream.stop))
        return out

    async def request_stop(
        self, tenant_id: str, session_id: str, stream_id: str, reason: str
    ) -> tuple[str, StreamInfo | None]:
        stream = self._streams.get((tenant_id, stream_id))
        if stream is not None and stream.info.session_id == session_id:
            stream.stop = stream.stop or reason
            return "running", stream.info
        for (tenant, _), queue in self._queues.items():
            if tenant != tenant_id:
                continue
            for queued in queue:
                if queued.stream_id == stream_id and queued.session_id == session_id:
                    queue.remove(queued)
                    return "dequeued", queued
        return "unknown", None

    async def finish(self, info: StreamInfo, next_owner: str) -> StreamInfo | None:
        self._streams.pop((info.tenant_id, info.stream_id), None)
        slot = (info.tenant_id, info.slot)
        if self._slots.get(slot) != info.stream_id:
            return None
        queue = self._queues.get(slot)
        if queue:
            nxt = queue.popleft()
            if not queue:
                del self._queues[slot]
            self._run(nxt, next_owner)
            return nxt
        del self._slots[slot]
        return None

    async def expired(self) -> list[tuple[str, str]]:
        now = time.time()
        return [key for key, s in self._streams.items() if s.expires <= now]

    async def claim(self, tenant_id: str, stream_id: str, owner: str) -> StreamInfo | None:
        stream = self._streams.get((tenant_id, stream_id))
        if stream is None or stream.expires > time.time():
            return None
        stream.owner = owner
        stream.expires = time.time() + self.ttl
        return stream.info

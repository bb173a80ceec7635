"""The stream-state store: what every process must know about running generations.

A generation ("stream") is owned by the process that runs it. The store holds, cluster-wide:

* the **text so far** of every running stream (appended by the owner, read for snapshots), so a
  client that subscribes or reconnects on any process gets it and then the live deltas;
* a **lease** per running stream, renewed by its owner; a stream whose lease lapsed belongs to a
  process that died, and any process's reaper may **claim** it and store its partial text;
* one **slot** per (session, assistant): at most one stream of an assistant runs in a session at
  a time; a prompt that finds the slot taken is queued, interrupts the holder, or is refused,
  by the assistant's busy policy; the **queue** is handed on atomically when the holder ends;
* **stop requests**, which the owner sees on its next renewal (a broker message usually
  reaches it sooner; the store is what makes a stop survive a lost message);
* the number of streams a **tenant** runs, for its concurrency limit.

Contract (``tests/unit/test_relay_state.py`` runs it against both implementations):

* ``begin`` is atomic: of two racing prompts for one free slot exactly one starts.
* ``append`` returns the new length in UTF-8 bytes. Offsets are UTF-8 byte offsets: that is
  what Redis ``APPEND`` counts, and clients never need to count themselves.
* ``finish`` removes the stream and, atomically, either frees the slot or starts the next
  queued stream under the caller as owner (so a queued prompt is never stranded).
* ``claim`` succeeds for exactly one caller, and only once the lease has lapsed.
* Every key expires by itself eventually (``max_age``), even if every process died.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any, Protocol

import orjson


class BusyPolicy(StrEnum):
    """What a prompt does when its assistant is already answering in the session."""

    QUEUE = "queue"  # wait for the current answer, then run (bounded queue)
    INTERRUPT = "interrupt"  # stop the current answer (stored as cancelled), then run
    REJECT = "reject"  # refuse the prompt (assistant_busy)


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """What identifies a stream and what the relay needs to run or finish it anywhere."""

    stream_id: str
    tenant_id: str
    session_id: str
    assistant_id: str
    assistant_name: str
    assistant_user: str
    provider: str
    model: str
    prompt_id: str | None
    asked_by: str
    created_at: float  # epoch seconds

    def dumps(self) -> str:
        return orjson.dumps(asdict(self)).decode()

    @classmethod
    def loads(cls, raw: str | bytes) -> StreamInfo:
        data: dict[str, Any] = orjson.loads(raw)
        return cls(**data)

    @property
    def slot(self) -> str:
        """The (session, assistant) slot this stream runs in."""
        return f"{self.session_id}:{self.assistant_id}"

    def public(self) -> dict[str, Any]:
        """The stream's description in events and snapshots."""
        return {
            "stream_id": self.stream_id,
            "assistant": {
                "id": self.assistant_id,
                "name": self.assistant_name,
                "user_id": self.assistant_user,
            },
            "prompt_id": self.prompt_id,
            "asked_by": self.asked_by,
            "provider": self.provider,
            "model": self.model,
        }


class BeginStatus(StrEnum):
    STARTED = "started"
    QUEUED = "queued"
    BUSY = "busy"  # refused by the busy policy or a full queue
    LIMIT = "limit"  # the tenant already runs its maximum number of streams


@dataclass(frozen=True, slots=True)
class BeginResult:
    status: BeginStatus
    position: int | None = None  # in the queue, 1 = next
    holder: str | None = None  # the stream to stop (interrupt policy)
    dropped: tuple[StreamInfo, ...] = ()  # queued streams an interrupt replaced


@dataclass(frozen=True, slots=True)
class Renewal:
    """One owned stream after a renewal.

    ``lost``: another process claimed it (this process was presumed dead), or it was already
    finished; the owner must stop without storing anything. ``missing``: the store forgot it
    (a Redis restart); the owner puts it back with :meth:`StreamStore.restore`.
    """

    tenant_id: str
    stream_id: str
    stop: str | None
    lost: bool = False
    missing: bool = False


APPEND_LOST = -2  # append(): the stream was finished or claimed elsewhere
APPEND_MISSING = -1  # append(): the store forgot the stream (restore it)


class StreamStore(Protocol):
    ttl: float  # lease seconds
    max_age: float  # seconds after which every key of a stream expires regardless

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def begin(
        self,
        info: StreamInfo,
        *,
        owner: str,
        policy: BusyPolicy,
        queue_limit: int,
        tenant_limit: int,
    ) -> BeginResult:
        """Start ``info`` in its slot, or queue it, or refuse it (see :class:`BeginStatus`).
        With the interrupt policy and a busy slot, the holder gets a stop request with reason
        ``interrupted``, the queue becomes just this stream, and ``holder`` names the holder."""

    async def append(self, tenant_id: str, stream_id: str, text: str) -> int:
        """Append to the stream's text; return its new length in UTF-8 bytes, or
        ``APPEND_LOST`` / ``APPEND_MISSING`` (see :class:`Renewal`)."""

    async def restore(self, info: StreamInfo, owner: str, text: str) -> None:
        """Put a running stream back with its full text (after the store forgot it)."""

    async def get(self, tenant_id: str, stream_id: str) -> tuple[StreamInfo, str] | None:
        """A running stream and its text so far, or None."""

    async def active(self, tenant_id: str, session_id: str) -> list[tuple[StreamInfo, str]]:
        """The running streams of a session with their text so far, oldest first."""

    async def renew(self, owner: str, streams: list[tuple[str, str]]) -> list[Renewal]:
        """Extend the leases of ``(tenant, stream)`` pairs ``owner`` runs; report stop requests
        and streams another process claimed meanwhile."""

    async def request_stop(
        self, tenant_id: str, session_id: str, stream_id: str, reason: str
    ) -> tuple[str, StreamInfo | None]:
        """Ask a stream to stop. Returns ``("running", info)`` (its owner will stop it),
        ``("dequeued", info)`` (it was waiting in a queue and is now removed) or
        ``("unknown", None)``."""

    async def finish(self, info: StreamInfo, next_owner: str) -> StreamInfo | None:
        """Forget a stream that ended. If its slot has a queue, the next stream starts now,
        owned by ``next_owner``, and is returned; otherwise the slot is freed."""

    async def expired(self) -> list[tuple[str, str]]:
        """``(tenant, stream)`` pairs whose lease has lapsed."""

    async def claim(self, tenant_id: str, stream_id: str, owner: str) -> StreamInfo | None:
        """Take over a stream whose lease lapsed; None if it is not lapsed (or gone)."""

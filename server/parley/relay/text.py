"""Small pure helpers for streamed text: surrogate pairs split across deltas, and coalescing."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable

_SURROGATE = re.compile("[\ud800-\udfff]")


class SurrogateJoiner:
    """Rejoins UTF-16 surrogate pairs that a provider split across two deltas.

    JSON may escape an emoji as ``\\ud83d\\ude00``; a provider that cuts its chunks between the
    two halves sends two strings that are each invalid Unicode. A trailing high surrogate is
    held until the next piece; pairs are joined; a lone half becomes U+FFFD.
    """

    def __init__(self) -> None:
        self._held = ""

    def feed(self, text: str) -> str:
        """The repaired text to pass on now (a trailing high surrogate is kept back)."""
        text = self._held + text
        self._held = ""
        if not _SURROGATE.search(text):
            return text
        if "\ud800" <= text[-1] <= "\udbff":
            self._held, text = text[-1], text[:-1]
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")

    def flush(self) -> str:
        """Whatever is held at the end of the stream (a lone half, as U+FFFD)."""
        held, self._held = self._held, ""
        return "\ufffd" if held else ""


class Coalescer:
    """Collects text and hands it to ``flush`` in batches: when ``max_bytes`` are waiting, or
    ``interval`` seconds after the first waiting piece, whichever comes first. One flush runs
    at a time, in order; the producer never waits for one."""

    def __init__(
        self, flush: Callable[[str], Awaitable[None]], *, interval: float, max_bytes: int
    ) -> None:
        self._flush = flush
        self._interval = interval
        self._max = max_bytes
        self._pending: list[str] = []
        self._bytes = 0
        self._wake = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None
        self._closing = False
        self._task = asyncio.get_running_loop().create_task(self._run())

    def add(self, text: str, *, now: bool = False) -> None:
        """Queue ``text``; ``now`` sends it without waiting (the first token)."""
        if not text:
            return
        self._pending.append(text)
        self._bytes += len(text.encode())
        if now or self._bytes >= self._max or self._interval <= 0:
            self._wake.set()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._interval, self._wake.set)

    async def _run(self) -> None:
        while True:
            if not (self._closing and self._pending):
                await self._wake.wait()
            self._wake.clear()
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if self._pending:
                text = "".join(self._pending)
                self._pending.clear()
                self._bytes = 0
                await self._flush(text)  # must not raise: it handles its own failures
            if self._closing and not self._pending:
                return

    async def close(self) -> None:
        """Flush what is waiting and stop."""
        self._closing = True
        self._wake.set()
        await self._task

    def abort(self) -> None:
        """Stop without flushing (the stream was taken over elsewhere)."""
        if self._timer is not None:
            self._timer.cancel()
        self._task.cancel()

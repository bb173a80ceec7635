"""A background reader of every tenant's feed, in commit order, on one process at a time.

The reader's place (``feed_consumers``) and the right to move it are held as a lease: a
process takes the row when it is free or its lease expired, renews it on every step, and
moves the cursor only while it still owns the row. So with several processes exactly one
consumes at any moment, and a crashed one is replaced after ``lease_ttl``.

Delivery to the handler is at least once: the cursor moves after the handler returns, so a
crash in between hands the same items to the next owner. Handlers are idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import Awaitable, Callable
from datetime import timedelta
from functools import partial

import structlog
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from parley.ids import utcnow
from parley.integrations.signal import FeedSignal, wait
from parley.storage import feed_log
from parley.storage import models as m
from parley.storage.database import Database
from parley.storage.feed_log import FeedCursor, FeedItem

log = structlog.get_logger("parley.integrations")

Handler = Callable[[list[FeedItem]], Awaitable[None]]
HELD_BACK_RETRY = 0.1  # seconds: committed rows wait for an older transaction to end


class FeedConsumer:
    """Runs ``handler`` over batches of feed items; start it with :meth:`start`."""

    def __init__(
        self,
        db: Database,
        name: str,
        handler: Handler,
        signal: FeedSignal,
        *,
        lease_ttl: float = 15.0,
        poll_interval: float = 1.0,
        batch: int = 200,
    ) -> None:
        self.db = db
        self.name = name
        self.handler = handler
        self.signal = signal
        self.lease_ttl = lease_ttl
        self.poll_interval = poll_interval
        self.batch = batch
        self.owner = f"{os.getpid()}-{secrets.token_hex(6)}"
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"feed-consumer-{self.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(Exception):
            await self.db.write(self._release)

    async def _run(self) -> None:
        failures = 0
        while True:
            wake = self.signal.waiter()
            try:
                cursor = await self.db.write(self._acquire)
                if cursor is None:  # another process holds it
                    await asyncio.sleep(self.lease_ttl / 3)
                    continue
                items, held = await self.db.read(partial(self._read, cursor=cursor))
                if items:
                    await self.handler(items)
                    if not await self.db.write(partial(self._advance, cursor=items[-1].cursor)):
                        log.warning("feed consumer lost its lease", consumer=self.name)
                        continue
                failures = 0
                if len(items) < self.batch:
                    await wait(wake, HELD_BACK_RETRY if held else self.poll_interval)
            except asyncio.CancelledError:
                raise
            except Exception:
                failures += 1
                log.exception("feed consumer step failed", consumer=self.name)
                await asyncio.sleep(min(30.0, 0.5 * 2 ** min(failures, 6)))

    def _read(self, s: Session, cursor: FeedCursor) -> tuple[list[FeedItem], bool]:
        items = feed_log.read_after(s, cursor, limit=self.batch)
        if len(items) == self.batch:
            return items, False
        return items, feed_log.held_back(s, items[-1].cursor if items else cursor)

    def _acquire(self, s: Session) -> FeedCursor | None:
        now = utcnow()
        taken = s.execute(
            update(m.FeedConsumer)
            .where(
                m.FeedConsumer.name == self.name,
                or_(
                    m.FeedConsumer.owner == self.owner,
                    m.FeedConsumer.owner.is_(None),
                    m.FeedConsumer.lease_until < now,
                ),
            )
            .values(owner=self.owner, lease_until=now + timedelta(seconds=self.lease_ttl))
        )
        if taken.rowcount != 1:  # type: ignore[attr-defined]
            return None
        row = s.execute(
            select(m.FeedConsumer.txid, m.FeedConsumer.last_id).where(
                m.FeedConsumer.name == self.name
            )
        ).one()
        return FeedCursor(int(row[0]), int(row[1]))

    def _advance(self, s: Session, cursor: FeedCursor) -> bool:
        moved = s.execute(
            update(m.FeedConsumer)
            .where(m.FeedConsumer.name == self.name, m.FeedConsumer.owner == self.owner)
            .values(
                txid=cursor.txid,
                last_id=cursor.id,
                lease_until=utcnow() + timedelta(seconds=self.lease_ttl),
            )
        )
        return bool(moved.rowcount == 1)  # type: ignore[attr-defined]

    def _release(self, s: Session) -> None:
        s.execute(
            update(m.FeedConsumer)
            .where(m.FeedConsumer.name == self.name, m.FeedConsumer.owner == self.owner)
            .values(owner=None, lease_until=None)
        )

"""A background reader of every tenant's feed, in commit order, on one process at a time.

The reader's place (``feed_consumers``) and the right to move it are held as a lease: a
process takes the row when it is free or its lease expired, renews it every few seconds, and
stores the cursor only while it still owns the row. Batches that changed nothing (no webhook
or rule matched) do not cost a write: their cursor is stored with the next renewal. So with
several processes exactly one consumes at any moment, and a crashed one is replaced after
``lease_ttl``.

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

from parley.governance.scoping import all_tenants
from parley.ids import utcnow
from parley.integrations.signal import FeedSignal, wait
from parley.storage import feed_log
from parley.storage import models as m
from parley.storage.database import Database
from parley.storage.feed_log import FeedCursor, FeedItem

# Background workers serve every tenant: each row they take names its own tenant.
SPANS = "a background worker of every tenant"

log = structlog.get_logger("parley.integrations")

# Handles a batch; True when it wrote something, so the cursor is stored at once. Otherwise
# the cursor is stored with the next lease renewal (a crash repeats that batch, harmlessly).
Handler = Callable[[list[FeedItem]], Awaitable[bool]]
HELD_BACK_RETRY = 0.1  # seconds: committed rows wait for an older transaction to end
STORE_INTERVAL = 2.0  # seconds between lease renewals, which also store the cursor
# After a batch, the next read waits this long: under a stream of commits each one signals,
# and reading after every commit cost a storage read per message per consumer. The first
# event after a quiet period is still read at once.
COALESCE = 0.05


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
        self._cursor: FeedCursor | None = None  # ours while we hold the lease; maybe unstored

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"feed-consumer-{self.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(Exception):
            await self.db.write(all_tenants(SPANS, partial(self._release, cursor=self._cursor)))

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        failures = 0
        renew_at = 0.0  # when the lease (and any cursor not yet stored) is written next
        while True:
            wake = self.signal.waiter()
            try:
                if self._cursor is None or loop.time() >= renew_at:
                    self._cursor = await self.db.write(
                        all_tenants(SPANS, partial(self._renew, cursor=self._cursor))
                    )
                    if self._cursor is None:  # another process holds it
                        await asyncio.sleep(self.lease_ttl / 3)
                        continue
                    renew_at = loop.time() + min(self.lease_ttl / 3, STORE_INTERVAL)
                items, held = await self.db.read(
                    all_tenants(SPANS, partial(self._read, cursor=self._cursor))
                )
                if items:
                    wrote = await self.handler(items)
                    self._cursor = items[-1].cursor
                    if wrote:  # store the cursor with what the batch did, at once
                        renew_at = 0.0
                        continue
                failures = 0
                if len(items) < self.batch:
                    if items:
                        await asyncio.sleep(COALESCE)
                    pause = HELD_BACK_RETRY if held else self.poll_interval
                    await wait(wake, min(pause, max(0.0, renew_at - loop.time())))
            except asyncio.CancelledError:
                raise
            except Exception:
                failures += 1
                self._cursor = None  # read the stored one again with the lease
                log.exception("feed consumer step failed", consumer=self.name)
                await asyncio.sleep(min(30.0, 0.5 * 2 ** min(failures, 6)))

    def _read(self, s: Session, cursor: FeedCursor) -> tuple[list[FeedItem], bool]:
        items = feed_log.read_after(s, cursor, limit=self.batch)
        if len(items) == self.batch:
            return items, False
        return items, feed_log.held_back(s, items[-1].cursor if items else cursor)

    def _renew(self, s: Session, cursor: FeedCursor | None) -> FeedCursor | None:
        """Renew the lease and store ``cursor``; or take a free or expired lease and answer
        the stored cursor; None when another process holds it."""
        now = utcnow()
        until = now + timedelta(seconds=self.lease_ttl)
        row = m.FeedConsumer
        if cursor is not None:
            kept = s.execute(
                update(row)
                .where(row.name == self.name, row.owner == self.owner)
                .values(lease_until=until, txid=cursor.txid, last_id=cursor.id)
            )
            if kept.rowcount == 1:  # type: ignore[attr-defined]
                return cursor
            log.warning("feed consumer lost its lease", consumer=self.name)
        taken = s.execute(
            update(row)
            .where(
                row.name == self.name,
                or_(row.owner.is_(None), row.lease_until < now),
            )
            .values(owner=self.owner, lease_until=until)
        )
        if taken.rowcount != 1:  # type: ignore[attr-defined]
            return None
        stored = s.execute(select(row.txid, row.last_id).where(row.name == self.name)).one()
        return FeedCursor(int(stored[0]), int(stored[1]))

    def _release(self, s: Session, cursor: FeedCursor | None) -> None:
        values: dict[str, object] = {"owner": None, "lease_until": None}
        if cursor is not None:
            values.update(txid=cursor.txid, last_id=cursor.id)
        s.execute(
            update(m.FeedConsumer)
            .where(m.FeedConsumer.name == self.name, m.FeedConsumer.owner == self.owner)
            .values(**values)
        )

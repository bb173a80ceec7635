"""Retention of the tenant feed (``event_feed``): rows older than ``feed_retention`` seconds
that every background consumer has read and whose webhook deliveries are done are deleted, a
tenant at a time, in batches, by a periodic job (every ``feed_retention_interval`` seconds).

What is deleted is always a prefix of one tenant's feed in cursor order: the rows before the
first one that must stay, which is the first row of the tenant that is

* younger than the retention period, or
* not yet read by a background consumer (the webhook dispatcher and the automation engine:
  their stored cursors), or
* the event of a delivery still pending to an enabled webhook of the tenant.

The last deleted position of each tenant is its *watermark*, kept in ``feed_consumers`` under
``retention:<hash of the tenant>`` (its cursor columns; no lease). A live reader resuming from
a cursor before its tenant's watermark may have missed events that no longer exist, so it is
told to resync (``live.py``) instead of silently skipping them.

Every process may run the job: two runs at once delete the same rows (a no-op the second time)
and the watermark only moves forward.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

import structlog
from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from parley.config import Settings
from parley.ids import utcnow
from parley.integrations.webhooks import DeliveryStatus
from parley.storage import models as m
from parley.storage.database import Database
from parley.storage.feed_log import FeedCursor

log = structlog.get_logger("parley.integrations")

# The background consumers of runtime.py: a row none of them has read yet must stay.
CONSUMERS = ("webhooks", "automation")
WATERMARK_PREFIX = "retention:"
BATCH = 1000


def watermark_name(tenant_id: str) -> str:
    """The ``feed_consumers`` row holding a tenant's watermark (tenant ids may be longer
    than the 64 characters a name holds, so it is named by a hash)."""
    return WATERMARK_PREFIX + hashlib.sha256(tenant_id.encode()).hexdigest()[:40]


def _before(cursor: FeedCursor) -> ColumnElement[bool]:
    return or_(
        m.FeedEntry.txid < cursor.txid,
        and_(m.FeedEntry.txid == cursor.txid, m.FeedEntry.id < cursor.id),
    )


def watermark(s: Session, tenant_id: str) -> FeedCursor | None:
    """The tenant's last deleted feed position, or None when retention never deleted any."""
    row = s.execute(
        select(m.FeedConsumer.txid, m.FeedConsumer.last_id).where(
            m.FeedConsumer.name == watermark_name(tenant_id)
        )
    ).first()
    return FeedCursor(int(row[0]), int(row[1])) if row is not None else None


@dataclass(frozen=True, slots=True)
class PruneReport:
    tenants: int
    rows: int


class FeedRetention:
    """Deletes old feed rows (see the module docstring)."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings

    async def prune(self, *, retention: float | None = None) -> PruneReport:
        """One pass over every tenant with rows older than ``retention`` seconds (default:
        the setting)."""
        keep = self.settings.feed_retention if retention is None else retention
        cutoff = utcnow() - timedelta(seconds=keep)

        def tenants(s: Session) -> list[str]:
            # Every feed row belongs to a session, and every session to a tenant row: walking
            # the (small) tenants table spares a scan of the (large) feed for its tenants.
            return sorted(s.scalars(select(m.Tenant.id)).all())

        names = await self.db.read(tenants)
        total = 0
        touched = 0
        for tenant_id in names:
            deleted = await self._prune_tenant(tenant_id, cutoff)
            if deleted:
                touched += 1
                total += deleted
        if total:
            log.info("feed rows deleted by retention", tenants=touched, rows=total)
        return PruneReport(touched, total)

    async def _prune_tenant(self, tenant_id: str, cutoff: datetime) -> int:
        limit = await self.db.read(partial(_first_kept, tenant_id=tenant_id, cutoff=cutoff))
        deleted = 0
        while True:
            count = await self.db.write(partial(_delete_batch, tenant_id=tenant_id, limit=limit))
            deleted += count
            if count < BATCH:
                return deleted

    async def run_periodically(self) -> None:
        """Prune forever (until cancelled); a failed pass is logged and retried next time."""
        interval = self.settings.feed_retention_interval
        if interval <= 0:
            return
        while True:
            # Jitter, so the processes of a cluster do not all prune at the same moment.
            await asyncio.sleep(interval * random.uniform(0.8, 1.2))
            try:
                await self.prune()
            except Exception:
                log.exception("feed retention failed")


def _first_kept(s: Session, tenant_id: str, cutoff: datetime) -> FeedCursor | None:
    """The tenant's first feed position that must stay; None when every row may go."""
    limits: list[FeedCursor] = []
    young = s.execute(
        select(m.FeedEntry.txid, m.FeedEntry.id)
        .where(m.FeedEntry.tenant_id == tenant_id, m.FeedEntry.created_at >= cutoff)
        .order_by(m.FeedEntry.txid, m.FeedEntry.id)
        .limit(1)
    ).first()
    if young is not None:
        limits.append(FeedCursor(int(young[0]), int(young[1])))
    for txid, last_id in s.execute(
        select(m.FeedConsumer.txid, m.FeedConsumer.last_id).where(
            m.FeedConsumer.name.in_(CONSUMERS)
        )
    ):
        # A consumer has read its cursor's row: the first row it has not read comes after.
        limits.append(FeedCursor(int(txid), int(last_id) + 1))
    pending = s.execute(
        select(m.FeedEntry.txid, m.FeedEntry.id)
        .join(
            m.WebhookDelivery,
            and_(
                m.WebhookDelivery.tenant_id == m.FeedEntry.tenant_id,
                m.WebhookDelivery.session_id == m.FeedEntry.session_id,
                m.WebhookDelivery.seq == m.FeedEntry.seq,
            ),
        )
        .join(m.Webhook, m.Webhook.id == m.WebhookDelivery.webhook_id)
        .where(
            m.FeedEntry.tenant_id == tenant_id,
            m.Webhook.tenant_id == tenant_id,
            m.Webhook.enabled,
            m.WebhookDelivery.status == DeliveryStatus.PENDING,
        )
        .order_by(m.FeedEntry.txid, m.FeedEntry.id)
        .limit(1)
    ).first()
    if pending is not None:
        limits.append(FeedCursor(int(pending[0]), int(pending[1])))
    return min(limits) if limits else None


def _delete_batch(s: Session, tenant_id: str, limit: FeedCursor | None) -> int:
    """Delete the tenant's oldest rows before ``limit`` (at most ``BATCH``) and move its
    watermark to the last of them, in one transaction."""
    q = select(m.FeedEntry.txid, m.FeedEntry.id).where(m.FeedEntry.tenant_id == tenant_id)
    if limit is not None:
        q = q.where(_before(limit))
    rows = s.execute(q.order_by(m.FeedEntry.txid, m.FeedEntry.id).limit(BATCH)).all()
    if not rows:
        return 0
    s.execute(
        delete(m.FeedEntry)
        .where(m.FeedEntry.tenant_id == tenant_id, m.FeedEntry.id.in_([r[1] for r in rows]))
        .execution_options(synchronize_session=False)
    )
    last = FeedCursor(int(rows[-1][0]), int(rows[-1][1]))
    _raise_watermark(s, tenant_id, last)
    return len(rows)


def _raise_watermark(s: Session, tenant_id: str, cursor: FeedCursor) -> None:
    name = watermark_name(tenant_id)
    values = {"name": name, "txid": cursor.txid, "last_id": cursor.id}
    if s.get_bind().dialect.name == "postgresql":
        s.execute(postgresql.insert(m.FeedConsumer).values(values).on_conflict_do_nothing())
    else:
        s.execute(sqlite.insert(m.FeedConsumer).values(values).on_conflict_do_nothing())
    row = m.FeedConsumer
    s.execute(
        update(row)
        .where(
            row.name == name,
            or_(row.txid < cursor.txid, and_(row.txid == cursor.txid, row.last_id < cursor.id)),
        )
        .values(txid=cursor.txid, last_id=cursor.id)
    )

"""Retention: archive sessions idle N days, delete sessions idle M days, per tenant or session.

*Idle* is measured from the session's ``updated_at`` (its last message, edit, or change).
Archiving keeps that time, so the purge clock keeps running from the last real activity.
A session's own retention (``session_retention``) wins over its tenant's policy, which wins
over the server defaults (``PARLEY_RETENTION_*``). Each run is idempotent: every process may
run it (the server does, every ``PARLEY_RETENTION_INTERVAL`` seconds; ``parley retention run``
does once), and each change re-checks its condition under the session's row lock.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from parley import metrics
from parley.governance.policies import Policies
from parley.governance.scoping import all_tenants
from parley.ids import utcnow
from parley.sessions.rules import SessionStatus
from parley.sessions.views import event_view, session_view
from parley.storage import models as m
from parley.storage.database import Database

# Each unit works on one tenant named by the caller; its statements narrow by session ids.
ONE_TENANT = "retention and purges work within the one tenant they were given"

log = structlog.get_logger("parley.governance")

BATCH = 500
ACTOR = "parley.retention"  # the actor of the events retention writes

# Every table holding a session's content, children first.
SESSION_TABLES: tuple[Any, ...] = (
    m.Event,
    m.Message,
    m.Participant,
    m.SessionTag,
    m.DocUpdate,
    m.DocSnapshot,
    m.Assistant,
    m.SessionRetention,
)

Progress = Callable[[str], None]


@dataclass(slots=True)
class RetentionReport:
    archived: list[tuple[str, str]] = field(default_factory=list)  # (tenant, session)
    purged: list[tuple[str, str]] = field(default_factory=list)

    def view(self) -> dict[str, Any]:
        return {"archived": len(self.archived), "purged": len(self.purged)}


@dataclass(frozen=True, slots=True)
class _Candidate:
    tenant_id: str
    session_id: str
    status: str
    updated_at: datetime
    archive_after_days: int | None
    purge_after_days: int | None


def delete_session_rows(s: Session, session_id: str) -> None:
    """Inside a unit of work: remove a session and every row that belongs to it."""
    for table in SESSION_TABLES:
        s.execute(delete(table).where(table.session_id == session_id))
    s.execute(delete(m.Session).where(m.Session.id == session_id))


class Retention:
    """Applies retention policies (see the module docstring)."""

    def __init__(self, db: Database, policies: Policies, publisher: Any | None = None) -> None:
        self.db = db
        self.policies = policies
        self.publisher = publisher  # the hub, when running in the server
        self._task: asyncio.Task[None] | None = None

    def start(self, interval: float) -> None:
        """Run every ``interval`` seconds in the background (0: never)."""
        if interval > 0:
            self._task = asyncio.get_running_loop().create_task(
                self._loop(interval), name="parley-retention"
            )

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                report = await self.run()
                if report.archived or report.purged:
                    log.info("retention applied", **report.view())
            except Exception:
                log.exception("retention run failed; next try in one interval")

    async def run(
        self, *, now: datetime | None = None, progress: Progress | None = None
    ) -> RetentionReport:
        """Archive and purge what is due in every tenant."""
        now = now or utcnow()
        say = progress or (lambda _line: None)
        report = RetentionReport()
        tenants = await self.db.read(
            all_tenants(
                ONE_TENANT,
                lambda s: list(s.scalars(select(m.Tenant.id).order_by(m.Tenant.id)).all()),
            )
        )
        for tenant_id in tenants:
            before = (len(report.archived), len(report.purged))
            await self._tenant(tenant_id, now, report)
            archived, purged = len(report.archived) - before[0], len(report.purged) - before[1]
            if archived or purged:
                say(f"tenant {tenant_id}: archived {archived}, purged {purged}")
        say(f"done: {len(report.archived)} archived, {len(report.purged)} purged")
        return report

    async def _tenant(self, tenant_id: str, now: datetime, report: RetentionReport) -> None:
        def work(s: Session) -> list[_Candidate]:
            policy = self.policies.read(s, tenant_id)
            rows = s.execute(
                select(
                    m.Session.id,
                    m.Session.status,
                    m.Session.updated_at,
                    m.SessionRetention.archive_after_days,
                    m.SessionRetention.purge_after_days,
                )
                .outerjoin(
                    m.SessionRetention,
                    (m.SessionRetention.tenant_id == m.Session.tenant_id)
                    & (m.SessionRetention.session_id == m.Session.id),
                )
                .where(m.Session.tenant_id == tenant_id, m.Session.updated_at < now - timedelta(1))
                .order_by(m.Session.id)
            ).all()
            return [
                _Candidate(
                    tenant_id,
                    sid,
                    status,
                    updated,
                    archive if archive is not None else policy.archive_after_days,
                    purge if purge is not None else policy.purge_after_days,
                )
                for sid, status, updated, archive, purge in rows
            ]

        for c in await self.db.read(all_tenants(ONE_TENANT, work)):
            idle = now - c.updated_at
            if c.purge_after_days is not None and idle >= timedelta(days=c.purge_after_days):
                if await self._purge(c, now):
                    report.purged.append((c.tenant_id, c.session_id))
            elif (
                c.archive_after_days is not None
                and c.status == SessionStatus.ACTIVE.value
                and idle >= timedelta(days=c.archive_after_days)
                and await self._archive(c, now)
            ):
                report.archived.append((c.tenant_id, c.session_id))

    async def _archive(self, c: _Candidate, now: datetime) -> bool:
        def work(s: Session) -> list[dict[str, Any]] | None:
            row = s.scalar(select(m.Session).where(m.Session.id == c.session_id).with_for_update())
            if row is None or row.status != SessionStatus.ACTIVE.value:
                return None
            if row.updated_at != c.updated_at:
                return None  # activity since we looked: not idle any more
            row.status = SessionStatus.ARCHIVED.value
            row.last_seq += 1
            tags = list(
                s.scalars(
                    select(m.SessionTag.tag).where(m.SessionTag.session_id == c.session_id)
                ).all()
            )
            ev = m.Event(
                session_id=c.session_id,
                seq=row.last_seq,
                tenant_id=c.tenant_id,
                name="session.updated",
                actor_id=ACTOR,
                data={
                    "session": session_view(row, tags),
                    "changed": ["status"],
                    "reason": "retention",
                },
                created_at=now,
            )
            s.add(ev)
            return [event_view(ev)]

        frames = await self.db.write(all_tenants(ONE_TENANT, work))
        if frames is None:
            return False
        metrics.RETENTION_SESSIONS.labels(action="archived").inc()
        if self.publisher is not None:
            try:
                await self.publisher.publish(c.tenant_id, c.session_id, frames)
            except Exception:
                log.exception("publishing an archival failed", session=c.session_id)
        return True

    async def _purge(self, c: _Candidate, now: datetime) -> bool:
        def work(s: Session) -> bool:
            row = s.scalar(select(m.Session).where(m.Session.id == c.session_id).with_for_update())
            if row is None or row.updated_at != c.updated_at:
                return False
            delete_session_rows(s, c.session_id)
            return True

        if not await self.db.write(all_tenants(ONE_TENANT, work)):
            return False
        metrics.RETENTION_SESSIONS.labels(action="purged").inc()
        log.info("session purged by retention", tenant=c.tenant_id, session=c.session_id)
        if self.publisher is not None:
            try:
                await self.publisher.publish_ephemeral(
                    c.tenant_id,
                    c.session_id,
                    "session.deleted",
                    {"session": c.session_id, "by": ACTOR, "reason": "retention"},
                )
            except Exception:
                log.exception("publishing a purge failed", session=c.session_id)
        return True

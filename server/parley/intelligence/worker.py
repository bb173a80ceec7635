"""The analysis worker: claims due jobs from the durable queue and analyses their sessions, off
the request and socket paths (see ``jobs`` for the queue's guarantees)."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from typing import Any

import structlog

from parley import metrics
from parley.governance.scoping import all_tenants
from parley.intelligence import analysis, jobs
from parley.sessions.service import Publisher
from parley.storage.database import Database

# The queue serves every tenant: a claimed job names its session, whose tenant it carries.
QUEUE = "the analysis queue spans tenants; each job is one session"

log = structlog.get_logger("parley.intelligence")


class AnalysisWorker:
    """A long-lived task: ``await start()``, ``await stop()``."""

    def __init__(
        self,
        db: Database,
        publisher: Publisher,
        *,
        poll_interval: float = 1.0,
        debounce: float = 2.0,
        max_delay: float = 30.0,
        lease: float = 120.0,
    ) -> None:
        self.db = db
        self.publisher = publisher
        self.poll_interval = poll_interval
        self.debounce = debounce
        self.max_delay = max_delay
        self.lease = lease
        self.name = "w-" + secrets.token_hex(6)
        self._task: asyncio.Task[None] | None = None
        self.analysed = 0  # sessions analysed by this worker (tests and status)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="parley-analysis")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def run_once(self) -> int:
        """Claim and analyse what is due now; return how many sessions were analysed."""
        due = await self.db.read(
            all_tenants(
                QUEUE,
                lambda s: jobs.any_due(s, debounce=self.debounce, max_delay=self.max_delay),
            )
        )
        if not due:
            return 0
        claims = await self.db.write(
            all_tenants(
                QUEUE,
                lambda s: jobs.claim(
                    s, self.name, debounce=self.debounce, max_delay=self.max_delay, lease=self.lease
                ),
            )
        )
        for job in claims:
            await self._analyse(job)
        return len(claims)

    async def _run(self) -> None:
        while True:
            try:
                done = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("analysis queue unavailable")
                done = 0
            if not done:
                await asyncio.sleep(self.poll_interval)

    async def _analyse(self, job: jobs.Claim) -> None:
        try:
            loaded = await self.db.read(
                all_tenants(QUEUE, lambda s: analysis.load(s, job.session_id))
            )
            if loaded is None:
                await self.db.write(all_tenants(QUEUE, lambda s: jobs.drop(s, job.session_id)))
                return
            result = await asyncio.to_thread(analysis.compute, loaded)

            def save(s: Any) -> list[dict[str, Any]]:
                frames = analysis.store(s, loaded, result)
                jobs.finish(s, job, self.name)
                return frames

            frames = await self.db.write(all_tenants(QUEUE, save))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("analysis failed", session=job.session_id)
            metrics.ANALYSIS_JOBS.labels(outcome="failed").inc()
            error = repr(exc)
            kept = await self.db.write(
                all_tenants(QUEUE, lambda s: jobs.fail(s, job, self.name, error))
            )
            if not kept:
                log.error("analysis given up", session=job.session_id)
            return
        metrics.ANALYSIS_JOBS.labels(outcome="done").inc()
        self.analysed += 1
        if frames:
            try:
                await self.publisher.publish(job.tenant_id, job.session_id, frames)
            except Exception:  # committed: subscribers recover it by gap fill or replay
                log.exception("publishing an automatic title failed", session=job.session_id)

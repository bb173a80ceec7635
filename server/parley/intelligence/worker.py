"""The analysis worker: claims due jobs from the durable queue and analyses their sessions, off
the request and socket paths (see ``jobs`` for the queue's guarantees)."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Callable
from typing import Any

import structlog

from parley import metrics
from parley.governance.scoping import all_tenants
from parley.intelligence import analysis, jobs
from parley.intelligence.semantic import store as embeddings
from parley.intelligence.semantic.service import PGVECTOR, Semantic
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
        semantic: Semantic | None = None,
    ) -> None:
        self.db = db
        self.publisher = publisher
        self.poll_interval = poll_interval
        self.debounce = debounce
        self.max_delay = max_delay
        self.lease = lease
        # Embeddings are part of the analysis when the extra is installed and on.
        self.semantic = semantic if semantic is not None and semantic.available else None
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

    async def _embed(self, job: jobs.Claim) -> Callable[[Any], None] | None:
        """Embed the session's new and changed texts (in a thread); return the write that stores
        them with the rest of the analysis, or None when there is nothing to write."""
        semantic = self.semantic
        if semantic is None:
            return None
        from parley.intelligence.semantic import indexer

        model = semantic.model
        pending = await self.db.read(
            all_tenants(QUEUE, lambda s: embeddings.load(s, job.tenant_id, job.session_id, model))
        )
        pgvector = await semantic.engine() == PGVECTOR
        embedder = await asyncio.to_thread(semantic.embedder)
        done = await asyncio.to_thread(indexer.compute, pending, embedder, pgvector=pgvector)
        if done is None:
            return None
        return lambda s: embeddings.save(s, pending, done, dims=embedder.dims, pgvector=pgvector)

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
            embed = await self._embed(job)

            def save(s: Any) -> list[dict[str, Any]]:
                frames = analysis.store(s, loaded, result)
                if embed is not None:
                    embed(s)
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

"""The intelligence parts one process runs, built and stopped by the app's lifespan."""

from __future__ import annotations

from parley.config import Settings
from parley.intelligence.llm import Llm
from parley.intelligence.search import SearchBackend, backend_for
from parley.intelligence.semantic.service import Semantic
from parley.intelligence.summaries import Summaries
from parley.intelligence.worker import AnalysisWorker
from parley.relay.registry import ProviderRegistry
from parley.sessions.service import Publisher
from parley.storage.database import Database


class Intelligence:
    """Search backend, semantic search, LLM, summaries and (when enabled) the analysis worker
    of a process."""

    def __init__(
        self, settings: Settings, db: Database, publisher: Publisher, registry: ProviderRegistry
    ) -> None:
        self.search: SearchBackend = backend_for(db.is_sqlite)
        self.llm = Llm(settings, registry)
        self.summaries = Summaries(db, self.llm)
        self.semantic = Semantic(settings, db)
        self.worker = AnalysisWorker(
            db,
            publisher,
            poll_interval=settings.analysis_poll_interval,
            debounce=settings.analysis_debounce,
            max_delay=settings.analysis_max_delay,
            lease=settings.analysis_lease,
            semantic=self.semantic,
        )
        self.run_worker = settings.analysis_worker

    async def start(self) -> None:
        self.semantic.start()
        if self.run_worker:
            await self.worker.start()

    async def stop(self) -> None:
        await self.worker.stop()
        await self.semantic.stop()

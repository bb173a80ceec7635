"""What one process knows about semantic search: whether it can run (extra installed, setting
on), the embedder (loaded on first use), and which engine ranks (pgvector or NumPy)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

import structlog
from sqlalchemy import text

from parley.config import Settings
from parley.errors import SemanticUnavailable
from parley.intelligence.semantic import embedder as emb
from parley.storage.database import Database

if TYPE_CHECKING:
    from parley.intelligence.semantic.vectors import Vector

log = structlog.get_logger("parley.intelligence")

NUMPY = "numpy"
PGVECTOR = "pgvector"


class Semantic:
    """``available`` tells whether semantic search runs here; ``unavailable`` says why not."""

    def __init__(self, settings: Settings, db: Database) -> None:
        self.db = db
        self.unavailable: str | None = (
            "semantic search is turned off on this server (PARLEY_SEMANTIC=false)"
            if not settings.semantic
            else emb.missing()
        )
        self._engine: str | None = None
        self._warm: asyncio.Task[None] | None = None
        if self.unavailable is not None:
            log.info("semantic search unavailable", reason=self.unavailable)

    def start(self) -> None:
        """Load the model in the background now: it takes seconds, and every process may be
        asked a semantic query (not only those that run the analysis worker)."""
        if self.available and self._warm is None:
            self._warm = asyncio.create_task(self._load(), name="parley-model")

    async def _load(self) -> None:
        try:
            await asyncio.to_thread(self.embedder)
            log.info("embedding model loaded", model=self.model)
        except Exception:  # the first query or job that needs it tries again, and fails visibly
            log.exception("loading the embedding model failed")

    @property
    def loading(self) -> bool:
        """The start-up load is still running (``/readyz`` reports the process not ready: the
        import and the model's first load hold the interpreter for seconds)."""
        return self._warm is not None and not self._warm.done()

    async def ready(self) -> None:
        """Wait until the start-up load has finished (loaded or failed)."""
        if self._warm is not None:
            await asyncio.shield(self._warm)

    async def stop(self) -> None:
        if self._warm is not None:
            self._warm.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._warm
            self._warm = None

    @property
    def available(self) -> bool:
        return self.unavailable is None

    def require(self) -> None:
        """Raise ``semantic_unavailable`` (501) when semantic search cannot run here."""
        if self.unavailable is not None:
            raise SemanticUnavailable(self.unavailable)

    @property
    def model(self) -> str:
        return emb.MiniLm.name

    @property
    def dims(self) -> int:
        return emb.MiniLm.dims

    def embedder(self) -> emb.Embedder:
        """The process's model (blocking the first time: call it from a thread)."""
        self.require()
        return emb.default()

    async def embed_query(self, q: str) -> Vector:
        """The vector of a search text, computed in a thread."""
        self.require()
        rows = await asyncio.to_thread(lambda: self.embedder().embed([q]))
        first: Vector = rows[0]
        return first

    async def engine(self) -> str:
        """``pgvector`` when the ``embeddings.pgv`` column exists (PostgreSQL with the
        extension at migration time), else ``numpy`` (brute force)."""
        if self._engine is None:
            if self.db.is_sqlite:
                self._engine = NUMPY
            else:
                found = await self.db.read(
                    lambda s: s.scalar(
                        text(
                            "SELECT 1 FROM information_schema.columns WHERE table_name ="
                            " 'embeddings' AND column_name = 'pgv' AND table_schema ="
                            " current_schema()"
                        )
                    )
                )
                self._engine = PGVECTOR if found else NUMPY
            log.info("semantic search engine", engine=self._engine)
        return self._engine

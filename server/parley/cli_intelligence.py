"""``parley analysis worker|status``: the background analysis as its own process."""

from __future__ import annotations

import asyncio
import signal

import click
import structlog

from parley.broker import create_broker
from parley.config import Settings
from parley.governance import crypto
from parley.hub.hub import Hub
from parley.intelligence import jobs
from parley.intelligence.semantic.service import Semantic
from parley.intelligence.worker import AnalysisWorker
from parley.logging import configure_logging
from parley.storage.database import Database
from parley.storage.event_log import EventLog
from parley.storage.migrate import upgrade

log = structlog.get_logger("parley.intelligence")


@click.group("analysis")
def analysis() -> None:
    """Conversation intelligence: the background analysis queue."""


@analysis.command("worker")
def worker_command() -> None:
    """Analyse queued sessions until stopped (SIGTERM or Ctrl-C).

    Run it beside `parley serve` processes started with PARLEY_ANALYSIS_WORKER=false to keep
    analysis off the processes that serve clients. It reads the same PARLEY_* settings;
    automatic titles are announced on PARLEY_BROKER_URL (use Redis when hubs run elsewhere).
    """
    settings = Settings()
    configure_logging(settings.log_format, settings.log_level)
    asyncio.run(_run_worker(settings))


async def _run_worker(settings: Settings) -> None:
    url = settings.effective_database_url
    await asyncio.to_thread(upgrade, url)
    db = await crypto.open_database(settings)
    broker = create_broker(settings.broker_url, sharded=settings.redis_sharded)
    await broker.start()
    event_log = EventLog(db)
    hub = Hub(broker, events_after=event_log.events_after, last_seq=event_log.last_seq)
    worker = AnalysisWorker(
        db,
        hub,
        poll_interval=settings.analysis_poll_interval,
        debounce=settings.analysis_debounce,
        max_delay=settings.analysis_max_delay,
        lease=settings.analysis_lease,
        semantic=Semantic(settings, db),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await worker.start()
    log.info("analysis worker ready", worker=worker.name)
    try:
        await stop.wait()
    finally:
        await worker.stop()
        await broker.stop()
        await db.close()
        log.info("analysis worker stopped", analysed=worker.analysed)


@analysis.command("status")
def status_command() -> None:
    """Print how many sessions wait for analysis."""
    settings = Settings()

    async def count() -> int:
        db = Database(settings.effective_database_url)
        try:
            return await db.read(jobs.backlog)
        finally:
            await db.close()

    click.echo(f"sessions waiting for analysis: {asyncio.run(count())}")

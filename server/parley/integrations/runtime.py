"""The integrations' long-lived parts, started and stopped together by the app lifespan."""

from __future__ import annotations

import asyncio
import contextlib

from parley.broker.base import Broker
from parley.config import Settings
from parley.integrations.automation.engine import AutomationEngine
from parley.integrations.automation.service import AutomationService
from parley.integrations.consumer import FeedConsumer
from parley.integrations.delivery import DeliveryWorker, WebhookDispatcher
from parley.integrations.live import LiveFeeds
from parley.integrations.retention import FeedRetention
from parley.integrations.signal import FeedSignal
from parley.integrations.webhooks import WebhookService
from parley.relay.service import Relay
from parley.sessions.service import SessionService
from parley.storage import feed_log
from parley.storage.database import Database


class Integrations:
    """Feed wake-ups, live feeds, webhooks (service, dispatcher, delivery worker),
    automation (rules service, engine on the feed, scheduler) and the feed's retention."""

    def __init__(self, db: Database, broker: Broker, settings: Settings) -> None:
        feed_log.install()
        self.db = db
        self.settings = settings
        self.signal = FeedSignal(broker)
        self.feeds = LiveFeeds(
            db, self.signal, settings.feed_poll_interval, settings.feed_retention
        )
        self.webhooks = WebhookService(db, settings)
        self.worker = DeliveryWorker(db, settings)
        self.dispatcher = FeedConsumer(
            db,
            "webhooks",
            WebhookDispatcher(db, self.worker),
            self.signal,
            poll_interval=settings.feed_poll_interval,
        )
        self.automations = AutomationService(db)
        self.retention = FeedRetention(db, settings)
        self.engine: AutomationEngine | None = None
        self._rules: FeedConsumer | None = None
        self._pruning: asyncio.Task[None] | None = None

    def enable_automation(self, service: SessionService, relay: Relay) -> None:
        """Automation acts through the session service and the relay, built after us."""
        self.engine = AutomationEngine(
            self.db,
            service,
            relay,
            self.webhooks,
            self.worker.wake,
            max_depth=self.settings.automation_max_depth,
            tick=self.settings.feed_poll_interval,
            claim_lease=self.settings.automation_claim_lease,
        )
        self._rules = FeedConsumer(
            self.db,
            "automation",
            self.engine.handle,
            self.signal,
            poll_interval=self.settings.feed_poll_interval,
        )

    async def start(self) -> None:
        await self.signal.start()
        if self.settings.integrations_workers:
            self.worker.start()
            self.dispatcher.start()
            self._pruning = asyncio.create_task(
                self.retention.run_periodically(), name="feed-retention"
            )
            if self.engine is not None and self._rules is not None:
                self.engine.start()
                self._rules.start()

    async def stop(self) -> None:
        if self._pruning is not None:
            self._pruning.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pruning
            self._pruning = None
        await self.feeds.stop()
        if self.engine is not None and self._rules is not None:
            await self._rules.stop()
            await self.engine.stop()
        await self.dispatcher.stop()
        await self.worker.stop()
        await self.signal.stop()

"""The services a command-line tool needs outside a running server (``parley import``,
``export``, ``session from-template``): the database, the broker (so servers sharing a Redis
broker see the events live), the session service, documents, the attachment store, and the
importer (with the tenant's PII mode and the attachment limits, as in the server) and exporter."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from parley.attachments.blobs import BlobStore, LocalBlobStore
from parley.broker import Broker, create_broker
from parley.config import Settings
from parley.crdt.manager import DocManager
from parley.exports.exporter import Exporter
from parley.governance import crypto
from parley.governance.policies import Policies
from parley.hub.events import OutEvent
from parley.hub.hub import session_channel
from parley.ids import iso, utcnow
from parley.imports.content import content_for
from parley.imports.files import FileRestorer
from parley.imports.importer import Importer
from parley.sessions.annotations import AnnotationEvents
from parley.sessions.service import SessionService
from parley.storage.database import Database
from parley.storage.migrate import upgrade


class BrokerPublisher:
    """Publishes committed events the way the hub does, without a hub (no local clients)."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    async def publish(
        self, tenant_id: str, session_id: str, frames: Sequence[dict[str, Any]]
    ) -> None:
        channel = session_channel(tenant_id, session_id)
        for frame in frames:
            await self.broker.publish(channel, OutEvent.from_frame(frame).envelope())

    async def publish_ephemeral(
        self, tenant_id: str, session_id: str, name: str, data: dict[str, Any]
    ) -> None:
        frame = {
            "type": "event",
            "session": session_id,
            "seq": 0,
            "event": name,
            "data": data,
            "ephemeral": True,
            "ts": iso(utcnow()),
        }
        await self.broker.publish(
            session_channel(tenant_id, session_id), OutEvent.from_frame(frame).envelope()
        )


@dataclass
class Offline:
    settings: Settings
    db: Database
    service: SessionService
    docs: DocManager
    importer: Importer
    exporter: Exporter
    store: BlobStore


@asynccontextmanager
async def offline(settings: Settings) -> AsyncIterator[Offline]:
    """Open the store (migrated first: safe to repeat) and the broker; close both after."""
    url = settings.effective_database_url
    await asyncio.to_thread(upgrade, url)
    db = await crypto.open_database(settings)
    broker = create_broker(settings.broker_url, sharded=settings.redis_sharded)
    await broker.start()
    try:
        service = SessionService(
            db, BrokerPublisher(broker), max_text_chars=settings.max_text_chars
        )
        docs = DocManager(db, broker, AnnotationEvents.of(service), settings)
        store = LocalBlobStore(settings.effective_attachment_dir)
        yield Offline(
            settings=settings,
            db=db,
            service=service,
            docs=docs,
            importer=Importer(
                db,
                service.publisher,
                docs,
                content=content_for(Policies(db, settings), settings),
                files=FileRestorer(store, settings),
                max_text_chars=settings.max_text_chars,
            ),
            exporter=Exporter(service, docs),
            store=store,
        )
    finally:
        await broker.stop()
        await db.close()

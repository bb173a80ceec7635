"""The Starlette application factory and its lifespan: the one place that wires parts together."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, WebSocketRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from parley import metrics
from parley.api import analytics as analytics_api
from parley.api import (
    apikeys,
    assistants,
    audit_requests,
    automations,
    documents,
    event_stream,
    headers,
    health,
    messages,
    participants,
    sessions,
    sharing,
    tenant,
)
from parley.api import attachments as attachments_api
from parley.api import audit as audit_api
from parley.api import exports as export_routes
from parley.api import imports as import_routes
from parley.api import insights as insights_api
from parley.api import search as search_api
from parley.api import templates as template_routes
from parley.api import webhooks as webhook_routes
from parley.api.common import JSONResponse
from parley.attachments.blobs import LocalBlobStore
from parley.attachments.gc import collect_periodically
from parley.attachments.service import AttachmentService
from parley.broker import Broker, create_broker
from parley.config import Settings
from parley.crdt.endpoint import YjsEndpoint
from parley.crdt.manager import DocManager
from parley.crdt.mux import Mux
from parley.governance import crypto, scoping
from parley.governance.audit import AuditRecorder
from parley.governance.auth import TokenVerifier
from parley.governance.hub import Governance
from parley.governance.oidc import OidcVerifier
from parley.governance.policy import Visibility
from parley.governance.relay import GovernedRelay
from parley.governance.retention import Retention
from parley.governance.sessions import GovernedSessionService
from parley.governance.sharing import Sharing
from parley.gql import endpoint as graphql_api
from parley.gql.schema import build_schema
from parley.hub.endpoint import SocketEndpoint
from parley.hub.hub import Hub
from parley.integrations.runtime import Integrations
from parley.integrations.signal import NotifyingPublisher
from parley.intelligence.wiring import Intelligence
from parley.presence import create_presence_store
from parley.relay.publisher import ObservingPublisher
from parley.relay.state import create_stream_store
from parley.sessions.annotations import AnnotationEvents
from parley.storage.database import Database
from parley.storage.event_log import EventLog
from parley.storage.migrate import upgrade
from parley.web import routes as web_routes

log = structlog.get_logger("parley")


class _Yjs:
    """ASGI app for ``/yjs/{session_id}`` that defers to the endpoint built in the lifespan."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint: YjsEndpoint = scope["app"].state.yjs
        await endpoint(scope, receive, send)


class _Socket:
    """ASGI app for ``/ws`` that defers to the endpoint built in the lifespan."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint: SocketEndpoint = scope["app"].state.endpoint
        await endpoint(scope, receive, send)


async def _http_error(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, HTTPException):
        return JSONResponse(
            {"error": {"code": "internal", "message": "internal error"}}, status_code=500
        )
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return JSONResponse(
        {"error": {"code": code, "message": exc.detail}},
        status_code=exc.status_code,
        headers=exc.headers,
    )


class RequestMetrics:
    """Pure ASGI middleware: counts REST requests by route template and status."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        start = time.perf_counter()
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            metrics.HTTP_REQUESTS.labels(
                method=scope["method"],
                route=getattr(route, "path", "unmatched"),
                status=str(status),
            ).inc()
            if status >= 500:
                log.error(
                    "request failed",
                    path=scope["path"],
                    status=status,
                    ms=round((time.perf_counter() - start) * 1000, 1),
                )


def create_app(
    settings: Settings | None = None, *, broker: Broker | None = None, migrate: bool = True
) -> Starlette:
    """Build the app. ``broker`` overrides the one named in the settings (tests share buses)."""
    settings = settings or Settings()
    scoping.install(settings.tenant_guard)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        url = settings.effective_database_url
        if migrate:
            await asyncio.to_thread(upgrade, url)
        db = Database(url)
        encryption = crypto.enable(db, settings)  # None: encryption at rest is off
        if encryption is not None:
            await crypto.check(db, encryption)
        the_broker = broker or create_broker(settings.broker_url, sharded=settings.redis_sharded)
        await the_broker.start()
        presence = create_presence_store(settings.broker_url)
        presence.ttl = settings.presence_ttl
        await presence.start()
        event_log = EventLog(db)
        audit = AuditRecorder(db, interval=settings.audit_flush_interval)
        await audit.start()
        app.state.audit = audit
        hub = Hub(
            the_broker,
            events_after=event_log.events_after,
            last_seq=event_log.last_seq,
            last_seqs=event_log.last_seqs,
            presence=presence,
        )
        await hub.start()
        # The service publishes through the relay's observer, which forwards to the hub and
        # lets assistants answer committed messages (relay/publisher.py says why).
        # Integrations (webhooks, feeds, automation): committed events also nudge feed readers.
        integrations = Integrations(db, the_broker, settings)
        publisher = ObservingPublisher(NotifyingPublisher(hub, integrations.signal))
        # SSO: OpenID Connect tokens are accepted wherever Parley's own are.
        oidc = OidcVerifier(settings) if settings.oidc_issuer else None
        # Governance (docs/privacy.md): quotas, PII and API keys wrap the service and relay;
        # it authenticates every bearer credential (API keys, Parley and SSO tokens).
        governance = Governance(db, settings, TokenVerifier(settings.signing_key, oidc))
        await governance.start()
        service = GovernedSessionService(
            db,
            publisher,
            max_text_chars=settings.max_text_chars,
            policies=governance.policies,
            quotas=governance.quotas,
            content=governance.content,
            default_visibility=Visibility(settings.default_visibility),
        )
        relay = GovernedRelay(
            policies=governance.policies,
            quotas=governance.quotas,
            content=governance.content,
            settings=settings,
            service=service,
            events=hub,
            broker=the_broker,
            store=create_stream_store(settings.broker_url, ttl=settings.relay_lease_ttl),
        )
        await relay.start()
        publisher.observer = relay.observe
        app.state.relay = relay
        intelligence = Intelligence(settings, db, publisher, relay.registry)
        await intelligence.start()
        app.state.intelligence = intelligence
        app.state.settings = settings
        app.state.db = db
        app.state.broker = the_broker
        app.state.hub = hub
        app.state.service = service
        app.state.governance = governance
        retention = Retention(db, governance.policies, publisher=hub)
        retention.start(settings.retention_interval)
        docs = DocManager(db, the_broker, AnnotationEvents.of(service), settings)
        app.state.endpoint = SocketEndpoint(
            hub,
            service,
            settings,
            mux=Mux(docs),
            relay=relay,
            governance=governance,
            audit=audit,
            feeds=integrations.feeds,
        )
        app.state.docs = docs
        app.state.yjs = YjsEndpoint(docs, service, settings, governance=governance, audit=audit)
        # Live effect of governance changes: every process drops what a user may no longer
        # read (subscriptions via the session's own events, documents via their channel).
        app.state.sharing = Sharing(service)
        hub.can_read = service.can_read
        service.access_listeners.append(docs.announce_access_change)
        # Attachments (docs/graphql-attachments.md): blobs on local disk, swept periodically.
        attachments = AttachmentService(
            db, LocalBlobStore(settings.effective_attachment_dir), settings
        )
        app.state.attachments = attachments
        relay.attachments = attachments
        attachment_gc = asyncio.create_task(collect_periodically(attachments))
        app.state.graphql_schema = build_schema(
            max_depth=settings.graphql_max_depth, max_cost=settings.graphql_max_complexity
        )
        integrations.enable_automation(service, relay)
        await integrations.start()
        app.state.integrations = integrations
        app.state.webhooks = integrations.webhooks
        app.state.delivery_worker_wake = integrations.worker.wake
        log.info("parley ready", encryption=encryption is not None, **settings.safe_summary())
        try:
            yield
        finally:
            await integrations.stop()
            if oidc is not None:
                await oidc.close()
            attachment_gc.cancel()
            await retention.stop()
            await intelligence.stop()
            await relay.stop()  # running answers are stored as interrupted
            await hub.shutdown(settings.shutdown_flush_timeout)
            await docs.stop()  # store every document before the broker and database go
            await audit.stop()  # store the audit entries still queued
            await presence.stop()
            await governance.stop()
            await the_broker.stop()
            await db.close()
            log.info("parley stopped")

    api_routes = [
        *sessions.routes,
        *messages.routes,
        *participants.routes,
        *documents.routes,
        *assistants.routes,
        *export_routes.routes,
        *template_routes.routes,
        *import_routes.routes,
        *attachments_api.routes,
        *tenant.routes,
        *apikeys.routes,
        *audit_api.routes,
        *sharing.routes,
        *search_api.routes,
        *insights_api.routes,
        *analytics_api.routes,
        *webhook_routes.routes,
        *event_stream.routes,
        *automations.routes,
    ]
    app = Starlette(
        routes=[
            WebSocketRoute("/ws", _Socket()),
            WebSocketRoute("/yjs/{session_id}", _Yjs()),
            Mount("/api/v1", routes=api_routes),
            *graphql_api.routes,
            *health.routes,
            *web_routes,  # the browser workspace at /
        ],
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error, Exception: _http_error},
    )
    app.state.settings = settings
    app.add_middleware(audit_requests.AuditRequests)
    app.add_middleware(headers.SecurityHeaders, hsts_seconds=settings.hsts_seconds)
    app.add_middleware(RequestMetrics)
    if settings.cors_origins:
        app.add_middleware(headers.CORSMiddleware, **headers.cors_options(settings.cors_origins))
    return app

"""Webhook delivery: the dispatcher turns feed items into delivery rows, the worker posts them.

Dispatcher (a :class:`~parley.integrations.consumer.FeedConsumer` handler, one process at a
time): for each committed event and each enabled endpoint of its tenant whose filter matches
(and that existed when the event happened), insert a delivery row. Its id is derived from the
endpoint and the event, so a batch dispatched twice after a crash is still one delivery.

Worker (every process): claims due deliveries (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; on
SQLite the single writer is the lock) by pushing their next attempt time past the request
timeout, posts them outside any transaction, then records the attempt. A process that dies
mid-request leaves the claim to expire and the delivery is tried again: at least once, with a
stable ``Parley-Delivery-Id`` so receivers can drop repeats.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import httpx
import orjson
import structlog
from sqlalchemy import or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from parley import metrics
from parley.config import Settings
from parley.errors import InvalidRequest
from parley.governance.crypto.columns import seal_values
from parley.governance.crypto.envelope import CryptoError
from parley.governance.scoping import all_tenants
from parley.ids import utcnow
from parley.integrations import signing, urls
from parley.integrations.filters import type_matches
from parley.integrations.retry import backoff_delay
from parley.integrations.sealing import open_secret
from parley.integrations.signal import wait
from parley.integrations.webhooks import DeliveryStatus, delivery_id, payload
from parley.storage import models as m
from parley.storage.database import Database
from parley.storage.feed_log import FeedItem

# Background workers serve every tenant: each row they take names its own tenant.
SPANS = "a background worker of every tenant"

log = structlog.get_logger("parley.integrations")
CLAIM_BATCH = 32
USER_AGENT = "Parley-Webhooks/1"


class WebhookDispatcher:
    """Feed consumer handler: queue one delivery per matching endpoint and event."""

    def __init__(self, db: Database, worker: DeliveryWorker | None = None) -> None:
        self.db = db
        self.worker = worker

    async def __call__(self, items: list[FeedItem]) -> bool:
        """Queue the deliveries of these items; True when any were queued."""
        tenants = sorted({i.tenant_id for i in items})

        def hooks_of(s: Session) -> list[tuple[str, str, list[str], datetime]]:
            rows = s.execute(
                select(
                    m.Webhook.id, m.Webhook.tenant_id, m.Webhook.events, m.Webhook.created_at
                ).where(m.Webhook.tenant_id.in_(tenants), m.Webhook.enabled)
            ).all()
            return [(r[0], r[1], list(r[2]), r[3]) for r in rows]

        hooks = await self.db.read(
            all_tenants(SPANS, hooks_of)
        )  # most batches stop here, without a write
        now = utcnow()
        rows: list[dict[str, Any]] = []
        for item in items:
            for hook_id, tenant_id, events, created_at in hooks:
                if (
                    tenant_id == item.tenant_id
                    and created_at <= item.created_at
                    and type_matches(events, item.name)
                ):
                    ident = delivery_id(hook_id, item.session_id, item.seq)
                    rows.append(
                        {
                            "id": ident,
                            "tenant_id": item.tenant_id,
                            "webhook_id": hook_id,
                            "event": item.name,
                            "session_id": item.session_id,
                            "seq": item.seq,
                            "payload": payload(ident, item.tenant_id, item.frame),
                            "status": DeliveryStatus.PENDING,
                            "attempts": 0,
                            "next_attempt_at": now,
                            # A microsecond apart in feed order: the delivery log lists
                            # newest first, and one batch must not tie on its timestamp.
                            "created_at": now + timedelta(microseconds=len(rows)),
                        }
                    )
        if not rows:
            return False
        await self.db.write(all_tenants(SPANS, partial(_insert_new, rows=rows)))
        if self.worker is not None:
            self.worker.wake()
        return True


def _insert_new(s: Session, rows: list[dict[str, Any]]) -> None:
    """Insert delivery rows, skipping ids that exist (a batch dispatched again); payloads are
    sealed when encryption at rest is on (a Core insert skips the ORM's hooks)."""
    rows = seal_values(s, m.WebhookDelivery, rows)
    if s.get_bind().dialect.name == "postgresql":
        pg = postgresql.insert(m.WebhookDelivery).on_conflict_do_nothing(index_elements=["id"])
        s.execute(pg, rows)
    else:
        lite = sqlite.insert(m.WebhookDelivery).on_conflict_do_nothing(index_elements=["id"])
        s.execute(lite, rows)


@dataclass(frozen=True, slots=True)
class _Claim:
    id: str
    webhook_id: str
    url: str
    secret: str
    event: str
    body: bytes
    attempt: int
    problem: str | None = None  # why it cannot be sent (its secret does not open)


@dataclass(frozen=True, slots=True)
class _Outcome:
    status_code: int | None
    error: str | None
    latency_ms: float

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class DeliveryWorker:
    """Posts due deliveries, retries with backoff, disables endpoints that keep failing."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None
        self._slots = asyncio.Semaphore(settings.webhook_concurrency)
        # Long enough that a live process always records its attempt before anyone retries.
        self.claim_ttl = timedelta(seconds=2 * settings.webhook_timeout + 5)

    def start(self) -> None:
        self._client = httpx.AsyncClient(
            follow_redirects=False,
            headers={"User-Agent": USER_AGENT},
            transport=urls.guarded_transport(allow_private=self.settings.webhook_allow_private),
        )
        self._task = asyncio.create_task(self._run(), name="webhook-delivery")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def wake(self) -> None:
        """Look for due deliveries now (new ones were queued in this process)."""
        self._wake.set()

    async def _run(self) -> None:
        failures = 0
        while True:
            self._wake.clear()
            try:
                claims = await self.db.write(all_tenants(SPANS, self._claim))
                if claims:
                    await asyncio.gather(*(self._deliver(c) for c in claims))
                    failures = 0
                    continue
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception:
                failures += 1
                log.exception("webhook delivery step failed")
                await asyncio.sleep(min(30.0, 0.5 * 2 ** min(failures, 6)))
                continue
            await wait(self._wake, self.settings.feed_poll_interval)

    def _claim(self, s: Session) -> list[_Claim]:
        now = utcnow()
        rows = s.execute(
            select(m.WebhookDelivery, m.Webhook)
            .join(m.Webhook, m.Webhook.id == m.WebhookDelivery.webhook_id)
            .where(
                m.WebhookDelivery.status == DeliveryStatus.PENDING,
                m.WebhookDelivery.next_attempt_at <= now,
                or_(m.Webhook.enabled, m.WebhookDelivery.event == "webhook.test"),
            )
            .order_by(m.WebhookDelivery.next_attempt_at)
            .limit(CLAIM_BATCH)
            .with_for_update(skip_locked=True, of=m.WebhookDelivery)
        ).all()
        claims = []
        for d, hook in rows:
            d.attempts += 1
            d.next_attempt_at = now + self.claim_ttl
            problem: str | None = None
            try:
                secret = open_secret(s, hook.tenant_id, hook.id, hook.secret)
            except CryptoError as exc:  # one endpoint's secret must not stop the others
                secret, problem = "", f"the endpoint's signing secret does not open: {exc}"
                log.error("webhook secret does not open", webhook=hook.id, error=str(exc))
            claims.append(
                _Claim(
                    d.id,
                    hook.id,
                    hook.url,
                    secret,
                    d.event,
                    orjson.dumps(d.payload),
                    d.attempts,
                    problem,
                )
            )
        return claims

    async def _deliver(self, claim: _Claim) -> None:
        if claim.problem is not None:
            outcome = _Outcome(None, claim.problem[:500], 0.0)
        else:
            async with self._slots:
                outcome = await self._post(claim)
        await self.db.write(all_tenants(SPANS, lambda s: self._record(s, claim, outcome)))

    async def _post(self, claim: _Claim) -> _Outcome:
        assert self._client is not None
        headers = {
            "Content-Type": "application/json",
            "Parley-Delivery-Id": claim.id,
            "Parley-Event": claim.event,
            "Parley-Attempt": str(claim.attempt),
            "Parley-Signature": signing.signature_header(claim.secret, claim.body),
        }
        start = time.perf_counter()
        code: int | None = None
        error: str | None = None
        try:
            await urls.check_destination(
                claim.url, allow_private=self.settings.webhook_allow_private
            )
            response = await self._client.post(
                claim.url,
                content=claim.body,
                headers=headers,
                timeout=self.settings.webhook_timeout,
            )
            code = response.status_code
            if not 200 <= code < 300:
                error = f"receiver answered HTTP {code}"
        except InvalidRequest as exc:
            error = exc.message
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        elapsed = time.perf_counter() - start
        metrics.WEBHOOK_LATENCY.observe(elapsed)
        return _Outcome(code, error[:500] if error else None, elapsed * 1000)

    def _record(self, s: Session, claim: _Claim, outcome: _Outcome) -> None:
        now = utcnow()
        d = s.get(m.WebhookDelivery, claim.id, with_for_update=True)
        hook = s.get(m.Webhook, claim.webhook_id, with_for_update=True)
        if d is None or hook is None:  # the endpoint was deleted meanwhile
            return
        s.add(
            m.WebhookAttempt(
                delivery_id=d.id,
                webhook_id=hook.id,
                tenant_id=d.tenant_id,
                attempt=claim.attempt,
                status_code=outcome.status_code,
                latency_ms=outcome.latency_ms,
                error=outcome.error,
                created_at=now,
            )
        )
        d.last_status_code, d.last_error = outcome.status_code, outcome.error
        if outcome.ok:
            d.status, d.delivered_at = DeliveryStatus.DELIVERED, now
            hook.consecutive_failures = 0
            metrics.WEBHOOK_ATTEMPTS.labels(outcome="delivered").inc()
            return
        hook.consecutive_failures += 1
        if d.attempts >= self.settings.webhook_max_attempts:
            d.status = DeliveryStatus.FAILED
            metrics.WEBHOOK_ATTEMPTS.labels(outcome="failed").inc()
        else:
            delay = backoff_delay(
                d.attempts,
                base=self.settings.webhook_retry_base,
                cap=self.settings.webhook_retry_max,
            )
            d.next_attempt_at = now + timedelta(seconds=delay)
            metrics.WEBHOOK_ATTEMPTS.labels(outcome="retry").inc()
        if hook.enabled and hook.consecutive_failures >= self.settings.webhook_disable_after:
            hook.enabled = False
            hook.disabled_reason = (
                f"disabled after {hook.consecutive_failures} consecutive failed attempts"
                f" (last: {outcome.error})"
            )[:500]
            hook.updated_at = now
            metrics.WEBHOOKS_DISABLED.inc()
            log.warning("webhook disabled", webhook=hook.id, tenant=hook.tenant_id)

"""Webhook endpoints of a tenant: saving them, their deliveries and the delivery log.

Only tenant admins manage webhooks (checked here, not only in the routes). Another tenant's
webhook ids answer exactly like ids that do not exist.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from parley.config import Settings
from parley.errors import Conflict, Forbidden, InvalidRequest, NotFound
from parley.governance.auth import Principal
from parley.ids import iso, new_id, utcnow
from parley.integrations import filters, signing, urls
from parley.integrations.sealing import seal_secret
from parley.sessions.queries import plausible_id
from parley.storage import models as m
from parley.storage.database import Database

MAX_WEBHOOKS_PER_TENANT = 50
MAX_DESCRIPTION = 500
# Deliveries of one event to one endpoint get this id, so a repeated dispatch is one row.
_DELIVERY_NS = uuid.UUID("6f1c0c2e-3b7a-4d38-9a55-1f0e6f6b9a21")


class DeliveryStatus:
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


def delivery_id(webhook_id: str, session_id: str, seq: int) -> str:
    """The stable id of the delivery of event ``(session_id, seq)`` to ``webhook_id``."""
    return str(uuid.uuid5(_DELIVERY_NS, f"{webhook_id}/{session_id}/{seq}"))


def webhook_view(row: m.Webhook, *, secret: str | None = None) -> dict[str, Any]:
    """The endpoint as the API shows it; ``secret`` (plaintext) only when just made."""
    view: dict[str, Any] = {
        "id": row.id,
        "url": row.url,
        "events": row.events,
        "description": row.description,
        "enabled": row.enabled,
        "disabled_reason": row.disabled_reason,
        "consecutive_failures": row.consecutive_failures,
        "created_by": row.created_by,
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
    }
    if secret is not None:
        view["secret"] = secret
    return view


def attempt_view(row: m.WebhookAttempt) -> dict[str, Any]:
    return {
        "attempt": row.attempt,
        "status_code": row.status_code,
        "latency_ms": round(row.latency_ms, 1),
        "error": row.error,
        "at": iso(row.created_at),
    }


def delivery_view(row: m.WebhookDelivery, log: list[m.WebhookAttempt]) -> dict[str, Any]:
    return {
        "id": row.id,
        "event": row.event,
        "session": row.session_id,
        "seq": row.seq,
        "status": row.status,
        "attempts": row.attempts,
        "next_attempt_at": iso(row.next_attempt_at)
        if row.status == DeliveryStatus.PENDING
        else None,
        "last_status_code": row.last_status_code,
        "last_error": row.last_error,
        "created_at": iso(row.created_at),
        "delivered_at": iso(row.delivered_at),
        "log": [attempt_view(a) for a in log],
    }


def payload(delivery: str, tenant_id: str, frame: dict[str, Any]) -> dict[str, Any]:
    """The JSON body a receiver gets for one event."""
    return {
        "id": delivery,
        "type": frame["event"],
        "tenant": tenant_id,
        "session": frame.get("session"),
        "seq": frame.get("seq"),
        "actor": frame.get("actor"),
        "created_at": frame.get("ts"),
        "data": frame.get("data", {}),
    }


class WebhookService:
    """CRUD of webhooks, their deliveries, manual redelivery and test pings."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings

    async def create(
        self, p: Principal, *, url: str, events: list[str], description: str = ""
    ) -> dict[str, Any]:
        """Save an endpoint; the answer holds its secret, which is never shown again."""
        _admin(p)
        await urls.check_destination(url, allow_private=self.settings.webhook_allow_private)
        patterns = filters.check_patterns(events)
        description = _description(description)
        now = utcnow()

        def work(s: Session) -> dict[str, Any]:
            count = len(
                s.scalars(select(m.Webhook.id).where(m.Webhook.tenant_id == p.tenant_id)).all()
            )
            if count >= MAX_WEBHOOKS_PER_TENANT:
                raise Conflict(f"a tenant may have at most {MAX_WEBHOOKS_PER_TENANT} webhooks")
            ident = new_id()
            secret = signing.new_secret()
            row = m.Webhook(
                id=ident,
                tenant_id=p.tenant_id,
                url=url,
                secret=seal_secret(s, p.tenant_id, ident, secret),
                events=patterns,
                description=description,
                enabled=True,
                disabled_reason=None,
                consecutive_failures=0,
                created_by=p.user_id,
                created_at=now,
                updated_at=now,
            )
            s.add(row)
            return webhook_view(row, secret=secret)

        return await self.db.write(work)

    async def list_all(self, p: Principal) -> list[dict[str, Any]]:
        _admin(p)

        def work(s: Session) -> list[dict[str, Any]]:
            rows = s.scalars(
                select(m.Webhook).where(m.Webhook.tenant_id == p.tenant_id).order_by(m.Webhook.id)
            ).all()
            return [webhook_view(r) for r in rows]

        return await self.db.read(work)

    async def get(self, p: Principal, webhook_id: str) -> dict[str, Any]:
        _admin(p)
        return await self.db.read(lambda s: webhook_view(_row(s, p, webhook_id)))

    async def update(
        self,
        p: Principal,
        webhook_id: str,
        *,
        url: str | None = None,
        events: list[str] | None = None,
        description: str | None = None,
        enabled: bool | None = None,
        rotate_secret: bool = False,
    ) -> dict[str, Any]:
        """Change an endpoint. Enabling it again clears its failure count; rotating the
        secret answers the new one (once)."""
        _admin(p)
        if url is not None:
            await urls.check_destination(url, allow_private=self.settings.webhook_allow_private)
        patterns = filters.check_patterns(events) if events is not None else None
        desc = _description(description) if description is not None else None
        now = utcnow()

        def work(s: Session) -> dict[str, Any]:
            row = _row(s, p, webhook_id, lock=True)
            if url is not None:
                row.url = url
            if patterns is not None:
                row.events = patterns
            if desc is not None:
                row.description = desc
            if enabled is not None:
                row.enabled = enabled
                if enabled:
                    row.disabled_reason, row.consecutive_failures = None, 0
                else:
                    row.disabled_reason = f"disabled by {p.user_id}"
            secret = signing.new_secret() if rotate_secret else None
            if secret is not None:
                row.secret = seal_secret(s, p.tenant_id, row.id, secret)
            row.updated_at = now
            return webhook_view(row, secret=secret)

        return await self.db.write(work)

    async def delete(self, p: Principal, webhook_id: str) -> None:
        _admin(p)

        def work(s: Session) -> None:
            s.delete(_row(s, p, webhook_id))

        await self.db.write(work)

    async def deliveries(
        self,
        p: Principal,
        webhook_id: str,
        *,
        status: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Deliveries of one endpoint, newest first, each with its attempt log."""
        _admin(p)
        if status is not None and status not in ("pending", "delivered", "failed"):
            raise InvalidRequest("status must be pending, delivered or failed")
        limit = max(1, min(limit, 200))

        def work(s: Session) -> tuple[list[dict[str, Any]], str | None]:
            _row(s, p, webhook_id)
            q = select(m.WebhookDelivery).where(
                m.WebhookDelivery.tenant_id == p.tenant_id,
                m.WebhookDelivery.webhook_id == webhook_id,
            )
            if status is not None:
                q = q.where(m.WebhookDelivery.status == status)
            if cursor:
                at = _created_at(s, p.tenant_id, webhook_id, cursor)
                q = q.where(
                    or_(
                        m.WebhookDelivery.created_at < at,
                        and_(m.WebhookDelivery.created_at == at, m.WebhookDelivery.id < cursor),
                    )
                )
            rows = list(
                s.scalars(
                    q.order_by(
                        m.WebhookDelivery.created_at.desc(), m.WebhookDelivery.id.desc()
                    ).limit(limit + 1)
                ).all()
            )
            more = len(rows) > limit
            rows = rows[:limit]
            logs: dict[str, list[m.WebhookAttempt]] = {r.id: [] for r in rows}
            if rows:
                for a in s.scalars(
                    select(m.WebhookAttempt)
                    .where(
                        m.WebhookAttempt.tenant_id == p.tenant_id,
                        m.WebhookAttempt.delivery_id.in_(list(logs)),
                    )
                    .order_by(m.WebhookAttempt.id)
                ):
                    logs[a.delivery_id].append(a)
            return [delivery_view(r, logs[r.id]) for r in rows], (
                rows[-1].id if more and rows else None
            )

        return await self.db.read(work)

    async def redeliver(self, p: Principal, webhook_id: str, delivery: str) -> dict[str, Any]:
        """Queue a delivery again now, with the same id and body (receivers may dedupe)."""
        _admin(p)
        now = utcnow()

        def work(s: Session) -> dict[str, Any]:
            hook = _row(s, p, webhook_id)
            row = (
                s.scalar(
                    select(m.WebhookDelivery)
                    .where(
                        m.WebhookDelivery.tenant_id == p.tenant_id,
                        m.WebhookDelivery.id == delivery,
                    )
                    .with_for_update()
                )
                if plausible_id(delivery)
                else None
            )
            if row is None or row.webhook_id != hook.id:
                raise NotFound(f"delivery {delivery[:80]!r} not found")
            row.status = DeliveryStatus.PENDING
            row.next_attempt_at = now
            return delivery_view(row, [])

        return await self.db.write(work)

    async def test(self, p: Principal, webhook_id: str) -> dict[str, Any]:
        """Queue a ``webhook.test`` delivery to the endpoint (also while it is disabled)."""
        _admin(p)
        now = utcnow()

        def work(s: Session) -> dict[str, Any]:
            hook = _row(s, p, webhook_id)
            ident = new_id()
            frame = {
                "event": "webhook.test",
                "session": None,
                "seq": None,
                "actor": p.user_id,
                "ts": iso(now),
                "data": {"webhook": hook.id},
            }
            row = m.WebhookDelivery(
                id=ident,
                tenant_id=p.tenant_id,
                webhook_id=hook.id,
                event="webhook.test",
                session_id=None,
                seq=None,
                payload=payload(ident, p.tenant_id, frame),
                status=DeliveryStatus.PENDING,
                attempts=0,
                next_attempt_at=now,
                created_at=now,
            )
            s.add(row)
            return delivery_view(row, [])

        return await self.db.write(work)

    async def enqueue(
        self, tenant_id: str, webhook_id: str, delivery: str, frame: dict[str, Any]
    ) -> bool:
        """Queue ``frame`` for one endpoint of the tenant (automation's ``call_webhook``).
        ``delivery`` is the caller's stable id: queueing it again changes nothing. False when
        the endpoint does not exist in the tenant."""
        now = utcnow()

        def work(s: Session) -> bool:
            hook = (
                s.scalar(
                    select(m.Webhook).where(
                        m.Webhook.id == webhook_id, m.Webhook.tenant_id == tenant_id
                    )
                )
                if plausible_id(webhook_id)
                else None
            )
            if hook is None:
                return False
            known = select(m.WebhookDelivery.id).where(
                m.WebhookDelivery.tenant_id == tenant_id, m.WebhookDelivery.id == delivery
            )
            if s.scalar(known) is None:
                s.add(
                    m.WebhookDelivery(
                        id=delivery,
                        tenant_id=tenant_id,
                        webhook_id=hook.id,
                        event=frame["event"],
                        session_id=frame.get("session"),
                        seq=frame.get("seq"),
                        payload=payload(delivery, tenant_id, frame),
                        status=DeliveryStatus.PENDING,
                        attempts=0,
                        next_attempt_at=now,
                        created_at=now,
                    )
                )
            return True

        return await self.db.write(work)


def _admin(p: Principal) -> None:
    if not p.is_admin:
        raise Forbidden("only tenant admins may manage webhooks")


def _description(value: str) -> str:
    value = "".join(ch for ch in value if ch.isprintable()).strip()
    if len(value) > MAX_DESCRIPTION:
        raise InvalidRequest(f"description may be at most {MAX_DESCRIPTION} characters")
    return value


def _row(s: Session, p: Principal, webhook_id: str, *, lock: bool = False) -> m.Webhook:
    if plausible_id(webhook_id):
        q = select(m.Webhook).where(m.Webhook.id == webhook_id, m.Webhook.tenant_id == p.tenant_id)
        row = s.scalar(q.with_for_update() if lock else q)
        if row is not None:
            return row
    raise NotFound(f"webhook {webhook_id[:80]!r} not found")


def _created_at(s: Session, tenant_id: str, webhook_id: str, delivery: str) -> Any:
    """Where a page starts: a delivery of this webhook (the caller's, already checked)."""
    if not plausible_id(delivery):
        raise InvalidRequest("cursor is not a delivery id")
    value = s.scalar(
        select(m.WebhookDelivery.created_at).where(
            m.WebhookDelivery.id == delivery,
            m.WebhookDelivery.webhook_id == webhook_id,
            m.WebhookDelivery.tenant_id == tenant_id,
        )
    )
    if value is None:
        raise InvalidRequest("cursor is not a delivery id")
    return value

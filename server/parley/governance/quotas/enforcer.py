"""The quota rules: what each limit counts, when it is checked, and the refusal it gives.

* ``sessions``: active (not archived) sessions of the tenant, counted in SQL when one is
  created (not a hot path). Refusal: ``retry_after`` null (archive or delete one first).
* ``messages_per_minute``: one counter per tenant per calendar minute in the quota store, one
  store operation per message (socket ``send`` and REST POST). Assistants' answers are not
  counted; their cost is bounded by the LLM quotas.
* ``connections``: open WebSockets (``/ws`` and ``/yjs``) of the tenant, a set of leases in the
  quota store renewed by each process, so a crashed process's connections free themselves.
* ``llm_tokens_per_month`` / ``llm_cost_per_month``: checked before an assistant starts an
  answer, recorded in SQL after it ends (``tenant_usage``), per calendar month in UTC. An
  answer already running finishes even if it crosses the limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from parley import metrics
from parley.errors import QuotaExceeded
from parley.governance.auth import Principal
from parley.governance.policies import Policies
from parley.governance.quotas.base import QuotaStore
from parley.ids import utcnow
from parley.sessions.rules import SessionStatus
from parley.storage import models as m
from parley.storage.database import Database

log = structlog.get_logger("parley.governance")

MINUTE = 60.0
CONNECTION_TTL = 30.0  # a lease outlives its process by at most this long


def month_of(now: datetime) -> str:
    return now.strftime("%Y-%m")


def seconds_to_next_month(now: datetime) -> float:
    year, month = (now.year + 1, 1) if now.month == 12 else (now.year, now.month + 1)
    return (datetime(year, month, 1, tzinfo=UTC) - now).total_seconds()


class Quotas:
    """Checks and counts tenant quotas (see the module docstring)."""

    def __init__(self, store: QuotaStore, policies: Policies, db: Database) -> None:
        self.store = store
        self.policies = policies
        self.db = db
        # Lease members are "<node>:<connection id>": connection ids are unique per process only.
        self.node = secrets.token_hex(8)
        self._leases: dict[str, set[str]] = {}  # tenant -> this process's lease members
        self._renewer: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.store.start()
        self._renewer = asyncio.get_running_loop().create_task(
            self._renew_loop(), name="parley-quota-leases"
        )

    async def stop(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
        for tenant, members in self._leases.items():
            for member in members:
                with contextlib.suppress(Exception):
                    await self.store.release(f"{tenant}:conn", member)
        self._leases.clear()
        await self.store.stop()

    def _refuse(self, quota: str, limit: float, retry_after: float | None, what: str) -> None:
        metrics.QUOTA_REFUSALS.labels(quota=quota).inc()
        raise QuotaExceeded(
            f"the tenant's {quota} quota ({limit:g}) is used up: {what}",
            quota=quota,
            limit=limit,
            retry_after=retry_after,
        )

    async def check_message(self, p: Principal) -> None:
        """Count one message of the tenant in this minute, or refuse it."""
        limit = int((await self.policies.get(p.tenant_id)).quotas["messages_per_minute"])
        if limit <= 0:
            return
        wait = await self.store.hit(f"{p.tenant_id}:msg", MINUTE, limit)
        if wait:
            self._refuse("messages_per_minute", limit, wait, "wait for the next minute")

    async def check_session(self, p: Principal) -> None:
        """Refuse a new session when the tenant has as many active ones as it may."""
        limit = int((await self.policies.get(p.tenant_id)).quotas["sessions"])
        if limit <= 0:
            return
        active = await self.db.read(lambda s: _active_sessions(s, p.tenant_id))
        if active >= limit:
            self._refuse("sessions", limit, None, "archive or delete a session first")

    async def admit(self, p: Principal, connection: str) -> None:
        """Take one of the tenant's connection slots for ``connection``, or refuse."""
        limit = int((await self.policies.get(p.tenant_id)).quotas["connections"])
        # Unlimited tenants take a slot too, so their usage shows their connections.
        cap = limit if limit > 0 else 2**31
        member = f"{self.node}:{connection}"
        if not await self.store.acquire(f"{p.tenant_id}:conn", member, cap, CONNECTION_TTL):
            self._refuse("connections", limit, None, "close another connection first")
        self._leases.setdefault(p.tenant_id, set()).add(member)

    async def dismiss(self, tenant_id: str, connection: str) -> None:
        """Give back a connection slot taken by :meth:`admit`."""
        member = f"{self.node}:{connection}"
        members = self._leases.get(tenant_id)
        if members is None or member not in members:
            return
        members.discard(member)
        if not members:
            del self._leases[tenant_id]
        try:
            await self.store.release(f"{tenant_id}:conn", member)
        except Exception as exc:  # the lease expires by itself
            log.warning("connection slot release failed", error=str(exc))

    async def _renew_loop(self) -> None:
        while True:
            await asyncio.sleep(CONNECTION_TTL / 3)
            for tenant, members in list(self._leases.items()):
                try:
                    await self.store.renew(f"{tenant}:conn", sorted(members), CONNECTION_TTL)
                except Exception as exc:
                    log.warning("connection slot renewal failed", error=str(exc))

    async def check_llm(self, tenant_id: str) -> None:
        """Refuse to start an answer when this month's LLM tokens or cost are used up."""
        quotas = (await self.policies.get(tenant_id)).quotas
        token_limit, cost_limit = quotas["llm_tokens_per_month"], quotas["llm_cost_per_month"]
        if token_limit <= 0 and cost_limit <= 0:
            return
        now = utcnow()
        tokens, cost = await self.db.read(lambda s: _llm_usage(s, tenant_id, month_of(now)))
        retry = seconds_to_next_month(now)
        if 0 < token_limit <= tokens:
            self._refuse("llm_tokens_per_month", token_limit, retry, "wait for next month")
        if 0 < cost_limit <= cost:
            self._refuse("llm_cost_per_month", cost_limit, retry, "wait for next month")

    async def record_llm(self, tenant_id: str, tokens: int, cost: float | None) -> None:
        """Add one answer's tokens and cost to the tenant's month."""
        if tokens <= 0 and not cost:
            return
        period = month_of(utcnow())
        micros = round((cost or 0.0) * 1_000_000)

        def work(s: Session) -> None:
            row = s.get(m.TenantUsage, (tenant_id, period))
            if row is None:
                s.add(
                    m.TenantUsage(
                        tenant_id=tenant_id, period=period, llm_tokens=tokens,
                        llm_cost_micros=micros,
                    )
                )  # fmt: skip
            else:
                row.llm_tokens += tokens
                row.llm_cost_micros += micros

        try:
            await self.db.write(work)
        except IntegrityError:  # another process inserted the month's row first
            await self.db.write(work)

    async def usage(self, tenant_id: str) -> dict[str, Any]:
        """What the tenant uses now, beside its limits."""
        policy = await self.policies.get(tenant_id)
        now = utcnow()

        def work(s: Session) -> tuple[int, tuple[int, float]]:
            return _active_sessions(s, tenant_id), _llm_usage(s, tenant_id, month_of(now))

        active, (tokens, cost) = await self.db.read(work)
        used = {
            "sessions": active,
            "messages_per_minute": await self.store.count(f"{tenant_id}:msg", MINUTE),
            "connections": await self.store.size(f"{tenant_id}:conn"),
            "llm_tokens_per_month": tokens,
            "llm_cost_per_month": cost,
        }
        return {"period": month_of(now), "usage": used, "limits": policy.quotas}


def _active_sessions(s: Session, tenant_id: str) -> int:
    return int(
        s.scalar(
            select(func.count())
            .select_from(m.Session)
            .where(m.Session.tenant_id == tenant_id, m.Session.status == SessionStatus.ACTIVE.value)
        )
        or 0
    )


def _llm_usage(s: Session, tenant_id: str, period: str) -> tuple[int, float]:
    row = s.get(m.TenantUsage, (tenant_id, period))
    if row is None:
        return 0, 0.0
    return row.llm_tokens, row.llm_cost_micros / 1_000_000

"""Automation rules of a tenant: saving them and reading their runs. Tenant admins only;
another tenant's rule ids answer exactly like ids that do not exist."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from parley.errors import Conflict, Forbidden, NotFound
from parley.governance.auth import Principal
from parley.ids import iso, new_id, utcnow
from parley.integrations.automation.rules import RuleSpec, check_rule, next_run
from parley.sessions.queries import plausible_id
from parley.storage import models as m
from parley.storage.database import Database

MAX_RULES_PER_TENANT = 100


def rule_view(row: m.AutomationRule) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "enabled": row.enabled,
        "trigger": row.trigger or None,
        "schedule": row.schedule,
        "next_run_at": iso(row.next_run_at) if row.enabled else None,
        "actions": row.actions,
        "created_by": row.created_by,
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
    }


def run_view(row: m.AutomationRun) -> dict[str, Any]:
    return {
        "id": row.id,
        "rule": row.rule_id,
        "cause": row.cause,
        "session": row.session_id,
        "seq": row.seq,
        "status": row.status,
        "detail": row.detail,
        "created_at": iso(row.created_at),
    }


class AutomationService:
    """CRUD of rules and their run history."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(self, p: Principal, data: dict[str, Any]) -> dict[str, Any]:
        _admin(p)
        spec = check_rule(data)
        now = utcnow()

        def work(s: Session) -> dict[str, Any]:
            count = s.scalar(
                select(func.count())
                .select_from(m.AutomationRule)
                .where(m.AutomationRule.tenant_id == p.tenant_id)
            )
            if (count or 0) >= MAX_RULES_PER_TENANT:
                raise Conflict(f"a tenant may have at most {MAX_RULES_PER_TENANT} rules")
            row = m.AutomationRule(
                id=new_id(),
                tenant_id=p.tenant_id,
                created_by=p.user_id,
                created_at=now,
                updated_at=now,
            )
            _apply(row, spec)
            s.add(row)
            return rule_view(row)

        return await self.db.write(work)

    async def list_all(self, p: Principal) -> list[dict[str, Any]]:
        _admin(p)

        def work(s: Session) -> list[dict[str, Any]]:
            q = select(m.AutomationRule).where(m.AutomationRule.tenant_id == p.tenant_id)
            return [rule_view(r) for r in s.scalars(q.order_by(m.AutomationRule.id)).all()]

        return await self.db.read(work)

    async def get(self, p: Principal, rule_id: str) -> dict[str, Any]:
        _admin(p)
        return await self.db.read(lambda s: rule_view(rule_row(s, p.tenant_id, rule_id)))

    async def update(self, p: Principal, rule_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Change fields of a rule; the result is validated as a whole."""
        _admin(p)

        def work(s: Session) -> dict[str, Any]:
            row = rule_row(s, p.tenant_id, rule_id, lock=True)
            current = {
                "name": row.name,
                "enabled": row.enabled,
                "trigger": row.trigger or None,
                "schedule": row.schedule,
                "actions": row.actions,
            }
            spec = check_rule({**current, **changes})
            _apply(row, spec)
            row.updated_at = utcnow()
            return rule_view(row)

        return await self.db.write(work)

    async def delete(self, p: Principal, rule_id: str) -> None:
        _admin(p)

        def work(s: Session) -> None:
            s.delete(rule_row(s, p.tenant_id, rule_id))

        await self.db.write(work)

    async def runs(self, p: Principal, rule_id: str, *, limit: int = 50) -> list[dict[str, Any]]:
        """The rule's runs, newest first."""
        _admin(p)
        limit = max(1, min(limit, 200))

        def work(s: Session) -> list[dict[str, Any]]:
            rule_row(s, p.tenant_id, rule_id)
            rows = s.scalars(
                select(m.AutomationRun)
                .where(m.AutomationRun.tenant_id == p.tenant_id, m.AutomationRun.rule_id == rule_id)
                .order_by(m.AutomationRun.id.desc())
                .limit(limit)
            ).all()
            return [run_view(r) for r in rows]

        return await self.db.read(work)


def _apply(row: m.AutomationRule, spec: RuleSpec) -> None:
    row.name = spec.name
    row.enabled = spec.enabled
    row.trigger = spec.trigger.model_dump() if spec.trigger is not None else {}
    row.actions = [a.model_dump() for a in spec.actions]
    if spec.schedule != row.schedule or row.next_run_at is None:
        row.next_run_at = next_run(spec.schedule, utcnow()) if spec.schedule else None
    row.schedule = spec.schedule


def _admin(p: Principal) -> None:
    if not p.is_admin:
        raise Forbidden("only tenant admins may manage automation rules")


def rule_row(s: Session, tenant_id: str, rule_id: str, *, lock: bool = False) -> m.AutomationRule:
    if plausible_id(rule_id):
        q = select(m.AutomationRule).where(
            m.AutomationRule.id == rule_id, m.AutomationRule.tenant_id == tenant_id
        )
        row = s.scalar(q.with_for_update() if lock else q)
        if row is not None:
            return row
    raise NotFound(f"automation rule {rule_id[:80]!r} not found")

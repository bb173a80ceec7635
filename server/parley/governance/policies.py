"""Tenant policies (quotas, PII mode, retention): stored per tenant, cached per process.

Every message send needs its tenant's PII mode and message quota, so reads come from a small
in-process cache that lives ``policy_cache_seconds``. A change through the admin API takes effect
at once in the process that made it and within that many seconds everywhere else.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sqlalchemy.orm import Session

from parley.config import Settings
from parley.errors import InvalidRequest
from parley.ids import utcnow
from parley.storage import models as m
from parley.storage.database import Database


class PiiMode(StrEnum):
    OFF = "off"  # nothing is detected
    FLAG = "flag"  # stored as written; the message's metadata names the types found
    REDACT = "redact"  # findings are replaced by placeholders before storage and broadcast
    REDACT_LLM = "redact_llm"  # stored as written; redacted in what is sent to LLM providers


QUOTA_NAMES = (
    "sessions",
    "messages_per_minute",
    "connections",
    "llm_tokens_per_month",
    "llm_cost_per_month",
)


@dataclass(frozen=True, slots=True)
class Policy:
    """A tenant's effective policy: its own settings over the server defaults."""

    quotas: dict[str, float]
    pii_mode: PiiMode
    archive_after_days: int | None
    purge_after_days: int | None
    overrides: dict[str, float] = field(default_factory=dict)  # what the tenant set itself

    def view(self) -> dict[str, Any]:
        return {
            "quotas": self.quotas,
            "overrides": self.overrides,
            "pii": {"mode": str(self.pii_mode)},
            "retention": {
                "archive_after_days": self.archive_after_days,
                "purge_after_days": self.purge_after_days,
            },
        }


def default_quotas(settings: Settings) -> dict[str, float]:
    return {
        "sessions": settings.quota_sessions,
        "messages_per_minute": settings.quota_messages_per_minute,
        "connections": settings.quota_connections,
        "llm_tokens_per_month": settings.quota_llm_tokens_per_month,
        "llm_cost_per_month": settings.quota_llm_cost_per_month,
    }


def check_quotas(values: dict[str, Any]) -> dict[str, float]:
    """Validate a quota override: known names, numbers >= 0 (0 = unlimited), or null to unset."""
    out: dict[str, float] = {}
    for name, value in values.items():
        if name not in QUOTA_NAMES:
            raise InvalidRequest(
                f"unknown quota {name!r}; known: {', '.join(QUOTA_NAMES)}",
                details=[{"field": name, "problem": "unknown quota"}],
            )
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise InvalidRequest(
                f"quota {name} must be a number >= 0 (0 = unlimited) or null",
                details=[{"field": name, "problem": "must be a number >= 0 or null"}],
            )
        out[name] = float(value) if name == "llm_cost_per_month" else int(value)
    return out


class Policies:
    """Reads and writes tenant policies; ``get`` is cached (see the module docstring)."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self.ttl = settings.policy_cache_seconds
        self._cache: dict[str, tuple[float, Policy]] = {}

    def defaults(self) -> Policy:
        s = self.settings
        return Policy(
            quotas=default_quotas(s),
            pii_mode=PiiMode(s.pii_mode),
            archive_after_days=s.retention_archive_after_days,
            purge_after_days=s.retention_purge_after_days,
        )

    def _merge(self, row: m.TenantPolicy | None) -> Policy:
        base = self.defaults()
        if row is None:
            return base
        overrides = {k: v for k, v in (row.quotas or {}).items() if k in QUOTA_NAMES}
        return Policy(
            quotas={**base.quotas, **overrides},
            pii_mode=PiiMode(row.pii_mode) if row.pii_mode else base.pii_mode,
            archive_after_days=row.archive_after_days
            if row.archive_after_days is not None
            else base.archive_after_days,
            purge_after_days=row.purge_after_days
            if row.purge_after_days is not None
            else base.purge_after_days,
            overrides=overrides,
        )

    async def get(self, tenant_id: str) -> Policy:
        """The tenant's effective policy, at most ``policy_cache_seconds`` old."""
        now = time.monotonic()
        hit = self._cache.get(tenant_id)
        if hit is not None and hit[0] > now:
            return hit[1]
        policy = await self.db.read(lambda s: self._merge(s.get(m.TenantPolicy, tenant_id)))
        self._cache[tenant_id] = (now + self.ttl, policy)
        return policy

    def read(self, s: Session, tenant_id: str) -> Policy:
        """Inside a unit of work: the tenant's effective policy, uncached."""
        return self._merge(s.get(m.TenantPolicy, tenant_id))

    async def update(
        self,
        tenant_id: str,
        *,
        quotas: dict[str, Any] | None = None,
        pii_mode: PiiMode | None = None,
        retention: tuple[int | None, int | None] | None = None,
    ) -> Policy:
        """Change parts of a tenant's policy. ``quotas`` merges: a null value unsets one."""
        clean = check_quotas(quotas) if quotas is not None else None
        unset = {k for k, v in (quotas or {}).items() if v is None}
        now = utcnow()

        def work(s: Session) -> Policy:
            row = s.get(m.TenantPolicy, tenant_id)
            if row is None:
                row = m.TenantPolicy(tenant_id=tenant_id, quotas={}, pii_mode="", updated_at=now)
                s.add(row)
            if clean is not None:
                merged = {k: v for k, v in (row.quotas or {}).items() if k not in unset}
                row.quotas = {**merged, **clean}
            if pii_mode is not None:
                row.pii_mode = str(pii_mode)
            if retention is not None:
                row.archive_after_days, row.purge_after_days = retention
            row.updated_at = now
            s.flush()
            return self._merge(row)

        policy = await self.db.write(work)
        self._cache[tenant_id] = (time.monotonic() + self.ttl, policy)
        return policy

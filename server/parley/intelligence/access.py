"""What a caller may read: the one place search, insights and analytics ask.

Today every member of a tenant may read every session of the tenant (docs/architecture.md,
"Tenant scoping"). When per-session read rules land, only this function changes.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement

from parley.governance.auth import Principal
from parley.storage import models as m


def readable_sessions_filter(p: Principal) -> ColumnElement[bool]:
    """A condition on ``sessions`` rows that holds exactly for the sessions ``p`` may read."""
    return m.Session.tenant_id == p.tenant_id

"""Who may read which session's events in the live tenant feed.

One function on purpose: per-session read rules (planned in governance) replace its body and
every feed (SSE, socket) follows.
"""

from __future__ import annotations

from parley.governance.auth import Principal
from parley.storage import models as m


def can_read(principal: Principal, session: m.Session) -> bool:
    """Today every member of a tenant may read every session of the tenant."""
    return session.tenant_id == principal.tenant_id

"""The durable analysis queue: one ``analysis_jobs`` row per session that changed.

Database triggers (migration 0009) add or refresh the row in the transaction that writes the
message, so no change is ever missed, even when a process dies right after its commit. Every
process may run a worker; they share the queue by claiming rows:

* A row is due when the session has been quiet for ``debounce`` seconds, or when it first asked
  ``max_delay`` seconds ago (a session that never goes quiet is still analysed).
* ``claim`` marks due rows as taken for ``lease`` seconds (PostgreSQL skips rows another process
  is claiming at that moment; SQLite serializes writers). A worker that dies leaves its claim to
  expire, and another process takes the job then.
* ``finish`` deletes the row only if no new change arrived since the claim; otherwise it
  releases it, so the change is analysed on the next round.
* ``fail`` releases the row after a growing back-off; after ``MAX_ATTEMPTS`` it is dropped
  (and logged): analysis is best effort, the conversation itself never depends on it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import ColumnElement, delete, func, or_, select, update
from sqlalchemy.orm import Session

from parley.storage import models as m

MAX_ATTEMPTS = 5
J = m.AnalysisJob


@dataclass(frozen=True, slots=True)
class Claim:
    session_id: str
    tenant_id: str
    requested_at: float
    attempts: int


def _due(
    now: float, debounce: float, max_delay: float
) -> tuple[ColumnElement[bool], ColumnElement[bool]]:
    return (
        or_(J.claimed_until.is_(None), J.claimed_until < now),
        or_(J.requested_at <= now - debounce, J.first_requested_at <= now - max_delay),
    )


def any_due(s: Session, *, debounce: float, max_delay: float) -> bool:
    """Whether a job is due (a cheap read before taking the write lock to claim)."""
    now = time.time()
    return (
        s.scalar(select(J.session_id).where(*_due(now, debounce, max_delay)).limit(1)) is not None
    )


def claim(
    s: Session, worker: str, *, debounce: float, max_delay: float, lease: float, limit: int = 8
) -> list[Claim]:
    """Take up to ``limit`` due jobs for ``worker`` (run inside ``db.write``)."""
    now = time.time()
    due = _due(now, debounce, max_delay)
    ids = (
        select(J.session_id)
        .where(*due)
        .order_by(J.first_requested_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    rows = s.execute(
        update(J)
        .where(J.session_id.in_(ids), *due)
        .values(claimed_by=worker, claimed_until=now + lease)
        .returning(J.session_id, J.tenant_id, J.requested_at, J.attempts)
    ).all()
    return [Claim(r.session_id, r.tenant_id, r.requested_at, r.attempts) for r in rows]


def finish(s: Session, job: Claim, worker: str) -> None:
    """Done: drop the job unless the session changed again meanwhile (then release it)."""
    gone = s.execute(
        delete(J).where(
            J.session_id == job.session_id,
            J.claimed_by == worker,
            J.requested_at == job.requested_at,
        )
    )
    if not gone.rowcount:  # type: ignore[attr-defined]
        s.execute(
            update(J)
            .where(J.session_id == job.session_id, J.claimed_by == worker)
            .values(claimed_by=None, claimed_until=None, attempts=0, last_error=None)
        )


def fail(s: Session, job: Claim, worker: str, error: str) -> bool:
    """Release a failed job with back-off; return False when it was dropped for good."""
    if job.attempts + 1 >= MAX_ATTEMPTS:
        s.execute(delete(J).where(J.session_id == job.session_id, J.claimed_by == worker))
        return False
    s.execute(
        update(J)
        .where(J.session_id == job.session_id, J.claimed_by == worker)
        .values(
            claimed_by=None,
            claimed_until=time.time() + 2.0 ** (job.attempts + 1),
            attempts=job.attempts + 1,
            last_error=error[:500],
        )
    )
    return True


def drop(s: Session, session_id: str) -> None:
    """Forget the job of a session that no longer exists."""
    s.execute(delete(J).where(J.session_id == session_id))


def backlog(s: Session) -> int:
    """Jobs waiting (for the metrics and ``parley analysis status``)."""
    return s.scalar(select(func.count()).select_from(J)) or 0

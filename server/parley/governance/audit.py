"""The audit trail: who did what to which target, when, from where, and with what result.

Entries are hash-chained per tenant: entry ``n`` stores ``prev_hash`` (entry ``n-1``'s hash)
and its own ``hash``, a SHA-256 over every field and ``prev_hash``. Changing, removing or
reordering any entry breaks the chain from there on; :func:`verify` finds the first broken
link. The head of each chain (``audit_heads``) is the row an appender locks: on PostgreSQL
with ``SELECT ... FOR UPDATE``, on SQLite by the write transaction's database lock, so
appenders in any number of processes extend the chain one at a time, without forks.

Two ways in:

* ``append_entries(s, tenant, entries)`` inside a unit of work: the entry commits or rolls
  back with the change it describes. Governance changes (participants, visibility, sharing,
  deletion) use this.
* :class:`AuditRecorder`: ``await recorder.record(principal, action, target_type, target_id,
  result, client=..., details=...)`` queues the entry; a background task appends what is
  queued every ``interval`` seconds (0.1 by default), one transaction per tenant. Reads of
  conversation content and message writes use this, so that they cost no extra round trip.
  A crash loses what was queued and not yet flushed (at most about one interval of entries);
  the durable event log still holds every committed message write.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator, Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import orjson
import structlog
from prometheus_client import Counter, Gauge
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from parley.errors import ParleyError
from parley.governance.auth import Principal
from parley.ids import iso, utcnow
from parley.storage import models as m
from parley.storage.database import Database

log = structlog.get_logger("parley.audit")

GENESIS = "0" * 64
Result = Literal["ok", "denied", "error"]
DENIED_CODES = frozenset({"unauthenticated", "forbidden", "not_found", "token_expired"})
MAX_PENDING = 100_000  # per process; past it the oldest queued entries are dropped (logged)
MAX_TARGET_ID, MAX_CLIENT = 200, 100  # stored lengths of an entry's target id and client

ENTRIES = Counter("parley_audit_entries_total", "Audit entries appended, by result.", ["result"])
DROPPED = Counter("parley_audit_dropped_total", "Queued audit entries dropped (queue full).")
FLUSH_FAILURES = Counter("parley_audit_flush_failures_total", "Audit flushes that failed.")
PENDING = Gauge("parley_audit_pending", "Audit entries queued and not yet stored.")


@dataclass(slots=True)
class Entry:
    """One audit entry before it is chained."""

    tenant_id: str
    actor: str
    actor_kind: str
    action: str
    target_type: str
    target_id: str
    result: str = "ok"
    code: str | None = None
    client: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    at: datetime = field(default_factory=utcnow)

    @classmethod
    def of(
        cls,
        p: Principal,
        action: str,
        target_type: str,
        target_id: str,
        result: str = "ok",
        *,
        code: str | None = None,
        client: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> Entry:
        return cls(
            tenant_id=p.tenant_id,
            actor=p.user_id,
            actor_kind=str(p.kind),
            action=action,
            target_type=target_type,
            target_id=target_id[:MAX_TARGET_ID],
            result=result,
            code=code,
            client=client[:MAX_CLIENT] if client else None,
            details=details or {},
        )


def _coalesce_key(
    tenant_id: str,
    actor: str,
    action: str,
    target_id: str,
    result: str,
    code: str | None,
    client: str | None,
) -> tuple[Any, ...]:
    """What makes two entries "the same" for coalescing: the fields :meth:`Entry.of` stores,
    cut alike, so a built entry and the arguments it would be built from give one key."""
    return (
        tenant_id,
        actor,
        action,
        target_id[:MAX_TARGET_ID],
        result,
        code,
        client[:MAX_CLIENT] if client else None,
    )


def result_of(exc: BaseException | None) -> tuple[Result, str | None]:
    """The audit result of an operation that raised ``exc`` (None: it succeeded)."""
    if exc is None:
        return "ok", None
    if isinstance(exc, ParleyError):
        code = str(exc.code)
        return ("denied" if code in DENIED_CODES else "error"), code
    return "error", "internal"


def entry_hash(tenant_id: str, seq: int, fields: dict[str, Any], prev_hash: str) -> str:
    """The chain hash: SHA-256 over the canonical JSON of the entry and the previous hash."""
    body = orjson.dumps(
        [tenant_id, seq, fields, prev_hash], option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS
    )
    return hashlib.sha256(body).hexdigest()


def hashed_fields(
    at: datetime,
    actor: str,
    actor_kind: str,
    action: str,
    target_type: str,
    target_id: str,
    client: str | None,
    result: str,
    code: str | None,
    details: dict[str, Any],
) -> dict[str, Any]:
    return {
        "at": iso(at),
        "actor": actor,
        "actor_kind": actor_kind,
        "action": action,
        "target_type": target_type,
        "target_id": target_id,
        "client": client,
        "result": result,
        "code": code,
        "details": details,
    }


def _fields_of_row(row: m.AuditEntry) -> dict[str, Any]:
    return hashed_fields(
        row.at,
        row.actor,
        row.actor_kind,
        row.action,
        row.target_type,
        row.target_id,
        row.client,
        row.result,
        row.code,
        row.details,
    )


def _lock_head(s: Session, tenant_id: str) -> m.AuditHead:
    q = select(m.AuditHead).where(m.AuditHead.tenant_id == tenant_id).with_for_update()
    head = s.scalar(q)
    if head is None:
        # First entry of the tenant: create the head; a concurrent creator may win, which is
        # fine, and the locked read below then sees its row.
        insert = pg_insert if s.get_bind().dialect.name == "postgresql" else sqlite_insert
        s.execute(
            insert(m.AuditHead)
            .values(tenant_id=tenant_id, seq=0, hash=GENESIS)
            .on_conflict_do_nothing()
        )
        head = s.scalar(q.execution_options(populate_existing=True))
    assert head is not None
    return head


def append_entries(s: Session, tenant_id: str, entries: Iterable[Entry]) -> int:
    """Chain ``entries`` (all of ``tenant_id``) onto the tenant's log inside the caller's unit
    of work. Returns the last seq written."""
    head = _lock_head(s, tenant_id)
    seq, prev = head.seq, head.hash
    rows = []
    for e in entries:
        if e.tenant_id != tenant_id:
            raise ValueError("an audit batch holds one tenant's entries")
        seq += 1
        # Stored times are cut to milliseconds, the precision the hash covers.
        at = e.at.replace(microsecond=e.at.microsecond // 1000 * 1000)
        details = orjson.loads(orjson.dumps(e.details, default=str))
        fields = hashed_fields(
            at,
            e.actor,
            e.actor_kind,
            e.action,
            e.target_type,
            e.target_id,
            e.client,
            e.result,
            e.code,
            details,
        )
        digest = entry_hash(tenant_id, seq, fields, prev)
        rows.append(
            m.AuditEntry(
                tenant_id=tenant_id,
                seq=seq,
                at=at,
                actor=e.actor,
                actor_kind=e.actor_kind,
                action=e.action,
                target_type=e.target_type,
                target_id=e.target_id,
                client=e.client,
                result=e.result,
                code=e.code,
                details=details,
                prev_hash=prev,
                hash=digest,
            )
        )
        ENTRIES.labels(result=e.result).inc()
        prev = digest
    s.add_all(rows)
    head.seq, head.hash = seq, prev
    return seq


def record_in(
    s: Session,
    p: Principal,
    action: str,
    target_type: str,
    target_id: str,
    *,
    client: str | None,
    details: dict[str, Any] | None = None,
) -> None:
    """Append one entry in the caller's unit of work: it commits with the change it records.
    Call :func:`mark_recorded` after the commit so the transport writes no second entry."""
    entry = Entry.of(p, action, target_type, target_id, client=client, details=details)
    append_entries(s, p.tenant_id, [entry])


# -- where a request came from ---------------------------------------------------------------


@dataclass(slots=True)
class RequestScope:
    """Set by the transports (REST middleware, socket pump) around each request or frame:
    the client address for entries written deeper down, and whether an entry was already
    written in the transaction of the change (so the transport does not write a second)."""

    client: str | None = None
    recorded: bool = False


current: ContextVar[RequestScope | None] = ContextVar("parley_audit_scope", default=None)


def client_address() -> str | None:
    scope = current.get()
    return scope.client if scope else None


def mark_recorded() -> None:
    scope = current.get()
    if scope is not None:
        scope.recorded = True


# -- the batching recorder -------------------------------------------------------------------


class AuditRecorder:
    """Queues audit entries and appends them every ``interval`` seconds, per tenant, in one
    transaction each. Start it, and stop it to flush (the app's lifespan does both)."""

    def __init__(self, db: Database, *, interval: float = 0.1) -> None:
        self.db = db
        self.interval = interval
        self._pending: dict[str, list[Entry]] = {}
        self._count = 0
        self._task: asyncio.Task[None] | None = None
        self._coalesced: dict[tuple[Any, ...], Entry] = {}

    async def record(
        self,
        principal: Principal,
        action: str,
        target_type: str,
        target_id: str,
        result: str = "ok",
        *,
        code: str | None = None,
        client: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        """Record that ``principal`` did ``action`` on ``target_type``/``target_id``.

        ``result`` is ``ok``, ``denied`` (authentication, permission, invisible target) or
        ``error`` (anything else that was refused), with the error ``code``; :func:`result_of`
        maps an exception to both. ``client`` is the peer address (default: the current
        request's). ``details`` is small JSON. Returns at once; the entry is stored within
        about ``interval`` seconds. Export, search and purge call this for their reads and
        deletions, e.g.::

            await audit.record(p, "session.export", "session", sid, client=request_client)
        """
        self.record_nowait(
            Entry.of(
                principal,
                action,
                target_type,
                target_id,
                result,
                code=code,
                client=client if client is not None else client_address(),
                details=details,
            )
        )

    def record_nowait(self, entry: Entry, *, coalesce: bool = False) -> None:
        """Queue a built entry (for callers that are not coroutines). With ``coalesce``, an
        entry equal to one already queued in this flush (same tenant, actor, action, target,
        result, client) only increments that one's ``details["count"]``."""
        if coalesce:
            key = _coalesce_key(
                entry.tenant_id,
                entry.actor,
                entry.action,
                entry.target_id,
                entry.result,
                entry.code,
                entry.client,
            )
            if self._count_again(key):
                return
            self._coalesced[key] = entry
        if self._count >= MAX_PENDING:
            DROPPED.inc()
            log.error("audit queue full; dropping an entry", action=entry.action)
            return
        self._pending.setdefault(entry.tenant_id, []).append(entry)
        self._count += 1
        PENDING.set(self._count)

    def record_coalesced(
        self,
        principal: Principal,
        action: str,
        target_type: str,
        target_id: str,
        result: str = "ok",
        *,
        code: str | None = None,
        client: str | None = None,
    ) -> None:
        """``record_nowait(Entry.of(...), coalesce=True)`` for per-message actions: an entry
        equal to one queued in this flush is counted without building a new one first."""
        key = _coalesce_key(
            principal.tenant_id, principal.user_id, action, target_id, result, code, client
        )
        if not self._count_again(key):
            entry = Entry.of(
                principal, action, target_type, target_id, result, code=code, client=client
            )
            self.record_nowait(entry, coalesce=True)

    def _count_again(self, key: tuple[Any, ...]) -> bool:
        first = self._coalesced.get(key)
        if first is None:
            return False
        first.details["count"] = first.details.get("count", 1) + 1
        return True

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        """Stop the timer and store everything still queued."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.flush()

    async def flush(self) -> None:
        """Append everything queued now, one transaction per tenant. A tenant whose append
        fails keeps its entries for the next flush."""
        pending, self._pending, self._count = self._pending, {}, 0
        self._coalesced = {}
        for tenant_id, entries in pending.items():
            try:
                await self.db.write(_appender(tenant_id, entries))
            except Exception as exc:
                FLUSH_FAILURES.inc()
                log.warning("audit flush failed; will retry", tenant=tenant_id, error=str(exc))
                self._pending.setdefault(tenant_id, [])[:0] = entries
                self._count += len(entries)
        PENDING.set(self._count)


def _appender(tenant_id: str, entries: list[Entry]) -> Callable[[Session], int]:
    return lambda s: append_entries(s, tenant_id, entries)


# -- reading and checking ---------------------------------------------------------------------


def entry_view(row: m.AuditEntry) -> dict[str, Any]:
    """An entry as JSON (REST, export): every stored field."""
    return {
        "tenant": row.tenant_id,
        "seq": row.seq,
        **_fields_of_row(row),
        "prev_hash": row.prev_hash,
        "hash": row.hash,
    }


@dataclass(slots=True)
class Filter:
    actor: str | None = None
    action: str | None = None
    target: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def query(tenant_id: str, f: Filter, *, before_seq: int | None, limit: int) -> Any:
    """Newest first; ``before_seq`` pages backwards."""
    q = select(m.AuditEntry).where(m.AuditEntry.tenant_id == tenant_id)
    if f.actor:
        q = q.where(m.AuditEntry.actor == f.actor)
    if f.action:
        q = q.where(m.AuditEntry.action == f.action)
    if f.target:
        q = q.where(m.AuditEntry.target_id == f.target)
    if f.since:
        q = q.where(m.AuditEntry.at >= f.since)
    if f.until:
        q = q.where(m.AuditEntry.at < f.until)
    if before_seq is not None:
        q = q.where(m.AuditEntry.seq < before_seq)
    return q.order_by(m.AuditEntry.seq.desc()).limit(limit)


async def search(
    db: Database, tenant_id: str, f: Filter, *, before_seq: int | None, limit: int
) -> tuple[list[dict[str, Any]], int | None]:
    """A page of entries, newest first, and the cursor of the next page (None at the end)."""

    def work(s: Session) -> tuple[list[dict[str, Any]], int | None]:
        rows = list(s.scalars(query(tenant_id, f, before_seq=before_seq, limit=limit + 1)))
        more = len(rows) > limit
        rows = rows[:limit]
        return [entry_view(r) for r in rows], (rows[-1].seq if more and rows else None)

    return await db.read(work)


async def export(
    db: Database, tenant_id: str, f: Filter | None = None, *, page: int = 1000
) -> AsyncIterator[dict[str, Any]]:
    """Every entry of a tenant, oldest first, read in pages."""
    f = f or Filter()
    after = 0
    while True:

        def work(s: Session, after: int = after) -> list[dict[str, Any]]:
            q = query(tenant_id, f, before_seq=None, limit=page)
            q = q.where(m.AuditEntry.seq > after).order_by(None).order_by(m.AuditEntry.seq)
            return [entry_view(r) for r in s.scalars(q)]

        rows = await db.read(work)
        for row in rows:
            yield row
        if len(rows) < page:
            return
        after = rows[-1]["seq"]


@dataclass(slots=True)
class Broken:
    """The first link of a chain that does not hold."""

    tenant_id: str
    seq: int
    problem: str


async def tenants(db: Database) -> list[str]:
    """Every tenant that has an audit chain."""

    def work(s: Session) -> list[str]:
        q = select(m.AuditHead.tenant_id).order_by(m.AuditHead.tenant_id)
        return list(s.scalars(q.execution_options(parley_all_tenants="audit verify")))

    return await db.read(work)


async def verify(db: Database, tenant_id: str, *, page: int = 2000) -> tuple[int, Broken | None]:
    """Walk a tenant's chain; return how many entries were checked and the first broken link
    (None when the chain holds, up to and including its head)."""
    prev, expected, checked = GENESIS, 1, 0
    while True:

        def work(s: Session, after: int = expected - 1) -> list[m.AuditEntry]:
            q = (
                select(m.AuditEntry)
                .where(m.AuditEntry.tenant_id == tenant_id, m.AuditEntry.seq > after)
                .order_by(m.AuditEntry.seq)
                .limit(page)
            )
            return list(s.scalars(q))

        rows = await db.read(work)
        for row in rows:
            if row.seq != expected:
                return checked, Broken(tenant_id, expected, f"entry {expected} is missing")
            if row.prev_hash != prev:
                return checked, Broken(tenant_id, row.seq, "prev_hash does not match entry before")
            if entry_hash(tenant_id, row.seq, _fields_of_row(row), prev) != row.hash:
                return checked, Broken(tenant_id, row.seq, "hash does not match the entry")
            prev, expected, checked = row.hash, expected + 1, checked + 1
        if len(rows) < page:
            break

    def head(s: Session) -> tuple[int, str] | None:
        found = s.execute(
            select(m.AuditHead.seq, m.AuditHead.hash).where(m.AuditHead.tenant_id == tenant_id)
        ).first()
        return (found[0], found[1]) if found else None

    stored = await db.read(head)
    if stored is not None and stored != (expected - 1, prev):
        return checked, Broken(
            tenant_id,
            expected,
            f"the chain ends at entry {expected - 1} but its head says {stored[0]}",
        )
    return checked, None

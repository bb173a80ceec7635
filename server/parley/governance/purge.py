"""The right to be forgotten: remove one person's content from every session of a tenant.

What a purge removes (docs/privacy.md, "Purging a user", is the reference):

* the text, parts and metadata of every message they wrote (the row stays as a tombstone,
  ``deleted_at`` set and ``metadata.purged`` true, so replies keep their place in the tree);
* the same content inside the durable events that carried those messages (``message.created``,
  ``message.edited``, ``message.deleted``), which replay and ``/events`` serve, so no earlier
  version of an edited message survives;
* their display name inside ``participant.*`` events, their participant rows, their user row,
  and their API keys;
* their annotations and annotation replies in session documents are **not** removed: the
  document's storage is a merged CRDT state without authorship per byte (see the doc).

The purge returns a :class:`PurgeReport` (who, whom, counts), never the content, and logs it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from parley.governance import audit
from parley.governance.scoping import all_tenants
from parley.ids import iso, utcnow
from parley.storage import models as m
from parley.storage.database import Database

# Each unit works on one tenant named by the caller; its statements narrow by session ids.
ONE_TENANT = "retention and purges work within the one tenant they were given"

log = structlog.get_logger("parley.governance")

MESSAGE_EVENTS = ("message.created", "message.edited", "message.deleted")
PARTICIPANT_EVENTS = ("participant.joined", "participant.updated")
PURGED_META = {"purged": True}

Progress = Callable[[str], None]


@dataclass(slots=True)
class PurgeReport:
    """What a purge did: the record to keep (it holds no content)."""

    actor: str
    tenant_id: str
    user_id: str
    started_at: str
    finished_at: str | None = None
    sessions: int = 0
    messages: int = 0
    events: int = 0
    participants: int = 0
    api_keys: int = 0
    user_row: bool = False
    session_ids: list[str] = field(default_factory=list)

    def view(self) -> dict[str, Any]:
        return asdict(self)


def _count(result: Any) -> int:
    """Rows an UPDATE or DELETE touched (``CursorResult.rowcount``)."""
    return int(result.rowcount)


def _blank_message(data: dict[str, Any], now: datetime) -> dict[str, Any]:
    message = dict(data.get("message") or {})
    message.update(text="", parts=None, metadata=PURGED_META)
    message["deleted_at"] = message.get("deleted_at") or iso(now)
    return {**data, "message": message}


async def purge_user(
    db: Database,
    tenant_id: str,
    user_id: str,
    *,
    actor: str,
    actor_kind: str = "operator",
    client: str | None = None,
    progress: Progress | None = None,
) -> PurgeReport:
    """Remove ``user_id``'s content from every session of ``tenant_id`` (module docstring).
    The audit trail keeps a record of the purge (who, when, the counts), never of the content."""
    say = progress or (lambda _line: None)
    now = utcnow()
    report = PurgeReport(
        actor=actor, tenant_id=tenant_id, user_id=user_id, started_at=iso(now) or ""
    )

    def sessions_of(s: Session) -> list[str]:
        authored = (
            select(m.Message.session_id)
            .distinct()
            .where(m.Message.tenant_id == tenant_id, m.Message.author_id == user_id)
        )
        joined = (
            select(m.Participant.session_id)
            .distinct()
            .where(m.Participant.tenant_id == tenant_id, m.Participant.user_id == user_id)
        )
        acted = (
            select(m.Event.session_id)
            .distinct()
            .where(m.Event.tenant_id == tenant_id, m.Event.actor_id == user_id)
        )
        ids = set(s.scalars(authored).all()) | set(s.scalars(joined).all())
        ids |= set(s.scalars(acted).all())
        return sorted(ids)

    session_ids = await db.read(all_tenants(ONE_TENANT, sessions_of))
    say(f"purging {user_id} in tenant {tenant_id}: {len(session_ids)} sessions")
    for number, session_id in enumerate(session_ids, start=1):

        def work(s: Session, session_id: str = session_id) -> tuple[int, int, int]:
            messages = _count(
                s.execute(
                    update(m.Message)
                    .where(
                        m.Message.session_id == session_id,
                        m.Message.tenant_id == tenant_id,
                        m.Message.author_id == user_id,
                    )
                    .values(text="", parts=None, meta=PURGED_META, client_id=None)
                )
            )
            s.execute(
                update(m.Message)
                .where(
                    m.Message.session_id == session_id,
                    m.Message.author_id == user_id,
                    m.Message.deleted_at.is_(None),
                )
                .values(deleted_at=now)
            )
            events = 0
            rows = s.scalars(
                select(m.Event).where(
                    m.Event.session_id == session_id,
                    m.Event.tenant_id == tenant_id,
                    m.Event.name.in_(MESSAGE_EVENTS + PARTICIPANT_EVENTS),
                )
            ).all()
            for ev in rows:
                data = ev.data or {}
                if ev.name in MESSAGE_EVENTS:
                    if (data.get("message") or {}).get("author") == user_id:
                        ev.data = _blank_message(data, now)
                        events += 1
                elif (data.get("participant") or {}).get("user_id") == user_id:
                    ev.data = {**data, "participant": {**data["participant"], "name": user_id}}
                    events += 1
            participants = _count(
                s.execute(
                    delete(m.Participant).where(
                        m.Participant.session_id == session_id, m.Participant.user_id == user_id
                    )
                )
            )
            if events:
                # Servers' memory copies of recent events (hub/feed.py) are now stale.
                s.execute(
                    update(m.Session)
                    .where(m.Session.id == session_id, m.Session.tenant_id == tenant_id)
                    .values(history_rev=m.Session.history_rev + 1)
                )
            return messages, events, participants

        messages, events, participants = await db.write(all_tenants(ONE_TENANT, work))
        report.messages += messages
        report.events += events
        report.participants += participants
        report.sessions += 1
        report.session_ids.append(session_id)
        say(
            f"  [{number}/{len(session_ids)}] session {session_id}: {messages} messages, "
            f"{events} events, {participants} participant rows"
        )

    def identity(s: Session) -> tuple[int, bool]:
        keys = _count(
            s.execute(
                delete(m.ApiKey).where(m.ApiKey.tenant_id == tenant_id, m.ApiKey.user_id == user_id)
            )
        )
        user = _count(
            s.execute(delete(m.User).where(m.User.tenant_id == tenant_id, m.User.id == user_id))
        )
        return keys, bool(user)

    report.api_keys, report.user_row = await db.write(all_tenants(ONE_TENANT, identity))
    report.finished_at = iso(utcnow())
    entry = audit.Entry(
        tenant_id=tenant_id,
        actor=actor,
        actor_kind=actor_kind,
        action="user.purge",
        target_type="user",
        target_id=user_id,
        client=client,
        details=report.view(),
    )
    await db.write(all_tenants(ONE_TENANT, lambda s: audit.append_entries(s, tenant_id, [entry])))
    say(
        f"done: {report.messages} messages and {report.events} events blanked in "
        f"{report.sessions} sessions; {report.participants} participant rows, "
        f"{report.api_keys} API keys and {int(report.user_row)} user row removed"
    )
    log.info("user purged", **{k: v for k, v in report.view().items() if k != "session_ids"})
    return report

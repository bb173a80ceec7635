"""The automation engine: rules fire off the hot path, from the tenant feed (a leased
:class:`~parley.integrations.consumer.FeedConsumer`) and from a cron scheduler.

Actions act as the tenant's automation bot (user ``parley-automation``, kind bot). Whatever
they write carries the causation stamp ``{"rule", "chain", "depth"}``: in a message's metadata,
or in the ``data`` of the events the engine writes itself (tags, the bot joining). A rule never
fires on an event whose chain already holds it, nor past ``PARLEY_AUTOMATION_MAX_DEPTH``; such
firings are recorded as ``loop_stopped`` runs. Event rules are at least once (the feed cursor
moves after the batch); posts are idempotent by a ``client_id`` derived from rule and event.
Scheduled rules are claimed by moving their next run time in the claiming transaction, so one
process runs each occurrence; the same transaction writes the occurrence's run as ``running``.
A run still ``running`` after the claim lease (its process died mid-way) is claimed again and
run again, with the same idempotency keys: scheduled occurrences are at least once too.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from parley import metrics
from parley.errors import Conflict, Forbidden, InvalidRequest, ParleyError
from parley.governance.auth import Principal, TenantRole, UserKind
from parley.governance.scoping import all_tenants
from parley.ids import iso, new_id, utcnow
from parley.integrations.automation import rules as r
from parley.integrations.automation.service import rule_row, run_view
from parley.integrations.automation.summary import summarize
from parley.integrations.webhooks import WebhookService
from parley.relay.assistants import USER_PREFIX
from parley.relay.service import Relay
from parley.sessions.queries import (
    new_event,
    readable_sessions_filter,
    role_of,
    session_row,
    tags_of,
)
from parley.sessions.rules import Role, clean_tags
from parley.sessions.service import SessionService
from parley.sessions.views import event_view, participant_view, session_view
from parley.storage import models as m
from parley.storage.database import Database
from parley.storage.feed_log import FeedItem

# Background workers serve every tenant: each row they take names its own tenant.
SPANS = "a background worker of every tenant"

log = structlog.get_logger("parley.automation")
_NS = uuid.UUID("0b7f6e51-29a4-4c57-8a3e-5d1c0f9d2b64")
DIGEST_SESSIONS = 20
SUMMARY_PROMPT = "Summarize the conversation so far in a few sentences."
RUNNING = "running"  # a claimed scheduled occurrence, until its outcome is stored


@dataclass(frozen=True, slots=True)
class _Rule:
    id: str
    tenant_id: str
    name: str
    trigger: r.Trigger | None
    actions: list[dict[str, Any]]

    @classmethod
    def of(cls, row: m.AutomationRule) -> _Rule:
        trigger = r.Trigger.model_validate(row.trigger) if row.trigger else None
        return cls(row.id, row.tenant_id, row.name, trigger, list(row.actions))

    @property
    def asks_assistants(self) -> bool:
        return any(
            a["type"] == "add_assistant" or (a["type"] == "summarize" and a.get("assistant"))
            for a in self.actions
        )


@dataclass(frozen=True, slots=True)
class _Target:
    """Where and why actions run: the event's session and seq, or a scheduled occurrence."""

    tenant_id: str
    session_id: str | None
    seq: int | None
    key: str  # unique per firing: idempotency keys derive from it
    frame: dict[str, Any] | None


def bot(tenant_id: str) -> Principal:
    return Principal(
        tenant_id=tenant_id,
        user_id=r.BOT_USER,
        name=r.BOT_NAME,
        kind=UserKind.BOT,
        tenant_role=TenantRole.ADMIN,
    )


class AutomationEngine:
    """Runs rules: ``handle`` is the feed consumer's handler; ``start`` runs the scheduler."""

    def __init__(
        self,
        db: Database,
        service: SessionService,
        relay: Relay,
        webhooks: WebhookService,
        wake_delivery: Callable[[], None],
        *,
        max_depth: int,
        tick: float,
        claim_lease: float = 300.0,
    ) -> None:
        self.db = db
        self.service = service
        self.relay = relay
        self.webhooks = webhooks
        self.wake_delivery = wake_delivery
        self.max_depth = max_depth
        self.tick = tick
        self.claim_lease = timedelta(seconds=claim_lease)
        self._task: asyncio.Task[None] | None = None

    # -- event rules ------------------------------------------------------------------------

    async def handle(self, items: list[FeedItem]) -> bool:
        """Fire the event rules that match these committed events, in feed order; True when
        any rule of these tenants was considered (runs may have been recorded)."""
        tenants = sorted({i.tenant_id for i in items})

        def load(s: Session) -> tuple[dict[str, list[_Rule]], dict[str, list[str]]]:
            rows = s.scalars(
                select(m.AutomationRule)
                .where(
                    m.AutomationRule.tenant_id.in_(tenants),
                    m.AutomationRule.enabled,
                    m.AutomationRule.schedule.is_(None),
                )
                .order_by(m.AutomationRule.id)
            ).all()
            by_tenant: dict[str, list[_Rule]] = {}
            for row in rows:
                by_tenant.setdefault(row.tenant_id, []).append(_Rule.of(row))
            tags: dict[str, list[str]] = {}
            for tenant in by_tenant:
                wanted = sorted({i.session_id for i in items if i.tenant_id == tenant})
                tags.update(tags_of(s, wanted, tenant))
            return by_tenant, tags

        by_tenant, tags = await self.db.read(all_tenants(SPANS, load))
        if not by_tenant:
            return False
        for item in items:
            for rule in by_tenant.get(item.tenant_id, []):
                await self._consider(rule, item, tags.get(item.session_id, []))
        return True

    async def _consider(self, rule: _Rule, item: FeedItem, tags: list[str]) -> None:
        assert rule.trigger is not None
        cause = r.causation_of(item.frame)
        if cause.unknown:  # the bot's own bookkeeping (it joined a session): never a trigger
            return
        actor = item.frame.get("actor") or ""
        if rule.asks_assistants and actor.startswith(USER_PREFIX):
            return  # an assistant answering an assistant-asking rule would go round forever
        target = _Target(
            item.tenant_id, item.session_id, item.seq, f"{item.session_id}/{item.seq}", item.frame
        )
        try:
            if not r.matches(rule.trigger, item.frame, tags):
                return
        except r.PatternTimeout:
            await self._record(rule, target, "event", "failed", {"error": "text pattern timed out"})
            return
        reason = r.loop_reason(rule.id, cause, self.max_depth)
        if reason is not None:
            log.warning("automation loop stopped", rule=rule.id, reason=reason)
            await self._record(
                rule, target, "event", "loop_stopped", {"reason": reason, "chain": cause.chain}
            )
            return
        await self._fire(rule, target, "event", cause.then(rule.id))

    # -- scheduled rules --------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._schedule_loop(), name="automation-scheduler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _schedule_loop(self) -> None:
        while True:
            try:
                for rule, at, run_id in await self.db.write(all_tenants(SPANS, self._claim_due)):
                    await self._run_scheduled(rule, at, run_id)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("automation scheduler step failed")
            await asyncio.sleep(self.tick)

    def _claim_due(self, s: Session) -> list[tuple[_Rule, datetime, str]]:
        """Claim the due occurrences (each moves its rule's next run time and writes a
        ``running`` run in this transaction) and the occurrences whose claimer vanished."""
        now = utcnow()
        rows = s.scalars(
            select(m.AutomationRule)
            .where(
                m.AutomationRule.enabled,
                m.AutomationRule.schedule.is_not(None),
                m.AutomationRule.next_run_at <= now,
            )
            .order_by(m.AutomationRule.next_run_at)
            .limit(20)
            .with_for_update(skip_locked=True)
        ).all()
        due = []
        for row in rows:
            assert row.schedule is not None
            assert row.next_run_at is not None
            run = m.AutomationRun(
                id=new_id(),
                tenant_id=row.tenant_id,
                rule_id=row.id,
                cause="schedule",
                status=RUNNING,
                detail={"scheduled_for": iso(row.next_run_at)},
                created_at=now,
            )
            s.add(run)
            due.append((_Rule.of(row), row.next_run_at, run.id))
            row.next_run_at = r.next_run(row.schedule, now)
        return due + self._reclaim_abandoned(s, now)

    def _reclaim_abandoned(self, s: Session, now: datetime) -> list[tuple[_Rule, datetime, str]]:
        """Occurrences claimed more than the lease ago and never finished: the process that
        claimed them died (a finished run is never ``running``). Renewing the claim time in
        this transaction gives each to one process."""
        stale = s.execute(
            select(m.AutomationRun, m.AutomationRule)
            .join(
                m.AutomationRule,
                and_(
                    m.AutomationRule.id == m.AutomationRun.rule_id,
                    m.AutomationRule.tenant_id == m.AutomationRun.tenant_id,
                ),
            )
            .where(
                m.AutomationRun.status == RUNNING,
                m.AutomationRun.created_at < now - self.claim_lease,
                m.AutomationRule.enabled,
            )
            .order_by(m.AutomationRun.created_at)
            .limit(20)
            .with_for_update(of=m.AutomationRun, skip_locked=True)
        ).all()
        again = []
        for run, rule in stale:
            run.created_at = now
            at = datetime.fromisoformat(run.detail["scheduled_for"])
            log.warning("automation occurrence run again", rule=rule.id, scheduled_for=iso(at))
            again.append((_Rule.of(rule), at, run.id))
        return again

    async def run_now(self, p: Principal, rule_id: str) -> dict[str, Any]:
        """Run a scheduled rule at once (REST ``POST /automations/{id}/run``); admins only."""
        if not p.is_admin:
            raise Forbidden("only tenant admins may run automation rules")
        row = await self.db.read(lambda s: rule_row(s, p.tenant_id, rule_id))
        rule = _Rule.of(row)
        if rule.trigger is not None:
            raise InvalidRequest("only scheduled rules run on demand; event rules run on events")
        return await self._run_scheduled(rule, utcnow())

    async def _run_scheduled(
        self, rule: _Rule, at: datetime, run_id: str | None = None
    ) -> dict[str, Any]:
        target = _Target(rule.tenant_id, None, None, f"schedule/{iso(at)}", None)
        return await self._fire(rule, target, "schedule", r.Causation().then(rule.id), run_id)

    # -- actions ----------------------------------------------------------------------------

    async def _fire(
        self,
        rule: _Rule,
        target: _Target,
        cause: str,
        stamp: dict[str, Any],
        run_id: str | None = None,
    ) -> dict[str, Any]:
        results: list[dict[str, Any]] = []
        status = "ok"
        for action in rule.actions:
            try:
                results.append(await self._act(rule, action, target, stamp))
            except ParleyError as exc:
                results.append({"type": action["type"], "error": exc.message})
                status = "failed"
                break
            except Exception as exc:
                log.exception("automation action failed", rule=rule.id, action=action["type"])
                results.append({"type": action["type"], "error": type(exc).__name__})
                status = "failed"
                break
        return await self._record(rule, target, cause, status, {"actions": results}, run_id)

    async def _act(
        self, rule: _Rule, action: dict[str, Any], target: _Target, stamp: dict[str, Any]
    ) -> dict[str, Any]:
        kind = action["type"]
        me = bot(target.tenant_id)
        await self.service.ensure_principal(me)
        client_id = f"auto-{rule.id}-{uuid.uuid5(_NS, target.key)}"
        sid = action.get("session") or target.session_id
        if kind == "tag":
            assert sid is not None
            added = await self._tag(me, sid, action["tags"], stamp)
            return {"type": kind, "added": added}
        if kind == "post_message":
            assert sid is not None
            result = await self.service.post_message(
                me, sid, text=action["text"], metadata={"automation": stamp}, client_id=client_id
            )
            return {"type": kind, "message": result.message["id"]}
        if kind == "add_assistant":
            assert sid is not None
            await self._join(me, sid, stamp)
            try:
                view = await self.relay.assistants.create(
                    me,
                    sid,
                    name=action["name"],
                    provider=action["provider"],
                    model=action["model"],
                    system_prompt=action["system_prompt"],
                    params=action["params"],
                )
            except Conflict:
                return {"type": kind, "assistant": None, "note": "already in the session"}
            return {"type": kind, "assistant": view["id"]}
        if kind == "call_webhook":
            return await self._call_webhook(rule, action, target, stamp)
        if kind == "summarize":
            assert sid is not None
            return await self._summarize(me, sid, action, stamp, client_id)
        if kind == "digest":
            return await self._digest(me, action, stamp, client_id)
        raise InvalidRequest(f"unknown action {kind!r}")

    async def _tag(
        self, me: Principal, session_id: str, tags: list[str], stamp: dict[str, Any]
    ) -> list[str]:
        """Add tags (never removes); a ``session.updated`` stamped with the causation."""
        now = utcnow()

        def work(s: Session) -> tuple[list[str], list[dict[str, Any]]]:
            row = session_row(s, me, session_id, lock=True)
            current = tags_of(s, [session_id], me.tenant_id)[session_id]
            merged = clean_tags([*current, *tags])
            added = [t for t in merged if t not in current]
            if not added:
                return [], []
            s.add_all(
                m.SessionTag(session_id=session_id, tag=t, tenant_id=me.tenant_id) for t in added
            )
            row.last_seq += 1
            row.updated_at = now
            view = session_view(row, merged)
            data = {"session": view, "changed": ["tags"], "automation": stamp}
            ev = new_event(me, session_id, row.last_seq, "session.updated", data, now)
            s.add(ev)
            return added, [event_view(ev)]

        added, frames = await self.db.write(work)
        await self._publish(me.tenant_id, session_id, frames)
        return added

    async def _join(self, me: Principal, session_id: str, stamp: dict[str, Any]) -> None:
        """Make the bot an editor of the session (assistants need a writer to add them)."""
        now = utcnow()

        def work(s: Session) -> list[dict[str, Any]]:
            row = session_row(s, me, session_id, lock=True)
            if role_of(s, me.user_id, session_id, me.tenant_id) is not None:
                return []
            part = m.Participant(
                session_id=session_id,
                user_id=me.user_id,
                tenant_id=me.tenant_id,
                role=Role.EDITOR.value,
                joined_at=now,
            )
            s.add(part)
            row.last_seq += 1
            user = s.get(m.User, (me.tenant_id, me.user_id))
            data = {"participant": participant_view(part, user), "automation": stamp}
            ev = new_event(me, session_id, row.last_seq, "participant.joined", data, now)
            s.add(ev)
            return [event_view(ev)]

        await self._publish(me.tenant_id, session_id, await self.db.write(work))

    async def _call_webhook(
        self, rule: _Rule, action: dict[str, Any], target: _Target, stamp: dict[str, Any]
    ) -> dict[str, Any]:
        name = "automation.rule" if target.frame is not None else "automation.schedule"
        frame = {
            "event": name,
            "session": target.session_id,
            "seq": target.seq,
            "actor": r.BOT_USER,
            "ts": iso(utcnow()),
            "data": {"rule": {"id": rule.id, "name": rule.name}, "event": target.frame},
        }
        delivery = str(uuid.uuid5(_NS, f"{rule.id}/{action['webhook']}/{target.key}"))
        if not await self.webhooks.enqueue(target.tenant_id, action["webhook"], delivery, frame):
            raise InvalidRequest(f"webhook {action['webhook']!r} not found")
        self.wake_delivery()
        return {"type": "call_webhook", "delivery": delivery}

    async def _summarize(
        self,
        me: Principal,
        session_id: str,
        action: dict[str, Any],
        stamp: dict[str, Any],
        client_id: str,
    ) -> dict[str, Any]:
        if action.get("assistant"):
            await self._join(me, session_id, stamp)
            answer = await self.relay.ask(
                me, session_id, action["assistant"], text=SUMMARY_PROMPT, client_id=client_id
            )
            return {"type": "summarize", "stream": answer.get("stream_id")}
        limit = int(action.get("messages", 50))

        def read(s: Session) -> list[str]:
            session_row(s, me, session_id)
            rows = s.scalars(
                select(m.Message.text)
                .where(
                    m.Message.tenant_id == me.tenant_id,
                    m.Message.session_id == session_id,
                    m.Message.deleted_at.is_(None),
                    m.Message.author_id != me.user_id,
                )
                .order_by(m.Message.seq.desc())
                .limit(limit)
            ).all()
            return list(reversed(rows))

        text = summarize(await self.db.read(read))
        if not text:
            return {"type": "summarize", "message": None, "note": "nothing to summarize"}
        result = await self.service.post_message(
            me,
            session_id,
            text="Summary: " + text,
            metadata={"automation": stamp},
            client_id=client_id,
        )
        return {"type": "summarize", "message": result.message["id"]}

    async def _digest(
        self, me: Principal, action: dict[str, Any], stamp: dict[str, Any], client_id: str
    ) -> dict[str, Any]:
        """Post a summary of the sessions active in the last ``hours`` into ``session``."""
        since = utcnow() - timedelta(hours=int(action["hours"]))
        target = action["session"]

        def read(s: Session) -> list[tuple[str, str, int, list[str]]]:
            session_row(s, me, target)
            sessions = s.scalars(
                select(m.Session)
                .where(
                    # Only what the automation's bot may read: a digest never carries a
                    # private session's text into another session.
                    readable_sessions_filter(me),
                    m.Session.updated_at >= since,
                    m.Session.id != target,
                )
                .order_by(m.Session.updated_at.desc())
                .limit(DIGEST_SESSIONS)
            ).all()
            out = []
            for row in sessions:
                texts = s.scalars(
                    select(m.Message.text)
                    .where(
                        and_(
                            m.Message.tenant_id == me.tenant_id,
                            m.Message.session_id == row.id,
                            m.Message.created_at >= since,
                            m.Message.deleted_at.is_(None),
                        )
                    )
                    .order_by(m.Message.seq)
                    .limit(200)
                ).all()
                count = s.scalar(
                    select(func.count())
                    .select_from(m.Message)
                    .where(
                        m.Message.tenant_id == me.tenant_id,
                        m.Message.session_id == row.id,
                        m.Message.created_at >= since,
                    )
                )
                out.append((row.id, row.title or "(untitled)", int(count or 0), list(texts)))
            return out

        sessions = await self.db.read(read)
        lines = [f"Digest of the last {action['hours']} h: {len(sessions)} active sessions."]
        for _sid, title, count, texts in sessions:
            gist = summarize(texts, sentences=1, max_chars=200)
            lines.append(f"- {title} ({count} messages)" + (f": {gist}" if gist else ""))
        result = await self.service.post_message(
            me, target, text="\n".join(lines), metadata={"automation": stamp}, client_id=client_id
        )
        return {"type": "digest", "sessions": len(sessions), "message": result.message["id"]}

    # -- bookkeeping ------------------------------------------------------------------------

    async def _publish(self, tenant_id: str, session_id: str, frames: list[dict[str, Any]]) -> None:
        if frames:
            try:
                await self.service.publisher.publish(tenant_id, session_id, frames)
            except Exception:  # committed; subscribers recover by gap fill
                log.exception("publishing automation events failed", session=session_id)

    async def _record(
        self,
        rule: _Rule,
        target: _Target,
        cause: str,
        status: str,
        detail: dict[str, Any],
        run_id: str | None = None,
    ) -> dict[str, Any]:
        """Store the run; a claimed occurrence's ``running`` row (``run_id``) gets its outcome."""
        metrics.AUTOMATION_RUNS.labels(status=status).inc()
        row = m.AutomationRun(
            id=run_id or new_id(),
            tenant_id=rule.tenant_id,
            rule_id=rule.id,
            cause=cause,
            session_id=target.session_id,
            seq=target.seq,
            status=status,
            detail=detail,
            created_at=utcnow(),
        )

        def work(s: Session) -> None:
            alive = select(m.AutomationRule.id).where(
                m.AutomationRule.tenant_id == rule.tenant_id, m.AutomationRule.id == rule.id
            )
            if s.scalar(alive) is None:  # deleted meanwhile (its runs went with it)
                return
            claimed = None
            if run_id is not None:
                claimed = s.scalar(
                    select(m.AutomationRun).where(
                        m.AutomationRun.tenant_id == rule.tenant_id, m.AutomationRun.id == run_id
                    )
                )
            if claimed is None:
                s.add(row)
                return
            claimed.status = status
            claimed.detail = {**claimed.detail, **detail}
            row.detail = claimed.detail
            row.created_at = claimed.created_at

        await self.db.write(work)
        return run_view(row)

"""Usage figures from what is stored now: sessions, messages, and the relay's usage records
(each assistant answer's ``metadata``: ``assistant``, ``provider``, ``model``, ``usage`` with
token counts, ``cost``). Simple aggregate queries, tenant-scoped; richer analytics live
elsewhere."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import distinct, func, select
from sqlalchemy.orm import Session

from parley.governance.auth import Principal
from parley.ids import utcnow
from parley.sessions.queries import plausible_id
from parley.storage import models as m
from parley.storage.database import Database

_meta = m.Message.meta
_ANSWER = _meta["stream_id"].as_string().is_not(None)
_INPUT = func.coalesce(func.sum(_meta["usage"]["input_tokens"].as_integer()), 0)
_OUTPUT = func.coalesce(func.sum(_meta["usage"]["output_tokens"].as_integer()), 0)
_COST = func.sum(_meta["cost"]["total"].as_float())
# One currency per price table (relay/prices.py); the largest name stands for all of them.
_CURRENCY = func.max(_meta["cost"]["currency"].as_string())


def _usage(answers: int, inp: Any, out: Any, cost: Any, currency: Any) -> dict[str, Any]:
    return {
        "answers": int(answers),
        "input_tokens": int(inp or 0),
        "output_tokens": int(out or 0),
        "cost": float(cost) if cost is not None else None,
        "currency": currency,
    }


class UsageQueries:
    """Aggregates for GraphQL's ``usage`` and ``analytics`` fields."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def of_sessions(self, p: Principal, session_ids: list[str]) -> dict[str, dict[str, Any]]:
        """Assistant answers, tokens and cost per session (sessions without answers: zeros)."""

        def work(s: Session) -> dict[str, dict[str, Any]]:
            ids = [i for i in dict.fromkeys(session_ids) if plausible_id(i)]
            out = {i: _usage(0, 0, 0, None, None) for i in ids}
            if not ids:
                return out
            rows = s.execute(
                select(m.Message.session_id, func.count(), _INPUT, _OUTPUT, _COST, _CURRENCY)
                .where(
                    m.Message.session_id.in_(ids),
                    m.Message.tenant_id == p.tenant_id,
                    _ANSWER,
                )
                .group_by(m.Message.session_id)
            ).all()
            for sid, answers, inp, outp, cost, currency in rows:
                out[sid] = _usage(answers, inp, outp, cost, currency)
            return out

        return await self.db.read(work)

    async def tenant(self, p: Principal, *, active_days: int) -> dict[str, Any]:
        """The tenant's session and message counts, users who wrote in the last
        ``active_days`` days (people and bots, not assistants), and usage per assistant."""
        since = utcnow() - timedelta(days=active_days)

        def work(s: Session) -> dict[str, Any]:
            sessions = s.scalar(
                select(func.count())
                .select_from(m.Session)
                .where(m.Session.tenant_id == p.tenant_id)
            )
            messages = s.scalar(
                select(func.count())
                .select_from(m.Message)
                .where(m.Message.tenant_id == p.tenant_id, m.Message.deleted_at.is_(None))
            )
            active = s.scalar(
                select(func.count(distinct(m.Message.author_id)))
                .join(
                    m.User,
                    (m.User.tenant_id == m.Message.tenant_id) & (m.User.id == m.Message.author_id),
                )
                .where(
                    m.Message.tenant_id == p.tenant_id,
                    m.Message.created_at >= since,
                    m.User.kind != "assistant",
                )
            )
            assistant = _meta["assistant"].as_string()
            provider = _meta["provider"].as_string()
            model = _meta["model"].as_string()
            rows = s.execute(
                select(
                    assistant,
                    provider,
                    model,
                    func.max(m.User.display_name),
                    func.count(),
                    _INPUT,
                    _OUTPUT,
                    _COST,
                    _CURRENCY,
                )
                .outerjoin(
                    m.User,
                    (m.User.tenant_id == m.Message.tenant_id) & (m.User.id == m.Message.author_id),
                )
                .where(m.Message.tenant_id == p.tenant_id, _ANSWER)
                .group_by(assistant, provider, model)
                .order_by(assistant, provider, model)
            ).all()
            return {
                "sessions": int(sessions or 0),
                "messages": int(messages or 0),
                "active_users": int(active or 0),
                "active_days": active_days,
                "assistants": [
                    {
                        "assistant_id": aid,
                        "name": name,
                        "provider": prov,
                        "model": mod,
                        **_usage(n, inp, outp, cost, currency),
                    }
                    for aid, prov, mod, name, n, inp, outp, cost, currency in rows
                ],
            }

        return await self.db.read(work)

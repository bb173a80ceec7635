"""Usage and conversation analytics per tenant, session, user, assistant or model.

One read gathers the messages in range (with their authors' kinds, the relay's metadata of
LLM answers, and their analysed sentiment and intent); the numbers are computed in Python so
the same code serves SQLite and PostgreSQL. At most ``MAX_ROWS`` messages are read; the answer
says when that limit cut the range (``truncated``).
"""

from __future__ import annotations

import csv
import io
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from parley.errors import InvalidRequest, NotFound
from parley.governance.auth import Principal
from parley.ids import iso
from parley.intelligence import quality
from parley.sessions.queries import plausible_id, readable_sessions_filter
from parley.storage import models as m

Scope = Literal["tenant", "session", "user", "assistant", "model"]
SCOPES: tuple[str, ...] = ("tenant", "session", "user", "assistant", "model")
MAX_ROWS = 200_000
MAX_GAP_SECONDS = 24 * 3600  # longer pauses are not "response times"
OK_FINISH = ("stop", "tool_calls")
BREAKDOWNS: tuple[str, ...] = ("model", "assistant", "user", "session")
MAX_GROUPS = 50  # per breakdown, the groups with the most messages


@dataclass(frozen=True, slots=True)
class Row:
    session_id: str
    author_id: str
    kind: str
    created_at: datetime
    meta: dict[str, Any]
    sentiment: float | None
    intent: str | None


def load(
    s: Session,
    p: Principal,
    scope: str,
    ident: str | None,
    start: datetime | None,
    end: datetime | None,
) -> tuple[list[Row], bool, int]:
    """Messages of the scope in range; whether the limit cut them; sessions created in range."""
    if scope not in SCOPES:
        raise InvalidRequest("scope must be tenant, session, user, assistant or model")
    if scope != "tenant" and not ident:
        raise InvalidRequest(f"scope {scope} needs an id")
    readable = select(m.Session.id).where(readable_sessions_filter(p))
    q = (
        select(
            m.Message.session_id,
            m.Message.author_id,
            m.User.kind,
            m.Message.created_at,
            m.Message.meta,
            m.MessageInsight.sentiment,
            m.MessageInsight.intent,
        )
        .outerjoin(
            m.User, (m.User.tenant_id == m.Message.tenant_id) & (m.User.id == m.Message.author_id)
        )
        .outerjoin(
            m.MessageInsight,
            (m.MessageInsight.tenant_id == m.Message.tenant_id)
            & (m.MessageInsight.message_id == m.Message.id),
        )
        .where(
            m.Message.tenant_id == p.tenant_id,
            m.Message.session_id.in_(readable),
            m.Message.deleted_at.is_(None),
        )
    )
    if scope == "session":
        ok = plausible_id(ident or "") and s.scalar(
            select(m.Session.id).where(m.Session.id == ident, readable_sessions_filter(p))
        )
        if not ok:
            raise NotFound(f"session {str(ident)[:80]!r} not found")
        q = q.where(m.Message.session_id == ident)
    elif scope == "user":
        q = q.where(m.Message.author_id == ident)
    if start is not None:
        q = q.where(m.Message.created_at >= start)
    if end is not None:
        q = q.where(m.Message.created_at <= end)
    raw = s.execute(q.order_by(m.Message.session_id, m.Message.seq).limit(MAX_ROWS + 1)).all()
    truncated = len(raw) > MAX_ROWS
    rows = [Row(r[0], r[1], r[2] or "human", r[3], r[4] or {}, r[5], r[6]) for r in raw[:MAX_ROWS]]
    if scope == "assistant":
        # Named by id or by name (answers carry the id; a name may span sessions).
        ids = {str(ident)} | set(
            s.scalars(
                select(m.Assistant.id).where(
                    m.Assistant.tenant_id == p.tenant_id,
                    func.lower(m.Assistant.name) == str(ident).lower(),
                )
            )
        )
        rows = [r for r in rows if r.meta.get("assistant") in ids]
    elif scope == "model":
        rows = [r for r in rows if "stream_id" in r.meta and r.meta.get("model") == ident]
    created = select(func.count()).select_from(m.Session).where(readable_sessions_filter(p))
    if start is not None:
        created = created.where(m.Session.created_at >= start)
    if end is not None:
        created = created.where(m.Session.created_at <= end)
    if scope == "session":
        created = created.where(m.Session.id == ident)
    elif scope == "user":
        created = created.where(m.Session.created_by == ident)
    return (
        rows,
        truncated,
        (s.scalar(created) or 0) if scope in ("tenant", "session", "user") else 0,
    )


def compute(rows: list[Row]) -> dict[str, Any]:
    """The numbers (see docs/intelligence.md for each definition)."""
    by_kind: Counter[str] = Counter(r.kind for r in rows)
    people = {r.author_id for r in rows if r.kind != "assistant"}
    sessions: dict[str, list[Row]] = defaultdict(list)
    for r in rows:
        sessions[r.session_id].append(r)
    gens = [r for r in rows if "stream_id" in r.meta]
    tokens_in, tokens_out = _tokens(gens)
    cost = _cost(gens)
    ttft = _first_token_ms(gens)
    total_ms = [
        float(v) for r in gens if (v := (r.meta.get("latency") or {}).get("total_ms")) is not None
    ]
    ok = sum(1 for r in gens if r.meta.get("finish_reason") in OK_FINISH and "error" not in r.meta)
    gaps: list[float] = []
    conversational = 0
    for msgs in sessions.values():
        writers = {r.author_id for r in msgs if r.kind != "assistant"}
        conversational += len(writers) >= 2
        prev: Row | None = None
        for r in msgs:
            if r.kind == "assistant":
                continue
            if prev is not None and prev.author_id != r.author_id:
                gap = (r.created_at - prev.created_at).total_seconds()
                if 0 <= gap <= MAX_GAP_SECONDS:
                    gaps.append(gap)
            prev = r
    sentiments = [r.sentiment for r in rows if r.sentiment is not None]
    intents = Counter(r.intent for r in rows if r.intent)
    mean_sentiment = sum(sentiments) / len(sentiments) if sentiments else 0.0
    days: dict[str, dict[str, Any]] = {}
    for r in rows:
        day = iso(r.created_at)[:10]  # type: ignore[index]
        d = days.setdefault(
            day, {"day": day, "messages": 0, "users": set(), "sessions": set(), "tokens": 0}
        )
        d["messages"] += 1
        d["sessions"].add(r.session_id)
        if r.kind != "assistant":
            d["users"].add(r.author_id)
        if "stream_id" in r.meta:
            d["tokens"] += sum(_tokens([r]))
    n_sessions = len(sessions)
    return {
        "messages": len(rows),
        "messages_by_kind": dict(by_kind),
        "active_users": len(people),
        "sessions": n_sessions,
        "llm": {
            "generations": len(gens),
            "finished_ok": ok,
            "input_tokens": tokens_in,
            "output_tokens": tokens_out,
            "cost": cost,
            "first_token_ms": {
                "p50": quality.percentile(ttft, 50),
                "p99": quality.percentile(ttft, 99),
            },
            "total_ms": {
                "p50": quality.percentile(total_ms, 50),
                "p99": quality.percentile(total_ms, 99),
            },
        },
        "human_response_seconds": {
            "count": len(gaps),
            "p50": quality.percentile(gaps, 50),
            "p99": quality.percentile(gaps, 99),
        },
        "engagement": {
            "messages_per_user": round(len(rows) / len(people), 3) if people else 0.0,
            "messages_per_session": round(len(rows) / n_sessions, 3) if n_sessions else 0.0,
            "conversational_sessions": conversational,
        },
        "sentiment": {"mean": round(mean_sentiment, 4), "analysed_messages": len(sentiments)},
        "intents": dict(intents),
        "quality": quality.score(
            mean_sentiment=mean_sentiment,
            questions=intents.get("question", 0),
            answers=intents.get("answer", 0),
            generations=len(gens),
            generations_ok=ok,
            sessions=n_sessions,
            conversational_sessions=conversational,
        ),
        "series": [
            {
                "day": d["day"],
                "messages": d["messages"],
                "active_users": len(d["users"]),
                "sessions": len(d["sessions"]),
                "llm_tokens": d["tokens"],
            }
            for d in sorted(days.values(), key=lambda d: d["day"])
        ],
    }


def _tokens(gens: list[Row]) -> tuple[int, int]:
    """Input and output tokens of LLM answers, as the relay stored them."""
    tokens_in = sum(int((r.meta.get("usage") or {}).get("input_tokens") or 0) for r in gens)
    tokens_out = sum(int((r.meta.get("usage") or {}).get("output_tokens") or 0) for r in gens)
    return tokens_in, tokens_out


def _cost(gens: list[Row]) -> dict[str, Any]:
    priced = [c for r in gens if isinstance(c := r.meta.get("cost"), dict)]
    currencies = {str(c.get("currency")) for c in priced}
    return {
        "total": round(sum(float(c.get("total") or 0.0) for c in priced), 8),
        "currency": currencies.pop() if len(currencies) == 1 else None,
        "priced_generations": len(priced),
    }


def _first_token_ms(gens: list[Row]) -> list[float]:
    return [
        float(v)
        for r in gens
        if (v := (r.meta.get("latency") or {}).get("first_token_ms")) is not None
    ]


def _group_key(r: Row, by: str) -> str | None:
    if by == "session":
        return r.session_id
    if by == "user":
        return r.author_id if r.kind != "assistant" else None
    if "stream_id" not in r.meta:
        return None
    value = r.meta.get("model" if by == "model" else "assistant")
    return str(value) if value else None


def breakdown(rows: list[Row], by: str) -> list[dict[str, Any]]:
    """Messages and LLM usage per model, assistant (id), human or bot author, or session: the
    ``MAX_GROUPS`` groups with the most messages, so a dashboard can compare them."""
    groups: dict[str, list[Row]] = defaultdict(list)
    for r in rows:
        key = _group_key(r, by)
        if key is not None:
            groups[key].append(r)
    items: list[dict[str, Any]] = []
    for key, group in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))[:MAX_GROUPS]:
        gens = [r for r in group if "stream_id" in r.meta]
        tokens_in, tokens_out = _tokens(gens)
        ttft = _first_token_ms(gens)
        items.append(
            {
                "key": key,
                "label": key,
                "messages": len(group),
                "generations": len(gens),
                "input_tokens": tokens_in,
                "output_tokens": tokens_out,
                "cost": _cost(gens),
                "first_token_ms": {
                    "p50": quality.percentile(ttft, 50),
                    "p99": quality.percentile(ttft, 99),
                },
            }
        )
    return items


def label_groups(s: Session, p: Principal, by: str, items: list[dict[str, Any]]) -> None:
    """Readable labels for breakdown keys: assistant and user names, session titles."""
    keys = [i["key"] for i in items]
    if not keys or by == "model":
        return
    if by == "assistant":
        q = select(m.Assistant.id, m.Assistant.name).where(
            m.Assistant.tenant_id == p.tenant_id, m.Assistant.id.in_(keys)
        )
    elif by == "user":
        q = select(m.User.id, m.User.display_name).where(
            m.User.tenant_id == p.tenant_id, m.User.id.in_(keys)
        )
    else:
        q = select(m.Session.id, m.Session.title).where(
            m.Session.tenant_id == p.tenant_id,
            m.Session.id.in_(keys),
            readable_sessions_filter(p),
        )
    names = {str(k): str(v) for k, v in s.execute(q).all() if v}
    for item in items:
        item["label"] = names.get(item["key"], item["key"])


def to_csv(report: dict[str, Any]) -> str:
    """The report as ``metric,value`` rows (nested names joined by dots; the daily series as
    ``series.<day>.<metric>``, breakdowns as ``breakdowns.<by>.<key>.<metric>``)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["metric", "value"])

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        elif isinstance(value, list):
            for item in value:
                name = item.get("day", item.get("key", ""))
                walk(f"{prefix}.{name}", {k: v for k, v in item.items() if k not in ("day", "key")})
        else:
            writer.writerow([prefix, "" if value is None else value])

    walk("", report)
    return out.getvalue()

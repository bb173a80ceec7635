"""What one analysis job computes for a session, and how it is stored.

Three steps, so the database is held only briefly and the CPU work never runs on the event
loop: ``load`` (one read), ``compute`` (pure, run in a thread), ``store`` (one short write).
Per message: sentiment and intent, recomputed only when its text changed (hash). Per session:
terms, keywords, topics, sentiment trend, intent counts, tag suggestions, an automatic title
(applied when the session has none) and an extractive summary of the whole session.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from parley.governance.auth import Principal, UserKind
from parley.ids import new_id, utcnow
from parley.intelligence import intent as intents
from parley.intelligence import keywords as kw
from parley.intelligence import sentiment, summary
from parley.sessions.queries import new_event
from parley.sessions.rules import MAX_TAGS
from parley.sessions.views import event_view, session_view
from parley.storage import models as m

MAX_MESSAGES = 2000  # the newest messages a session analysis reads
MAX_DF_SESSIONS = 5000  # the tenant sessions whose terms give document frequencies
ANALYST = "parley-analysis"  # the actor of events the analysis writes (automatic titles)


def text_hash(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


@dataclass(slots=True)
class Loaded:
    """What ``compute`` needs, read in one unit of work."""

    session_id: str
    tenant_id: str
    title: str
    last_seq: int
    tags: list[str]
    messages: list[
        tuple[str, int, str, str, str | None, str]
    ]  # id, seq, author, text, parent, kind
    known: dict[str, tuple[str, str, float, str]]  # id -> (text hash, intent, sentiment, label)
    decided: dict[str, str]  # tag -> suggestion status
    tenant_tags: list[str]
    rules: dict[str, str] = field(default_factory=dict)  # tag -> accepted | rejected (tenant)
    df: Counter[str] = field(default_factory=Counter)
    n_docs: int = 0


@dataclass(slots=True)
class Computed:
    messages: list[dict[str, Any]]
    session: dict[str, Any]
    suggestions: list[dict[str, Any]]
    summary: str
    title: str | None


def load(s: Session, session_id: str) -> Loaded | None:
    """Read what analysing ``session_id`` needs; None if the session is gone."""
    row = s.get(m.Session, session_id)
    if row is None:
        return None
    msgs = s.execute(
        select(
            m.Message.id,
            m.Message.seq,
            m.Message.author_id,
            m.Message.text,
            m.Message.parent_id,
            m.User.kind,
        )
        .outerjoin(
            m.User, (m.User.tenant_id == m.Message.tenant_id) & (m.User.id == m.Message.author_id)
        )
        .where(m.Message.session_id == session_id, m.Message.deleted_at.is_(None))
        .order_by(m.Message.seq.desc())
        .limit(MAX_MESSAGES)
    ).all()
    known = {
        mid: (h, it, score, label)
        for mid, h, it, score, label in s.execute(
            select(
                m.MessageInsight.message_id,
                m.MessageInsight.text_hash,
                m.MessageInsight.intent,
                m.MessageInsight.sentiment,
                m.MessageInsight.sentiment_label,
            ).where(m.MessageInsight.session_id == session_id)
        )
    }
    decided = dict(
        s.execute(
            select(m.TagSuggestion.tag, m.TagSuggestion.status).where(
                m.TagSuggestion.session_id == session_id
            )
        ).all()
    )
    tags = list(s.scalars(select(m.SessionTag.tag).where(m.SessionTag.session_id == session_id)))
    tenant_tags = list(
        s.scalars(
            select(m.SessionTag.tag)
            .where(m.SessionTag.tenant_id == row.tenant_id)
            .group_by(m.SessionTag.tag)
            .order_by(func.count().desc())
            .limit(500)
        )
    )
    rules = dict(
        s.execute(
            select(m.TagRule.tag, m.TagRule.status).where(m.TagRule.tenant_id == row.tenant_id)
        ).all()
    )
    df: Counter[str] = Counter()
    n_docs = 0
    for terms in s.scalars(
        select(m.SessionInsight.terms)
        .where(
            m.SessionInsight.tenant_id == row.tenant_id,
            m.SessionInsight.session_id != session_id,
        )
        .limit(MAX_DF_SESSIONS)
    ):
        n_docs += 1
        df.update(terms.keys())
    return Loaded(
        session_id=session_id,
        tenant_id=row.tenant_id,
        title=row.title,
        last_seq=row.last_seq,
        tags=tags,
        messages=[(r[0], r[1], r[2], r[3], r[4], r[5] or "human") for r in reversed(msgs)],
        known=known,
        decided=decided,
        tenant_tags=tenant_tags,
        rules=rules,
        df=df,
        n_docs=n_docs,
    )


class _Polite(list[Any]):
    """A list whose iteration lets other threads run every few items.

    ``compute`` runs in a thread; pure Python holds the GIL for up to the interpreter's switch
    interval (5 ms) at a time, and the event loop waiting for it would stall every request for
    that long. Releasing it every ``EVERY`` items keeps those waits short."""

    EVERY = 16

    def __iter__(self) -> Iterator[Any]:
        for i, item in enumerate(super().__iter__()):
            if i % self.EVERY == self.EVERY - 1:
                time.sleep(0)
            yield item


def compute(data: Loaded) -> Computed:
    """All the analysis of one session (pure: no I/O; runs in a thread)."""
    by_id: dict[str, str] = {}
    rows: list[dict[str, Any]] = []
    compounds: list[float] = []
    intent_counts: Counter[str] = Counter()
    lines: list[summary.Line] = []
    previous: str | None = None
    for mid, seq, author, text, parent, kind in _Polite(data.messages):
        h = text_hash(text)
        before = by_id.get(parent) if parent else previous
        it = intents.classify(text, before)
        seen = data.known.get(mid)
        # VADER is the costly part: a message whose text did not change keeps its score.
        sent = (
            sentiment.Sentiment(seen[2], seen[3])  # type: ignore[arg-type]
            if seen is not None and seen[0] == h
            else sentiment.score(text)
        )
        rows.append(
            {
                "message_id": mid,
                "seq": seq,
                "author_id": author,
                "text_hash": h,
                "sentiment": sent.compound,
                "sentiment_label": sent.label,
                "intent": it,
                "changed": seen is None or seen[:2] != (h, it),
            }
        )
        by_id[mid] = text
        previous = text
        compounds.append(sent.compound)
        intent_counts[it] += 1
        lines.append(summary.Line(author, text, it if kind != "assistant" else "statement"))
    counts = kw.term_counts(_Polite(text for _, _, _, text, _, _ in data.messages))
    terms = kw.top_terms(counts)
    keywords = kw.keywords(terms, data.df, data.n_docs)
    topics = kw.topics(terms)
    exclude = set(data.tags) | {t for t, st in data.decided.items() if st != "suggested"}
    exclude |= {t for t, st in data.rules.items() if st == "rejected"}
    suggestions = kw.suggest_tags(terms, topics, data.tenant_tags, exclude=exclude)
    for sug in suggestions:
        sug["auto"] = data.rules.get(sug["tag"]) == "accepted"
    human_lines = [
        line for line, msg in zip(lines, data.messages, strict=True) if msg[5] != "assistant"
    ]
    return Computed(
        messages=rows,
        session={
            "terms": terms,
            "keywords": keywords,
            "topics": topics,
            "sentiment": sentiment.trend(compounds),
            "intents": dict(intent_counts),
        },
        suggestions=suggestions[:10],
        summary=summary.extractive(_Polite(lines)),
        title=summary.title(human_lines or lines, keywords),
    )


def store(s: Session, data: Loaded, result: Computed) -> list[dict[str, Any]]:
    """Write what ``compute`` found; return event frames to publish (an automatic title)."""
    row = s.get(m.Session, data.session_id, with_for_update=True)
    if row is None:
        return []
    now = utcnow()
    # A deleted message keeps nothing: not even the sentiment of what it said.
    s.execute(
        delete(m.MessageInsight).where(
            m.MessageInsight.session_id == data.session_id,
            m.MessageInsight.message_id.in_(
                select(m.Message.id).where(
                    m.Message.session_id == data.session_id, m.Message.deleted_at.is_not(None)
                )
            ),
        )
    )
    for r in result.messages:
        if not r["changed"]:
            continue
        values = {k: v for k, v in r.items() if k != "changed"}
        existing = s.get(m.MessageInsight, r["message_id"])
        if existing is None:
            s.add(
                m.MessageInsight(
                    tenant_id=data.tenant_id,
                    session_id=data.session_id,
                    analyzed_at=now,
                    **values,
                )
            )
        else:
            for k, v in values.items():
                setattr(existing, k, v)
            existing.analyzed_at = now
    insight = s.get(m.SessionInsight, data.session_id)
    if insight is None:
        insight = m.SessionInsight(session_id=data.session_id, tenant_id=data.tenant_id)
        s.add(insight)
    for k, v in result.session.items():
        setattr(insight, k, v)
    insight.auto_title = result.title
    insight.analyzed_seq = data.last_seq
    insight.message_count = len(data.messages)
    insight.analyzed_at = now
    tags = list(s.scalars(select(m.SessionTag.tag).where(m.SessionTag.session_id == row.id)))
    applied: list[str] = []
    for sug in result.suggestions:
        auto = sug["auto"] and sug["tag"] not in tags and len(tags) + len(applied) < MAX_TAGS
        existing_sug = s.get(m.TagSuggestion, (data.session_id, sug["tag"]))
        if existing_sug is None:
            existing_sug = m.TagSuggestion(
                session_id=data.session_id,
                tag=sug["tag"],
                tenant_id=data.tenant_id,
                score=sug["score"],
                words=sug["words"],
                status="suggested",
            )
            s.add(existing_sug)
        elif existing_sug.status == "suggested":
            existing_sug.score, existing_sug.words = sug["score"], sug["words"]
        if auto and existing_sug.status == "suggested":
            # The tenant accepted this rule: apply it, as the analysis, visibly.
            existing_sug.status, existing_sug.decided_by = "accepted", ANALYST
            existing_sug.decided_at = now
            s.add(m.SessionTag(session_id=row.id, tag=sug["tag"], tenant_id=data.tenant_id))
            applied.append(sug["tag"])
    if result.summary and data.messages:
        last = data.messages[-1][1]
        covered = s.scalar(
            select(func.max(m.SessionSummary.to_seq)).where(
                m.SessionSummary.session_id == data.session_id,
                m.SessionSummary.from_seq == 0,
                m.SessionSummary.method == "extractive",
            )
        )
        if covered is None or covered < last:
            s.add(
                m.SessionSummary(
                    id=new_id(),
                    tenant_id=data.tenant_id,
                    session_id=data.session_id,
                    from_seq=0,
                    to_seq=last,
                    text=result.summary,
                    method="extractive",
                    model=None,
                    created_by=None,
                    created_at=now,
                )
            )
    changed = ["tags"] if applied else []
    if not row.title and result.title:
        row.title = result.title[:500]
        changed.insert(0, "title")
    if not changed:
        return []
    row.last_seq += 1
    row.updated_at = now
    s.flush()
    view = session_view(row, [*tags, *applied])
    ev = new_event(
        Principal(row.tenant_id, ANALYST, "Parley analysis", UserKind.BOT),
        row.id,
        row.last_seq,
        "session.updated",
        {"session": view, "changed": changed, "automatic": True},
        now,
    )
    s.add(ev)
    return [event_view(ev)]
